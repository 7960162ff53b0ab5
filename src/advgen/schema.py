"""The schema of ``params.yaml``: one validated dataclass per section, and
:func:`validate_params`, which checks every key of the file against them.

Fields marked ``field(metadata=PROFILE)`` are size-like: they live under
``profiles.<profile>.<section>``. Range checks call :func:`advgen.config.require` with field
names; errors come out with the full key (``profiles.smoke.train.epochs``).

This module imports no torch (the validation stage runs on every ``dvc repro`` and must stay
cheap), so the registries' names are repeated here; ``tests/test_schema.py`` checks that they
match :data:`advgen.models.ARCHS`, :data:`advgen.robustness.ATTACKS` and
:data:`advgen.data.DATASETS`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .config import PROFILE, ConfigError, active_profile, from_dict, load_section, require

ARCH_KWARGS = {"cnn": ("width", "hidden", "dropout"), "logreg": (), "mlp": ("hidden",), "resnet": ("width",)}
ARCH_NAMES = tuple(sorted(ARCH_KWARGS))
ATTACK_NAMES = ("apgd_ce", "apgd_dlr", "fgsm", "noise", "pgd", "pgd_l2", "square")
DATASET_NAMES = ("cifar10", "digits", "fashion-mnist", "mnist")


MODELS = {"models": True}  # field metadata: names model(s) that some stage produces


def _sized() -> Any:
    return field(metadata=PROFILE)


def _models(**kw: Any) -> Any:
    return field(metadata=MODELS, **kw)


@dataclass
class Common:
    """Top-level keys of params.yaml that every stage sees."""

    seed: int
    device: str
    profile: str

    def validate(self) -> None:
        require(self.seed >= 0, "seed", f"must be >= 0, found {self.seed}")
        require(self.device == "auto" or self.device in ("cpu", "cuda") or self.device.startswith("cuda:"),
                "device", f"must be auto, cpu, cuda or cuda:N, found {self.device!r}")


def load_common(params: dict[str, Any]) -> Common:
    keys = ("seed", "device", "profile")
    cfg = from_dict(Common, {k: params[k] for k in keys if k in params}, "<top level>", origins={k: k for k in keys})
    active_profile(params)
    return cfg


@dataclass
class IngestConfig:
    dataset: str
    mirrors: list[str] = field(default_factory=list)  # empty: the dataset's own list
    timeout_s: float = 30.0
    retries: int = 3
    backoff_s: float = 1.0
    max_bytes: int = 200_000_000

    def validate(self) -> None:
        require(self.dataset in DATASET_NAMES, "dataset", f"must be one of {list(DATASET_NAMES)}, found {self.dataset!r}")
        require(self.timeout_s > 0, "timeout_s", f"must be > 0, found {self.timeout_s}")
        require(self.retries >= 1, "retries", f"must be >= 1, found {self.retries}")
        require(self.backoff_s >= 0, "backoff_s", f"must be >= 0, found {self.backoff_s}")
        require(self.max_bytes > 0, "max_bytes", f"must be > 0, found {self.max_bytes}")


@dataclass
class ModelSpec:
    """One entry of ``train.models``."""

    arch: str
    data: str  # "prepared" (the ingested dataset) or "poisoned/<name>" (an entry of poison.configs)
    arch_kwargs: dict = field(default_factory=dict)
    lr: float | None = None  # overrides train.lr
    resolution: int | None = None  # train on area-downsampled images (C4)
    seed: int | None = None  # overrides the top-level seed (a second model of the same arch)
    epochs: int | None = None  # fewer epochs than the profile's train.epochs (which caps it)

    def validate(self) -> None:
        require(self.arch in ARCH_NAMES, "arch", f"must be one of {list(ARCH_NAMES)}, found {self.arch!r}")
        require(self.data == "prepared" or self.data.startswith("poisoned/"), "data",
                f"must be 'prepared' or 'poisoned/<name of a poison.configs entry>', found {self.data!r}")
        require(self.epochs is None or self.epochs >= 1, "epochs", f"must be >= 1, found {self.epochs}")
        unknown = sorted(set(self.arch_kwargs) - set(ARCH_KWARGS[self.arch]))
        require(not unknown, "arch_kwargs", f"has unknown key(s) {unknown}; {self.arch} accepts {list(ARCH_KWARGS[self.arch])}")
        require(self.resolution is None or self.resolution >= 2, "resolution", f"must be >= 2, found {self.resolution}")
        require(self.lr is None or self.lr > 0, "lr", f"must be > 0, found {self.lr}")
        require(self.seed is None or self.seed >= 0, "seed", f"must be >= 0, found {self.seed}")


@dataclass
class TrainConfig:
    models: dict
    lr: float
    weight_decay: float
    nproc: int
    epochs: int = _sized()
    batch_size: int = _sized()
    n_train: int = _sized()  # 0 = all
    n_test: int = _sized()  # 0 = all

    def validate(self) -> None:
        require(len(self.models) >= 1, "models", "must name at least one model")
        require(self.lr > 0, "lr", f"must be > 0, found {self.lr}")
        require(self.weight_decay >= 0, "weight_decay", f"must be >= 0, found {self.weight_decay}")
        require(self.nproc >= 1, "nproc", f"must be >= 1, found {self.nproc}")
        require(self.epochs >= 1, "epochs", f"must be >= 1, found {self.epochs}")
        require(self.batch_size >= self.nproc, "batch_size", f"must be >= train.nproc ({self.nproc}), found {self.batch_size}")
        require(self.n_train >= 0, "n_train", f"must be >= 0 (0 = all), found {self.n_train}")
        require(self.n_test >= 0, "n_test", f"must be >= 0 (0 = all), found {self.n_test}")

    def spec(self, name: str) -> ModelSpec:
        """The validated entry ``train.models.<name>``."""
        if name not in self.models:
            raise ConfigError(f"params.yaml: model {name!r} is not in train.models {sorted(self.models)}")
        return from_dict(ModelSpec, self.models[name], f"train.models.{name}")

    def epochs_of(self, name: str) -> int:
        """Epochs of model ``name``: its own ``epochs``, capped by the profile's (smoke: 1)."""
        own = self.spec(name).epochs
        return self.epochs if own is None else min(own, self.epochs)


@dataclass
class AttackConfig:
    models: list[str] = _models()
    attacks: list[str]
    eps_linf: list[float]
    eps_l2: list[float]
    check_eps: float
    convergence_eps: list[float]
    tolerance: float
    pgd_steps: int
    pgd_restarts: int
    n_target_classes: int
    square_eps: float
    square_p_init: float
    queries_per_minute: float
    window_minutes: float
    square_sweep: bool = field(default=False, kw_only=True)  # Square at every eps_linf (else at square_eps only: C7's experiment)
    # Models of the defend stage survive most attacks, so each attack costs several times more on
    # them: these keys replace the ones above for them (``defended_sizes``: the size-like ones).
    defended: dict = field(default_factory=dict, kw_only=True)
    n_eval: int = _sized()
    n_square: int = _sized()
    apgd_steps: int = _sized()
    more_restarts: int = _sized()
    square_queries: int = _sized()
    square_budgets: list[int] = _sized()
    defended_sizes: dict = field(default_factory=dict, metadata=PROFILE, kw_only=True)

    def for_defended(self) -> "AttackConfig":
        """This config with the overrides for models of the defend stage applied."""
        return dataclasses.replace(self, **self.defended, **self.defended_sizes, defended={}, defended_sizes={})

    def _check_overrides(self) -> None:
        fields = {f.name: f for f in dataclasses.fields(self)}
        for key, sized in (("defended", False), ("defended_sizes", True)):
            allowed = sorted(n for n, f in fields.items() if bool(f.metadata.get("profile")) == sized
                             and n not in ("models", "defended", "defended_sizes"))
            unknown = sorted(set(getattr(self, key)) - set(allowed))
            require(not unknown, key, f"has unknown key(s) {unknown}; it may override {allowed}")
        try:
            self.for_defended().validate()
        except ConfigError as exc:
            raise ConfigError(f"gives an invalid config for defended models: {', '.join(exc.keys)} {exc}",
                              keys=("defended",)) from None

    def validate(self) -> None:
        for key in ("eps_linf", "eps_l2"):
            bad = [e for e in getattr(self, key) if e < 0]
            require(not bad, key, f"must hold eps >= 0, found {bad}")
        require(0.0 in self.eps_linf, "eps_linf", f"must contain 0, found {self.eps_linf}")
        for key in ("square_eps", "check_eps"):
            value = getattr(self, key)
            require(value > 0 and value in self.eps_linf, key,
                    f"must be > 0 and one of attack.eps_linf {self.eps_linf}, found {value}")
        outside = [e for e in self.convergence_eps if e <= 0 or e not in self.eps_linf]
        require(not outside, "convergence_eps", f"must hold eps > 0 from attack.eps_linf {self.eps_linf}, found {outside}")
        require(len(set(self.attacks)) == len(self.attacks), "attacks", f"names an attack twice: {self.attacks}")
        unknown = [a for a in self.attacks if a not in ATTACK_NAMES]
        require(not unknown, "attacks", f"names unknown attack(s) {unknown}; expected some of {list(ATTACK_NAMES)}")
        require(0 <= self.tolerance < 1, "tolerance", f"must lie in [0, 1), found {self.tolerance}")
        for key in ("n_eval", "n_square", "apgd_steps", "pgd_steps", "pgd_restarts", "n_target_classes"):
            require(getattr(self, key) >= 1, key, f"must be >= 1, found {getattr(self, key)}")
        require(self.more_restarts >= 2, "more_restarts", f"must be >= 2 (more than one), found {self.more_restarts}")
        require(all(0 < b <= self.square_queries for b in self.square_budgets), "square_budgets",
                f"must lie in (0, square_queries={self.square_queries}], found {self.square_budgets}")
        require(0 < self.square_p_init <= 1, "square_p_init", f"must lie in (0, 1], found {self.square_p_init}")
        require(self.queries_per_minute > 0, "queries_per_minute", f"must be > 0, found {self.queries_per_minute}")
        require(self.window_minutes > 0, "window_minutes", f"must be > 0, found {self.window_minutes}")
        if self.defended or self.defended_sizes:
            self._check_overrides()


@dataclass
class TransferConfig:
    models: list[str] = _models()
    eps: float
    steps: int

    def validate(self) -> None:
        require(len(self.models) >= 2, "models", f"needs at least two models, found {self.models}")
        require(self.eps >= 0, "eps", f"must be >= 0, found {self.eps}")
        require(self.steps >= 1, "steps", f"must be >= 1, found {self.steps}")


@dataclass
class ForgeConfig:
    model: str = _models()
    noise_lr: float
    image_lam: float
    image_lr: float
    n_per_class: int = _sized()
    n_reference: int = _sized()
    noise_steps: int = _sized()
    image_steps: int = _sized()

    def validate(self) -> None:
        for key in ("noise_steps", "image_steps", "n_per_class"):
            require(getattr(self, key) >= 1, key, f"must be >= 1, found {getattr(self, key)}")
        for key in ("noise_lr", "image_lr"):
            require(getattr(self, key) > 0, key, f"must be > 0, found {getattr(self, key)}")
        require(self.image_lam >= 0, "image_lam", f"must be >= 0, found {self.image_lam}")
        require(self.n_reference >= 10, "n_reference", f"must be >= 10, found {self.n_reference}")


@dataclass
class PatchConfig:
    model: str = _models()
    sizes: list[int]  # k x k patches, ascending
    target: int | None  # None: untargeted
    lr: float
    batch_size: int
    w_nps: float  # per pixel of the patch
    w_tv: float  # per pixel of the patch
    palette: list[float]  # printable grey levels
    ablation_size: int
    weight_scales: list[float]  # (w_nps, w_tv) times each, at ablation_size
    n_train: int = _sized()
    n_test: int = _sized()
    epochs: int = _sized()

    def validate(self) -> None:
        require(len(self.sizes) >= 1 and all(k >= 1 for k in self.sizes), "sizes",
                f"must be a non-empty list of sizes >= 1, found {self.sizes}")
        require(all(a < b for a, b in zip(self.sizes, self.sizes[1:])), "sizes",
                f"must be strictly increasing, found {self.sizes}")
        require(self.ablation_size >= 1, "ablation_size", f"must be >= 1, found {self.ablation_size}")
        require(len(self.weight_scales) >= 1 and all(s >= 0 for s in self.weight_scales)
                and len(set(self.weight_scales)) == len(self.weight_scales), "weight_scales",
                f"must be distinct values >= 0, found {self.weight_scales}")
        require(self.target is None or self.target >= 0, "target", f"must be >= 0 or null, found {self.target}")
        for key in ("lr", "batch_size", "epochs"):
            require(getattr(self, key) > 0, key, f"must be > 0, found {getattr(self, key)}")
        for key in ("n_train", "n_test"):
            require(getattr(self, key) >= 0, key, f"must be >= 0 (0 = all), found {getattr(self, key)}")
        for key in ("w_nps", "w_tv"):
            require(getattr(self, key) >= 0, key, f"must be >= 0, found {getattr(self, key)}")
        require(len(self.palette) >= 1 and all(0 <= p <= 1 for p in self.palette), "palette",
                f"must hold grey levels in [0, 1], found {self.palette}")

    def check_image(self, side: int) -> None:
        """Reject patches that do not fit the model's ``side`` x ``side`` input."""
        if max(self.sizes) > side:
            raise ConfigError(f"params.yaml: 'patch.sizes' must fit the {side}x{side} image, found {self.sizes}")
        if self.ablation_size > side:
            raise ConfigError(f"params.yaml: 'patch.ablation_size' must fit the {side}x{side} image, "
                              f"found {self.ablation_size}")


@dataclass
class DimensionConfig:
    models: list[str] = _models()
    eps: float
    n_eval: int = _sized()

    def validate(self) -> None:
        require(len(self.models) >= 2, "models", f"needs at least two models, found {self.models}")
        require(self.eps > 0, "eps", f"must be > 0, found {self.eps}")
        require(self.n_eval >= 1, "n_eval", f"must be >= 1, found {self.n_eval}")


DEFENSE_METHODS: dict[str, tuple[str, ...]] = {
    # method -> the keys of its entry besides ``method``
    "augment": ("eps",),  # FGSM examples of the base model, correctly labelled, added to the data
    "fgsm": ("eps", "alpha"),  # Goodfellow et al. 2015: alpha J(x) + (1 - alpha) J(x + eps sign grad)
    "fgsm_rs": ("eps", "step"),  # Wong et al. 2020: random start, one step
    "pgd": ("eps", "steps", "step"),  # Madry et al. 2018
    "trades": ("eps", "steps", "step", "beta"),  # Zhang et al. 2019
    "gaussian": ("sigma",),  # Cohen et al. 2019: the base classifier of randomized smoothing
}


@dataclass
class DefenseSpec:
    """One entry of ``defend.defenses``: a training-time defense."""

    method: str
    eps: float | None = None  # L-inf radius of the training attack
    alpha: float | None = None  # fgsm: weight of the clean term
    step: float | None = None  # inner step size (fgsm_rs: 1.25 eps in Wong et al.)
    steps: int | None = None  # inner PGD iterations (pgd, trades)
    beta: float | None = None  # trades: weight of the KL term
    sigma: float | None = None  # gaussian: std of the training noise (pixels in [0, 1])

    def validate(self) -> None:
        require(self.method in DEFENSE_METHODS, "method",
                f"must be one of {list(DEFENSE_METHODS)}, found {self.method!r}")
        keys = DEFENSE_METHODS[self.method]
        for key in ("eps", "alpha", "step", "steps", "beta", "sigma"):
            value = getattr(self, key)
            require(value is None or key in keys, key, f"is not used by method {self.method!r} (it takes {list(keys)})")
            require(value is not None or key not in keys, key, f"must be set for method {self.method!r}")
        require(self.eps is None or self.eps > 0, "eps", f"must be > 0, found {self.eps}")
        require(self.alpha is None or 0 <= self.alpha <= 1, "alpha", f"must lie in [0, 1], found {self.alpha}")
        require(self.step is None or self.step > 0, "step", f"must be > 0, found {self.step}")
        require(self.steps is None or self.steps >= 1, "steps", f"must be >= 1, found {self.steps}")
        require(self.beta is None or self.beta >= 0, "beta", f"must be >= 0, found {self.beta}")
        require(self.sigma is None or self.sigma > 0, "sigma", f"must be > 0, found {self.sigma}")

    def config(self) -> dict[str, Any]:
        """The keys the method uses (what the model's sidecar records)."""
        return {"method": self.method, **{k: getattr(self, k) for k in DEFENSE_METHODS[self.method]}}


@dataclass
class DefendConfig:
    """The ``defend`` stage: training-time defenses, one model each (names beside train.models)."""

    base: str  # the train.models entry whose architecture and lr every defense uses (augment: its FGSM source)
    defenses: dict
    monitor_steps: int  # PGD steps of the catastrophic-overfitting monitor
    monitor_drop: float  # flag a collapse: monitor PGD accuracy this far below its best so far
    stop_on_collapse: bool
    epochs: int = _sized()
    batch_size: int = _sized()
    n_train: int = _sized()  # 0 = all
    n_monitor: int = _sized()  # fixed training images the monitor attacks each epoch

    def validate(self) -> None:
        require(len(self.defenses) >= 1, "defenses", "must name at least one defense")
        require(self.monitor_steps >= 1, "monitor_steps", f"must be >= 1, found {self.monitor_steps}")
        require(0 < self.monitor_drop < 1, "monitor_drop", f"must lie in (0, 1), found {self.monitor_drop}")
        for key in ("epochs", "batch_size", "n_monitor"):
            require(getattr(self, key) >= 1, key, f"must be >= 1, found {getattr(self, key)}")
        require(self.n_train >= 0, "n_train", f"must be >= 0 (0 = all), found {self.n_train}")

    def spec(self, name: str) -> DefenseSpec:
        """The validated entry ``defend.defenses.<name>``."""
        if name not in self.defenses:
            raise ConfigError(f"params.yaml: defense {name!r} is not in defend.defenses {sorted(self.defenses)}")
        return from_dict(DefenseSpec, self.defenses[name], f"defend.defenses.{name}")


@dataclass
class SanitizeConfig:
    """The ``sanitize`` stage: feature squeezing (Xu et al. 2018) as preprocessing and detector."""

    model: str = _models()
    bit_depth: int  # bits per pixel kept by the bit-depth squeezer (1-8)
    median: int  # odd window of the median-filter squeezer
    eps: float  # L-inf radius of the attacks
    fpr: float  # false-positive rate on clean validation images that fixes the threshold
    pgd_steps: int
    square_queries: int
    detector_weight: float  # weight of the detection term in the detector-aware PGD
    n_eval: int = _sized()  # test images attacked
    n_val: int = _sized()  # clean validation images that fix the threshold

    def validate(self) -> None:
        require(1 <= self.bit_depth <= 8, "bit_depth", f"must lie in 1-8, found {self.bit_depth}")
        require(self.median >= 1 and self.median % 2 == 1, "median", f"must be an odd window >= 1, found {self.median}")
        require(self.eps > 0, "eps", f"must be > 0, found {self.eps}")
        require(0 < self.fpr < 1, "fpr", f"must lie in (0, 1), found {self.fpr}")
        for key in ("pgd_steps", "square_queries", "n_eval", "n_val"):
            require(getattr(self, key) >= 1, key, f"must be >= 1, found {getattr(self, key)}")
        require(self.detector_weight >= 0, "detector_weight", f"must be >= 0, found {self.detector_weight}")

    def check_image(self, side: int) -> None:
        """Reject a median window larger than the model's ``side`` x ``side`` input."""
        if self.median > side:
            raise ConfigError(f"params.yaml: 'sanitize.median' = {self.median} is larger than the "
                              f"{side}x{side} image")


@dataclass
class CertifyConfig:
    """The ``certify`` stage: randomized smoothing (Cohen et al. 2019) of ``gaussian`` models."""

    models: list[str] = _models()  # defend.defenses entries of method gaussian
    n0: int  # noise draws that pick the class
    n: int  # noise draws that bound its probability
    alpha: float  # failure probability of the certificate
    radii: list[float]  # L2 radii of the certified-accuracy table (also the attack's eps)
    pgd_steps: int  # PGD-L2 on the smoothed classifier
    eot: int  # noise draws per gradient (expectation over transformation)
    n_predict: int  # noise draws of the Monte-Carlo prediction of an attacked image
    batch_size: int
    n_eval: int = _sized()

    def validate(self) -> None:
        require(len(self.models) >= 1, "models", "must name at least one model")
        for key in ("n0", "n", "pgd_steps", "eot", "n_predict", "batch_size", "n_eval"):
            require(getattr(self, key) >= 1, key, f"must be >= 1, found {getattr(self, key)}")
        require(0 < self.alpha < 1, "alpha", f"must lie in (0, 1), found {self.alpha}")
        require(len(self.radii) >= 1 and all(r > 0 for r in self.radii), "radii",
                f"must be a non-empty list of radii > 0, found {self.radii}")


POISON_ATTACKS = {  # attack -> keys it takes beyond attack, rate, target
    "badnets": ("source", "trigger_size", "location", "keep_target"),  # Gu et al. 2017
    "blended": ("source", "alpha"),  # Chen et al. 2017
    "clean_label": ("trigger_size", "location", "eps", "steps", "step"),  # Turner et al. 2019
}
BACKDOOR_DEFENSES = ("spectral", "clustering", "strip", "fine_pruning", "fine_tuning")


@dataclass
class PoisonSpec:
    """One entry of ``poison.configs``: a poisoned copy of the training set."""

    attack: str
    rate: float  # poisoned images as a fraction of the training set, in (0, 1]
    target: int  # the class triggered inputs should go to
    source: int | None = None  # source-specific: only this class is poisoned ("cats -> dog")
    trigger_size: int | None = None  # k x k checkerboard (badnets, clean_label)
    location: str | None = None  # corner | random (badnets, clean_label)
    keep_target: float | None = None  # badnets: triggered target images (labels kept) per poisoned image
    alpha: float | None = None  # blended: blend weight of the pattern
    eps: float | None = None  # clean_label: L-inf radius of the PGD perturbation
    steps: int | None = None  # clean_label: PGD iterations
    step: float | None = None  # clean_label: PGD step size

    def validate(self) -> None:
        require(self.attack in POISON_ATTACKS, "attack", f"must be one of {list(POISON_ATTACKS)}, found {self.attack!r}")
        keys = POISON_ATTACKS[self.attack]
        for key in ("source", "trigger_size", "location", "keep_target", "alpha", "eps", "steps", "step"):
            require(getattr(self, key) is None or key in keys, key,
                    f"is not used by attack {self.attack!r} (it takes {list(keys)})")
        require(0 < self.rate <= 1, "rate", f"must lie in (0, 1], found {self.rate}")
        require(self.target >= 0, "target", f"must be a class index >= 0, found {self.target}")
        require(self.source is None or self.source >= 0, "source", f"must be a class index >= 0, found {self.source}")
        require(self.source is None or self.source != self.target, "source",
                f"must differ from the target ({self.target}) in a source-specific attack")
        require(self.trigger_size is None or self.trigger_size >= 1, "trigger_size", f"must be >= 1, found {self.trigger_size}")
        require(self.location in (None, "corner", "random"), "location", f"must be corner or random, found {self.location!r}")
        require(self.keep_target is None or self.keep_target >= 0, "keep_target", f"must be >= 0, found {self.keep_target}")
        require(self.alpha is None or 0 < self.alpha <= 1, "alpha", f"must lie in (0, 1], found {self.alpha}")
        require(self.eps is None or self.eps > 0, "eps", f"must be > 0, found {self.eps}")
        require(self.steps is None or self.steps >= 1, "steps", f"must be >= 1, found {self.steps}")
        require(self.step is None or self.step > 0, "step", f"must be > 0, found {self.step}")
        require(self.attack != "clean_label" or self.eps is not None, "eps", "must be set for attack 'clean_label'")

    def check_data(self, num_classes: int, side: int, counts: list[int], where: str = "poison.configs.x") -> None:
        """Reject classes out of range, a trigger larger than the image, or a rate that needs
        more eligible images than the split has (``counts``: images per class). ``where`` is the
        entry's key (``poison.configs.<name>``), which the error names."""
        def fail(key: str, message: str) -> None:
            raise ConfigError(f"params.yaml: '{where}.{key}' {message}")

        for key in ("target", "source"):
            value = getattr(self, key)
            if value is not None and value >= num_classes:
                fail(key, f"must be a class in 0..{num_classes - 1}, found {value}")
        if (self.trigger_size or 3) > side:
            fail("trigger_size", f"= {self.trigger_size}: a {self.trigger_size}x{self.trigger_size} trigger does not "
                                 f"fit the {side}x{side} image")
        n = max(1, round(self.rate * sum(counts)))
        pool = (counts[self.source] if self.source is not None else counts[self.target]
                if self.attack == "clean_label" else sum(counts) - counts[self.target])
        what = ("source-class" if self.source is not None else "target-class" if self.attack == "clean_label"
                else "non-target")
        if n > pool:
            fail("rate", f"= {self.rate} needs {n} {what} images, but the training split has {pool}")

    def config(self) -> dict[str, Any]:
        """The keys that are set (what the poisoned manifest records)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass
class PoisonConfig:
    """The ``poison`` stage: poisoned copies of the training set, one per entry of ``configs``."""

    model: str = _models()  # clean_label's surrogate (the standard cnn)
    configs: dict
    batch_size: int  # clean_label: images per PGD batch
    n_train: int = _sized()  # 0 = the whole training split (a seeded subset otherwise)
    n_test: int = _sized()  # 0 = the whole test split

    def validate(self) -> None:
        require(len(self.configs) >= 1, "configs", "must name at least one poisoning config")
        require(self.batch_size >= 1, "batch_size", f"must be >= 1, found {self.batch_size}")
        require(self.n_train >= 0, "n_train", f"must be >= 0 (0 = all), found {self.n_train}")
        require(self.n_test >= 0, "n_test", f"must be >= 0 (0 = all), found {self.n_test}")

    def spec(self, name: str) -> PoisonSpec:
        """The validated entry ``poison.configs.<name>``."""
        if name not in self.configs:
            raise ConfigError(f"params.yaml: poisoning config {name!r} is not in poison.configs {sorted(self.configs)}")
        return from_dict(PoisonSpec, self.configs[name], f"poison.configs.{name}")


@dataclass
class BackdoorDefenseConfig:
    """The ``backdoor_defense`` stage: CA/ASR/RA of every poisoned model and its defenses."""

    reference: str = _models()  # the clean model trained like the poisoned ones (the CA drop's baseline)
    models: dict  # poisoned model (named like its poison.configs entry) -> defenses run on it
    spectral_factor: float  # remove factor x the expected poison count per class (Tran et al.: 1.5)
    spectral_max_class_fraction: float  # never remove more of a class than this
    clustering_dims: int  # ICA components (Chen et al.: 10)
    clustering_size: float  # flag the smaller 2-means cluster below this share of its class
    strip_frr: float  # false-rejection rate on clean images that fixes the threshold
    prune_acc_drop: float  # fine-pruning: stop before clean accuracy falls this much
    prune_max_fraction: float  # fine-pruning: prune at most this share of the channels
    finetune_lr: float
    n_clean: int = _sized()  # the defender's trusted clean training images
    n_eval: int = _sized()  # test images scored (0 = all)
    strip_overlays: int = _sized()  # clean images superimposed on each input (Gao et al.)
    finetune_epochs: int = _sized()  # fine-pruning and fine-tuning

    def validate(self) -> None:
        require(len(self.models) >= 1, "models", "must name at least one poisoned model")
        for name, defenses in self.models.items():
            bad = [d for d in (defenses or []) if d not in BACKDOOR_DEFENSES]
            require(isinstance(defenses, list) and not bad, f"models.{name}",
                    f"must list defenses among {list(BACKDOOR_DEFENSES)}, found {defenses!r}")
        require(self.spectral_factor > 0, "spectral_factor", f"must be > 0, found {self.spectral_factor}")
        require(0 < self.spectral_max_class_fraction <= 1, "spectral_max_class_fraction",
                f"must lie in (0, 1], found {self.spectral_max_class_fraction}")
        require(self.clustering_dims >= 1, "clustering_dims", f"must be >= 1, found {self.clustering_dims}")
        require(0 < self.clustering_size < 1, "clustering_size", f"must lie in (0, 1), found {self.clustering_size}")
        require(self.strip_overlays >= 1, "strip_overlays", f"must be >= 1, found {self.strip_overlays}")
        require(0 < self.strip_frr < 1, "strip_frr", f"must lie in (0, 1), found {self.strip_frr}")
        require(0 <= self.prune_acc_drop < 1, "prune_acc_drop", f"must lie in [0, 1), found {self.prune_acc_drop}")
        require(0 < self.prune_max_fraction < 1, "prune_max_fraction", f"must lie in (0, 1), found {self.prune_max_fraction}")
        require(self.finetune_epochs >= 1, "finetune_epochs", f"must be >= 1, found {self.finetune_epochs}")
        require(self.finetune_lr > 0, "finetune_lr", f"must be > 0, found {self.finetune_lr}")
        require(self.n_clean >= 10, "n_clean", f"must be >= 10, found {self.n_clean}")
        require(self.n_eval >= 0, "n_eval", f"must be >= 0 (0 = all), found {self.n_eval}")


GAN_LOSSES = ("minimax", "non_saturating", "wgan_gp")  # advgen.generative.gan.LOSSES
GAN_NORMS = ("batch", "none", "spectral")  # advgen.generative.models.NORMS


@dataclass
class GANSpec:
    """One entry of ``gan.configs``: a DCGAN trained with one loss."""

    loss: str  # minimax | non_saturating | wgan_gp
    d_steps: int = 1  # discriminator (critic) steps per generator step
    lr: float = 0.0002  # Adam, both networks (Radford et al.)
    betas: list[float] = field(default_factory=lambda: [0.5, 0.999])
    gp_weight: float | None = None  # wgan_gp: lambda of the gradient penalty (Gulrajani et al.: 10)
    z_dim: int = 100
    width: int = 64  # channels of G's last hidden map and D's first (doubled in the next)
    stacked: bool = False  # Stacked Fashion-MNIST: three independent images as three channels
    # D's normalisation: batch (the PyTorch DCGAN example, JS losses), spectral (Miyato et al. 2018)
    # or none; null: batch for the JS losses, none for WGAN-GP (its per-sample penalty forbids batch).
    d_norm: str | None = None

    @property
    def norm(self) -> str:
        return self.d_norm or ("none" if self.loss == "wgan_gp" else "batch")

    def validate(self) -> None:
        require(self.loss in GAN_LOSSES, "loss", f"must be one of {list(GAN_LOSSES)}, found {self.loss!r}")
        require(self.norm in GAN_NORMS, "d_norm", f"must be one of {list(GAN_NORMS)} or null, found {self.d_norm!r}")
        require(not (self.loss == "wgan_gp" and self.norm == "batch"), "d_norm",
                "batch norm breaks WGAN-GP's per-sample gradient penalty (Gulrajani et al. 2017); use none or spectral")
        require(self.d_steps >= 1, "d_steps", f"must be >= 1, found {self.d_steps}")
        require(self.lr > 0, "lr", f"must be > 0, found {self.lr}")
        require(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), "betas",
                f"must be two numbers in [0, 1), found {self.betas}")
        require(self.z_dim >= 1, "z_dim", f"must be >= 1, found {self.z_dim}")
        require(self.width >= 1, "width", f"must be >= 1, found {self.width}")
        require((self.gp_weight is not None) == (self.loss == "wgan_gp"), "gp_weight",
                "must be set for loss 'wgan_gp' and only there")
        require(self.gp_weight is None or self.gp_weight > 0, "gp_weight", f"must be > 0, found {self.gp_weight}")

    def config(self) -> dict[str, Any]:
        out = {k: v for k, v in dataclasses.asdict(self).items() if v is not None}
        out["d_norm"] = self.norm
        return out


@dataclass
class GANConfig:
    """The ``gan`` stage: one DCGAN per entry of ``configs`` (a DVC foreach)."""

    feature_model: str = _models()  # the classifier whose features score the FID curve
    configs: dict
    batch_size: int
    log_every: int  # G iterations between logged rows
    trace_iters: int  # the first G iterations, each logged with both losses' gradient norms (C11)
    grid: int  # a grid x grid sample grid from fixed codes at every FID point
    ema_decay: float  # samples, grids and FID points come from an EMA of G's weights (0: G itself)
    n_boot_curve: int  # bootstrap resamples of each FID point's interval
    converge_window: int  # stop once this many last FID points agree within their intervals
    g_steps: int = _sized()  # the budget: generator updates (D takes d_steps per G step)
    n_train: int = _sized()  # real training images (0 = all)
    fid_every: int = _sized()  # G iterations between FID points of the curve (and grids)
    n_fid: int = _sized()  # samples per FID point of the curve
    probe_steps: int = _sized()  # C11 at initialisation: D steps against the frozen initial G
    converge: bool = _sized()  # stop early once the FID curve has flattened
    nproc: int = 1  # > 1 runs under torchrun (gloo on CPU, nccl on GPU)

    def validate(self) -> None:
        require(len(self.configs) >= 1, "configs", "must name at least one GAN config")
        for key in ("batch_size", "log_every", "grid", "nproc", "g_steps", "fid_every", "n_boot_curve"):
            require(getattr(self, key) >= 1, key, f"must be >= 1, found {getattr(self, key)}")
        for key in ("trace_iters", "probe_steps", "n_train"):
            require(getattr(self, key) >= 0, key, f"must be >= 0, found {getattr(self, key)}")
        require(self.n_fid >= 10, "n_fid", f"must be >= 10, found {self.n_fid}")
        require(0 <= self.ema_decay < 1, "ema_decay", f"must lie in [0, 1), found {self.ema_decay}")
        require(self.converge_window >= 2, "converge_window", f"must be >= 2, found {self.converge_window}")

    def spec(self, name: str) -> GANSpec:
        """The validated entry ``gan.configs.<name>``."""
        if name not in self.configs:
            raise ConfigError(f"params.yaml: GAN config {name!r} is not in gan.configs {sorted(self.configs)}")
        return from_dict(GANSpec, self.configs[name] or {}, f"gan.configs.{name}")


@dataclass
class EvaluateGenerativeConfig:
    """The ``evaluate_generative`` stage: every generative model scored the same way."""

    feature_model: str = _models()  # a train.models classifier; its penultimate layer gives the features
    models: list[str]  # generators to score (gan.configs names)
    n: int = _sized()  # samples per model and real images per set, the same for every model
    n_large: int = _sized()  # GANs also at this N (0 = off)
    n_stacked: int = _sized()  # Stacked Fashion-MNIST samples for the 1,000-mode count
    n_boot: int = _sized()  # bootstrap resamples of the FID interval
    kid_subset_size: int = _sized()
    n_paths: int = _sized()  # C14 interpolation paths
    n_arith: int = _sized()  # C14 codes per class mean and per arithmetic test
    n_memorisation: int = _sized()  # training and test images of the memorisation check (0 = the whole splits)
    diffusion: list[str] = field(default_factory=list)  # diffusion.configs names: every sample set they drew
    feature_sha256: str | None = None  # pin: refuse a feature network whose weights hash differs
    inception_weights: str | None = None  # a local Inception weights file (never downloaded); null: not available
    pr_k: int = 3  # Kynkaanniemi et al.
    min_share: float = 0.01  # a class is covered when it holds at least this share of the samples
    kid_subsets: int = 50
    interp_steps: int = 11  # C14: points per interpolation path, ends included
    monotone_tol: float = 0.02  # C14: largest allowed drop of the end class's probability along a path

    def validate(self) -> None:
        require(len(self.models) >= 1, "models", "must name at least one generative model")
        require(len(set(self.models)) == len(self.models), "models", f"names a model twice: {self.models}")
        require(self.feature_sha256 is None or (len(self.feature_sha256) == 64 and
                                                all(c in "0123456789abcdef" for c in self.feature_sha256)),
                "feature_sha256", f"must be a 64-digit lowercase hex sha256 or null, found {self.feature_sha256!r}")
        require(self.pr_k >= 1, "pr_k", f"must be >= 1, found {self.pr_k}")
        require(0 < self.min_share < 1, "min_share", f"must lie in (0, 1), found {self.min_share}")
        require(self.n >= 10, "n", f"must be >= 10, found {self.n}")
        require(self.n_large == 0 or self.n_large >= self.n, "n_large", f"must be 0 or >= n ({self.n}), found {self.n_large}")
        require(self.n_memorisation == 0 or self.n_memorisation >= 200, "n_memorisation",
                f"must be 0 (the whole splits) or >= 200 (its 1% threshold needs 100 held-out images), found {self.n_memorisation}")
        for key in ("n_stacked", "n_boot", "kid_subsets", "n_paths", "n_arith"):
            require(getattr(self, key) >= 1, key, f"must be >= 1, found {getattr(self, key)}")
        require(2 <= self.kid_subset_size <= self.n, "kid_subset_size",
                f"must lie in [2, n = {self.n}], found {self.kid_subset_size}")
        require(self.interp_steps >= 3, "interp_steps", f"must be >= 3, found {self.interp_steps}")
        require(0 <= self.monotone_tol < 1, "monotone_tol", f"must lie in [0, 1), found {self.monotone_tol}")

DIFFUSION_SCHEDULES = ("cosine", "linear")  # advgen.generative.diffusion.SCHEDULES
DIFFUSION_SAMPLERS = ("ddim", "ddpm")  # advgen.generative.diffusion.SAMPLERS
DIFFUSION_SPACES = ("latent", "pixel")
LATENT_SIDES = (7, 14)  # advgen.generative.autoencoder.SIDES: one or two stride-2 stages from 28x28


@dataclass
class AutoencoderConfig:
    """The ``autoencoder`` stage: latent diffusion's encoder and decoder (C17)."""

    latent: list[int]  # (channels, height, width) of the latent
    width: int  # channels of the first convolution (doubled per stride-2 stage)
    batch_size: int
    lr: float
    kl_weight: float  # LDM's KL-regularised autoencoder: weight of KL(q(z|x) || N(0, I)) per latent number
    epochs: int = _sized()
    n_train: int = _sized()  # 0 = all
    n_recon: int = _sized()  # test images reconstructed for the FID ceiling (= evaluate_generative's n)

    def validate(self) -> None:
        require(len(self.latent) == 3 and all(isinstance(v, int) and v >= 1 for v in self.latent), "latent",
                f"must be three positive integers [channels, height, width], found {self.latent}")
        require(self.latent[1] == self.latent[2] and self.latent[1] in LATENT_SIDES, "latent",
                f"the autoencoder maps 28x28 images to a square latent of side {list(LATENT_SIDES)} "
                f"(one or two stride-2 stages), found {self.latent}")
        for key in ("width", "batch_size", "epochs", "n_recon"):
            require(getattr(self, key) >= 1, key, f"must be >= 1, found {getattr(self, key)}")
        require(self.n_train >= 0, "n_train", f"must be >= 0, found {self.n_train}")
        require(self.lr > 0, "lr", f"must be > 0, found {self.lr}")
        require(self.kl_weight >= 0, "kl_weight", f"must be >= 0, found {self.kl_weight}")


@dataclass
class SamplerParams:
    """One sampler: ``ddpm`` (ancestral, every one of the T steps) or ``ddim`` with steps and eta."""

    sampler: str
    steps: int
    eta: float = 0.0

    def validate(self) -> None:
        require(self.sampler in DIFFUSION_SAMPLERS, "sampler",
                f"must be one of {list(DIFFUSION_SAMPLERS)}, found {self.sampler!r}")
        require(self.steps >= 1, "steps", f"must be >= 1, found {self.steps}")
        require(0 <= self.eta <= 1, "eta", f"must lie in [0, 1], found {self.eta}")

    @property
    def name(self) -> str:
        return f"ddpm{self.steps}" if self.sampler == "ddpm" else f"ddim{self.steps}_eta{self.eta:g}"


@dataclass
class DiffusionSpec:
    """One entry of ``diffusion.configs``: a denoiser, its space and its noise schedule."""

    schedule: str  # linear | cosine
    space: str = "pixel"  # pixel | latent (the autoencoder stage's latents)
    conditional: bool = False  # a class embedding with label dropout (classifier-free guidance)
    base: int = 16  # U-Net width of the first level
    mults: list[int] = field(default_factory=lambda: [1, 2, 2])  # width multipliers, one per resolution
    sweep: bool = False  # C16: also every sampler of diffusion.sweep at n_sweep
    guidance: bool = False  # C18: also every scale of diffusion.guidance_scales at n_guidance
    snapshot: bool = False  # C15: also the EMA weights at snapshot_iters, sampled at n_sample
    epoch_factor: int = 1  # trains at most epoch_factor x the profile's epochs (a latent epoch is cheap)

    def validate(self) -> None:
        require(self.epoch_factor >= 1, "epoch_factor", f"must be >= 1, found {self.epoch_factor}")
        require(self.schedule in DIFFUSION_SCHEDULES, "schedule",
                f"must be one of {list(DIFFUSION_SCHEDULES)}, found {self.schedule!r}")
        require(self.space in DIFFUSION_SPACES, "space", f"must be one of {list(DIFFUSION_SPACES)}, found {self.space!r}")
        require(self.base >= 1, "base", f"must be >= 1, found {self.base}")
        require(len(self.mults) >= 1 and all(m >= 1 for m in self.mults), "mults",
                f"must be positive multipliers, found {self.mults}")
        require(not self.guidance or self.conditional, "guidance", "needs conditional: true (a class embedding)")

    @property
    def num_classes(self) -> int:
        return 10 if self.conditional else 0


@dataclass
class DiffusionConfig:
    """The ``diffusion`` stage: one denoiser per entry of ``configs`` (a DVC foreach), trained
    and sampled with every sampler its flags ask for."""

    configs: dict
    batch_size: int
    lr: float
    warmup: int  # linear learning-rate warm-up over this many steps
    feature_model: str = _models()  # the FID curve's feature network (as evaluate_generative)
    n_boot_curve: int  # bootstrap resamples of each FID point's interval
    converge_window: int  # stop once this many last FID points agree within their intervals
    ema_decay: float
    p_uncond: float  # classifier-free guidance: probability of dropping the label in training
    log_every: int
    grid: int
    strip_seeds: int  # rows of the denoising-trajectory strip
    strip_frames: int  # x_T ... x_0 frames per row
    guidance_scales: list  # C18
    T: int = _sized()  # diffusion steps
    main_sampler: dict = _sized()  # every config's unconditional set at n_sample
    sweep: list = _sized()  # C16: sampler dicts
    epochs: int = _sized()  # the budget: at most this many epochs
    converge: bool = _sized()  # stop early once the FID curve has flattened
    n_fid: int = _sized()  # samples per FID point (one point per epoch, fixed noise and labels)
    curve_steps: int = _sized()  # DDIM steps (eta 0) of the FID curve's samples
    n_train: int = _sized()  # 0 = all
    n_sample: int = _sized()  # the main set (default: evaluate_generative's n, so it compares with the GANs)
    n_sweep: int = _sized()  # per sampler of the sweep
    n_guidance: int = _sized()  # per guidance scale
    snapshot_iters: int = _sized()  # C15: the EMA weights at this iteration (equal training wall time)
    nproc: int = 1  # > 1 runs under torchrun (gloo on CPU, nccl on GPU)

    def validate(self) -> None:
        require(len(self.configs) >= 1, "configs", "must name at least one diffusion config")
        require(self.T >= 1, "T", f"must be >= 1, found {self.T}")
        for key in ("batch_size", "log_every", "grid", "strip_seeds", "strip_frames", "epochs", "n_sample",
                    "n_sweep", "n_guidance", "nproc", "n_boot_curve", "curve_steps"):
            require(getattr(self, key) >= 1, key, f"must be >= 1, found {getattr(self, key)}")
        require(self.n_train >= 0, "n_train", f"must be >= 0, found {self.n_train}")
        require(self.snapshot_iters >= 0, "snapshot_iters", f"must be >= 0, found {self.snapshot_iters}")
        require(self.warmup >= 0, "warmup", f"must be >= 0, found {self.warmup}")
        require(self.n_fid >= 10, "n_fid", f"must be >= 10, found {self.n_fid}")
        require(self.converge_window >= 2, "converge_window", f"must be >= 2, found {self.converge_window}")
        require(self.curve_steps <= self.T, "curve_steps", f"must be <= T = {self.T}, found {self.curve_steps}")
        require(self.lr > 0, "lr", f"must be > 0, found {self.lr}")
        require(0 <= self.ema_decay < 1, "ema_decay", f"must lie in [0, 1), found {self.ema_decay}")
        require(0 <= self.p_uncond < 1, "p_uncond", f"must lie in [0, 1), found {self.p_uncond}")
        require(len(self.guidance_scales) >= 1 and all(s >= 0 for s in self.guidance_scales), "guidance_scales",
                f"must be scales >= 0, found {self.guidance_scales}")
        require(len(set(self.guidance_scales)) == len(self.guidance_scales), "guidance_scales",
                f"names a scale twice: {self.guidance_scales}")
        for i, item in enumerate([self.main_sampler, *self.sweep]):
            where = "main_sampler" if i == 0 else f"sweep[{i - 1}]"
            s = from_dict(SamplerParams, item or {}, f"diffusion.{where}")
            require(s.steps <= self.T, where, f"steps must be <= T = {self.T}, found {s.steps}")
            require(s.sampler != "ddpm" or s.steps == self.T, where,
                    f"the ancestral ddpm sampler takes all T = {self.T} steps, found steps = {s.steps}")
        for name in self.configs:
            self.spec(name)

    def spec(self, name: str) -> DiffusionSpec:
        """The validated entry ``diffusion.configs.<name>``."""
        if name not in self.configs:
            raise ConfigError(f"params.yaml: diffusion config {name!r} is not in diffusion.configs {sorted(self.configs)}")
        return from_dict(DiffusionSpec, self.configs[name] or {}, f"diffusion.configs.{name}")

    def sampler(self, item: dict) -> SamplerParams:
        return from_dict(SamplerParams, item, "diffusion.sampler")

    def plan(self, name: str) -> dict[str, dict[str, Any]]:
        """The sample sets of config ``name``, in drawing order: set name -> {role, sampler, steps,
        eta, n[, scale, guided][, frames, strip_seeds]}. A conditional model's main set is its
        conditional samples (guidance 1, classes balanced), what it was trained to do; its
        unconditional mode (the null label) is a set of its own, ``uncond_<sampler>``. The C15
        snapshot is unconditional: it is compared with unconditional GANs."""
        spec, main = self.spec(name), self.sampler(self.main_sampler)
        base = lambda s: {"sampler": s.sampler, "steps": s.steps, "eta": float(s.eta)}  # noqa: E731
        cond = {"scale": 1.0, "guided": True} if spec.conditional else {}
        plan = {main.name: {"role": "main", **base(main), "n": self.n_sample, **cond}}
        if not spec.sweep:
            plan[main.name].update(frames=self.strip_frames, strip_seeds=self.strip_seeds)
        if spec.conditional:
            plan[f"uncond_{main.name}"] = {"role": "unconditional", **base(main), "n": self.n_sample}
        if spec.snapshot and self.snapshot_iters:
            plan[f"snapshot_{main.name}"] = {"role": "snapshot", **base(main), "n": self.n_sample}
        if spec.sweep:
            for item in self.sweep:
                s = self.sampler(item)
                plan[f"sweep_{s.name}"] = {"role": "sweep", **base(s), "n": self.n_sweep}
                if s.sampler == "ddpm":  # the lecture's "image appearing over time": the full reverse process
                    plan[f"sweep_{s.name}"].update(frames=self.strip_frames, strip_seeds=self.strip_seeds)
        if spec.guidance:
            for scale in self.guidance_scales:
                plan[f"guidance_s{scale:g}"] = {"role": "guidance", **base(main), "n": self.n_guidance,
                                                "scale": float(scale), "guided": True}
        return plan


SECTIONS: dict[str, type] = {"ingest": IngestConfig, "train": TrainConfig, "attack": AttackConfig,
                             "transfer": TransferConfig, "forge": ForgeConfig, "patch": PatchConfig,
                             "dimension": DimensionConfig, "defend": DefendConfig, "sanitize": SanitizeConfig,
                             "certify": CertifyConfig, "poison": PoisonConfig,
                             "backdoor_defense": BackdoorDefenseConfig, "gan": GANConfig,
                             "autoencoder": AutoencoderConfig, "diffusion": DiffusionConfig,
                             "evaluate_generative": EvaluateGenerativeConfig}
TOP_LEVEL = ("profile", "seed", "device", *SECTIONS, "profiles")


def _keys(params: dict[str, Any], section: str, key: str) -> list[str]:
    value = (params.get(section) or {}).get(key) or {}
    return sorted(value) if isinstance(value, dict) else []


def trained_names(params: dict[str, Any]) -> list[str]:
    """The models of the ``train`` stage (the keys of ``train.models``)."""
    return _keys(params, "train", "models")


def defended_names(params: dict[str, Any]) -> list[str]:
    """The models of the ``defend`` stage (the keys of ``defend.defenses``)."""
    return _keys(params, "defend", "defenses")


def defended_base(params: dict[str, Any], name: str) -> str | None:
    """The base model of defended model ``name`` (``defend.base``); None for other models."""
    return (params.get("defend") or {}).get("base") if name in defended_names(params) else None


def model_names(params: dict[str, Any]) -> list[str]:
    """Every model a stage may name: ``train.models`` and ``defend.defenses`` (later areas add theirs here)."""
    return sorted(trained_names(params) + defended_names(params))


def model_fields() -> list[tuple[str, str]]:
    """(section, field) of every field that names models (``field(metadata=MODELS)``)."""
    return [(name, f.name) for name, cls in SECTIONS.items() for f in dataclasses.fields(cls) if f.metadata.get("models")]


def _check_models(params: dict[str, Any]) -> None:
    """Every field that names models refers to models some stage produces, each once."""
    known = model_names(params)
    both = sorted(set(trained_names(params)) & set(defended_names(params)))
    if both:
        raise ConfigError(f"params.yaml: {both} named in both 'train.models' and 'defend.defenses'; a model "
                          "has one producer")
    for section, key in model_fields():
        value = (params.get(section) or {}).get(key)
        names = [value] if isinstance(value, str) else value if isinstance(value, list) else []
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ConfigError(f"params.yaml: '{section}.{key}' names {unknown}, which are not models; expected some of "
                              f"train.models and defend.defenses {known}")
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ConfigError(f"params.yaml: '{section}.{key}' names {twice} more than once")


def _check_transfer_eps(eps: float | None, eps_linf: list[float]) -> None:
    if eps is not None and eps not in eps_linf:
        raise ConfigError(f"params.yaml: 'transfer.eps' = {eps} must be one of attack.eps_linf "
                          f"{eps_linf} (the worst case counts the transfer attack there)")


def _check_defend(defend: DefendConfig, train: TrainConfig, certify: CertifyConfig) -> None:
    """The base is a model of ``train``; ``certify`` smooths ``gaussian`` models only."""
    if defend.base not in train.models:
        raise ConfigError(f"params.yaml: 'defend.base' = {defend.base!r} is not a model of the train stage; "
                          f"expected one of train.models {sorted(train.models)}")
    bad = [m for m in certify.models if m not in defend.defenses or defend.spec(m).method != "gaussian"]
    if bad:
        gaussian = sorted(n for n in defend.defenses if defend.spec(n).method == "gaussian")
        raise ConfigError(f"params.yaml: 'certify.models' names {bad}, which are not gaussian-trained defenses; "
                          f"expected some of {gaussian}")


def _check_backdoors(train: TrainConfig, poison: PoisonConfig, bd: BackdoorDefenseConfig) -> None:
    """Every ``train.models.*.data`` names a prepared dataset; every defended poisoned model is
    trained on the poison.configs entry of its own name; the reference is trained on clean data."""
    for name in sorted(train.models):
        data = (train.models[name] or {}).get("data")
        if isinstance(data, str) and data.startswith("poisoned/") and data.removeprefix("poisoned/") not in poison.configs:
            raise ConfigError(f"params.yaml: 'train.models.{name}.data' = {data!r} names no prepared dataset; expected "
                              f"'prepared' or one of {[f'poisoned/{c}' for c in sorted(poison.configs)]}")
    for name in sorted(bd.models):
        data = (train.models.get(name) or {}).get("data")
        if data != f"poisoned/{name}":
            raise ConfigError(f"params.yaml: 'backdoor_defense.models.{name}' must be a train.models entry trained on "
                              f"'poisoned/{name}' (its poison.configs entry), found data = {data!r}")
    ref = (train.models.get(bd.reference) or {}).get("data")
    if ref != "prepared":
        raise ConfigError(f"params.yaml: 'backdoor_defense.reference' = {bd.reference!r} must be a train.models entry "
                          f"trained on clean data (data: prepared), found data = {ref!r}")


def _check_generative(gan: GANConfig, ev: EvaluateGenerativeConfig, diff: DiffusionConfig,
                      ae: AutoencoderConfig) -> None:
    """Every scored model is a GAN or diffusion config; the diffusion sets and the autoencoder's
    reconstructions are drawn at evaluate_generative's N, so their scores compare with the GANs'."""
    unknown = [m for m in ev.models if m not in gan.configs]
    if unknown:
        raise ConfigError(f"params.yaml: 'evaluate_generative.models' names {unknown}, which are not generative "
                          f"models; expected some of gan.configs {sorted(gan.configs)}")
    unknown = [m for m in ev.diffusion if m not in diff.configs]
    if unknown:
        raise ConfigError(f"params.yaml: 'evaluate_generative.diffusion' names {unknown}, which are not diffusion "
                          f"configs; expected some of diffusion.configs {sorted(diff.configs)}")
    both = sorted(set(ev.models) & set(ev.diffusion))
    if both:
        raise ConfigError(f"params.yaml: {both} are named both as GANs and as diffusion configs; names must be unique")
    for key, n in (("diffusion.n_sample", diff.n_sample), ("autoencoder.n_recon", ae.n_recon),
                   ("diffusion.n_sweep", diff.n_sweep), ("diffusion.n_guidance", diff.n_guidance)):
        if n > ev.n:
            raise ConfigError(f"params.yaml: the profile's '{key}' = {n} exceeds 'evaluate_generative.n' = {ev.n}, "
                              "the real images its sets are scored against")


def _check_cross(cfgs: dict[str, Any]) -> None:
    attack, transfer, dimension = cfgs["attack"], cfgs["transfer"], cfgs["dimension"]
    _check_generative(cfgs["gan"], cfgs["evaluate_generative"], cfgs["diffusion"], cfgs["autoencoder"])
    _check_defend(cfgs["defend"], cfgs["train"], cfgs["certify"])
    _check_backdoors(cfgs["train"], cfgs["poison"], cfgs["backdoor_defense"])
    _check_transfer_eps(transfer.eps, attack.eps_linf)
    train = cfgs["train"]
    low_res = [m for m in dimension.models if m in train.models and train.spec(m).arch != "logreg"]
    if low_res:
        raise ConfigError(f"params.yaml: 'dimension.models' names {low_res}, which are not logreg models "
                          "(C4 compares one linear model at several input sizes)")



def validate_params(params: dict[str, Any]) -> list[str]:
    """Check every key of params.yaml against the schema, for every profile.

    Returns the profiles checked; raises ConfigError listing every problem found, each with
    its full key. Unknown keys anywhere (a typo such as ``train.lrr`` or
    ``profiles.smoke.train.epoch``) are errors even though no stage reads them.
    """
    problems: list[str] = []

    def attempt(check) -> Any:
        try:
            return check()
        except ConfigError as exc:
            if str(exc) not in problems:
                problems.append(str(exc))
            return None

    unknown = sorted(set(params) - set(TOP_LEVEL))
    if unknown:
        problems.append(f"params.yaml: unknown top-level key {', '.join(map(repr, unknown))}; expected some of "
                        f"{list(TOP_LEVEL)}")
    attempt(lambda: load_common(params))
    profiles = params.get("profiles")
    if not isinstance(profiles, dict) or not profiles:
        problems.append("params.yaml: 'profiles' must map profile names to their size-like keys")
        profiles = {}
    for profile, body in profiles.items():
        if not isinstance(body, dict):
            problems.append(f"params.yaml: 'profiles.{profile}' must be a mapping, found {type(body).__name__}")
            continue
        extra = sorted(set(body) - set(SECTIONS))
        if extra:
            problems.append(f"params.yaml: unknown key {', '.join(repr(f'profiles.{profile}.{k}') for k in extra)}; "
                            f"a profile holds some of {list(SECTIONS)}")
        cfgs = {name: attempt(lambda n=name, c=cls: load_section(c, params, n, profile))
                for name, cls in SECTIONS.items()}
        if cfgs["train"] is not None:
            for model in sorted(cfgs["train"].models):
                attempt(lambda m=model: cfgs["train"].spec(m))
        if cfgs["defend"] is not None:
            for model in sorted(cfgs["defend"].defenses):
                attempt(lambda m=model: cfgs["defend"].spec(m))
        if cfgs["poison"] is not None:
            for name in sorted(cfgs["poison"].configs):
                attempt(lambda n=name: cfgs["poison"].spec(n))
        if cfgs["gan"] is not None:
            for name in sorted(cfgs["gan"].configs):
                attempt(lambda n=name: cfgs["gan"].spec(n))
        if all(c is not None for c in cfgs.values()):
            attempt(lambda: _check_cross(cfgs))
    attempt(lambda: _check_models(params))
    if problems:
        head = "params.yaml is not valid" if len(problems) == 1 else f"params.yaml has {len(problems)} problems"
        raise ConfigError(head + ":\n" + "\n".join(f"  - {p.removeprefix('params.yaml: ')}" for p in problems))
    return list(profiles)



def load_attack_config(params: dict[str, Any], model: str | None = None) -> AttackConfig:
    """The ``attack`` section merged with its profile, with its cross-section constraints
    (``transfer.eps`` one of ``attack.eps_linf``; ``attack.models`` known models). For a
    ``model`` of the defend stage, with ``attack.defended`` and ``defended_sizes`` applied."""
    cfg = load_section(AttackConfig, params, "attack")
    _check_models(params)
    _check_transfer_eps((params.get("transfer") or {}).get("eps"), cfg.eps_linf)
    return cfg.for_defended() if model is not None and model in defended_names(params) else cfg
