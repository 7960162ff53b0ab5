"""The defenses area's sections of params.yaml (``defend``, ``sanitize``, ``certify``), one
validated dataclass each, and their cross-checks. The defend stage produces models (the keys
of ``defend.defenses``), named beside ``train.models``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config import ConfigError, from_dict, require
from ..schema import TrainConfig, model_field, section_keys, sized

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
    epochs: int = sized()
    batch_size: int = sized()
    n_train: int = sized()  # 0 = all
    n_monitor: int = sized()  # fixed training images the monitor attacks each epoch

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

    model: str = model_field()
    bit_depth: int  # bits per pixel kept by the bit-depth squeezer (1-8)
    median: int  # odd window of the median-filter squeezer
    eps: float  # L-inf radius of the attacks
    fpr: float  # false-positive rate on clean validation images that fixes the threshold
    pgd_steps: int
    square_queries: int
    detector_weight: float  # weight of the detection term in the detector-aware PGD
    n_eval: int = sized()  # test images attacked
    n_val: int = sized()  # clean validation images that fix the threshold

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

    models: list[str] = model_field()  # defend.defenses entries of method gaussian
    n0: int  # noise draws that pick the class
    n: int  # noise draws that bound its probability
    alpha: float  # failure probability of the certificate
    radii: list[float]  # L2 radii of the certified-accuracy table (also the attack's eps)
    pgd_steps: int  # PGD-L2 on the smoothed classifier
    eot: int  # noise draws per gradient (expectation over transformation)
    n_predict: int  # noise draws of the Monte-Carlo prediction of an attacked image
    batch_size: int
    n_eval: int = sized()

    def validate(self) -> None:
        require(len(self.models) >= 1, "models", "must name at least one model")
        for key in ("n0", "n", "pgd_steps", "eot", "n_predict", "batch_size", "n_eval"):
            require(getattr(self, key) >= 1, key, f"must be >= 1, found {getattr(self, key)}")
        require(0 < self.alpha < 1, "alpha", f"must lie in (0, 1), found {self.alpha}")
        require(len(self.radii) >= 1 and all(r > 0 for r in self.radii), "radii",
                f"must be a non-empty list of radii > 0, found {self.radii}")



@dataclass
class HidingConfig:
    """The ``hiding`` stage: output layers that hide information (scores rounded to ``decimals``,
    the top-1 label alone), measured by the threat model each creates. It attacks the two models
    of ``replicate_c9@<seed>``: ``defend.base`` and ``replicate.c9`` (the lecture's FGSM training),
    which from the main run's seed are the main run's ``cnn`` and ``cnn_fgsm_at`` recipes."""

    seed: int  # the replicate.seeds entry whose models are attacked
    eps: float  # L-inf radius an attack must stay within to count
    decimals: int  # the rounded API's decimals
    p_init: float  # Square's initial fraction of pixels per square
    batch_size: int
    n_eval: int = sized()  # evaluation images (the attack stages' first n)
    budgets: list[int] = sized()  # query budgets per image; the largest is every attack's limit

    def validate(self) -> None:
        require(isinstance(self.seed, int) and self.seed >= 0, "seed", f"must be an integer >= 0, found {self.seed!r}")
        require(0 < self.eps < 1, "eps", f"must lie in (0, 1), found {self.eps}")
        require(0 <= self.decimals <= 6, "decimals", f"must lie in 0-6, found {self.decimals}")
        require(0 < self.p_init <= 1, "p_init", f"must lie in (0, 1], found {self.p_init}")
        for key in ("batch_size", "n_eval"):
            require(getattr(self, key) >= 1, key, f"must be >= 1, found {getattr(self, key)}")
        ok = (isinstance(self.budgets, list) and len(self.budgets) >= 1 and all(isinstance(b, int) and b >= 1 for b in self.budgets)
              and self.budgets == sorted(set(self.budgets)))
        require(ok, "budgets", f"must be a non-empty increasing list of integers >= 1, found {self.budgets!r}")


SECTIONS: dict[str, type] = {"defend": DefendConfig, "sanitize": SanitizeConfig, "certify": CertifyConfig,
                             "hiding": HidingConfig}
#: section -> its field whose entries ``spec(name)`` validates one by one
ENTRIES = {"defend": "defenses"}
#: (section, key) whose entries are models this area produces
PRODUCES = ("defend", "defenses")


def defended_names(params: dict[str, Any]) -> list[str]:
    """The models of the ``defend`` stage (the keys of ``defend.defenses``)."""
    return section_keys(params, *PRODUCES)


def defended_base(params: dict[str, Any], name: str) -> str | None:
    """The base model of defended model ``name`` (``defend.base``); None for other models."""
    return (params.get("defend") or {}).get("base") if name in defended_names(params) else None


def check_defend(defend: DefendConfig, train: TrainConfig, certify: CertifyConfig) -> None:
    """The base is a model of ``train``; ``certify`` smooths ``gaussian`` models only."""
    if defend.base not in train.models:
        raise ConfigError(f"params.yaml: 'defend.base' = {defend.base!r} is not a model of the train stage; "
                          f"expected one of train.models {sorted(train.models)}")
    bad = [m for m in certify.models if m not in defend.defenses or defend.spec(m).method != "gaussian"]
    if bad:
        gaussian = sorted(n for n in defend.defenses if defend.spec(n).method == "gaussian")
        raise ConfigError(f"params.yaml: 'certify.models' names {bad}, which are not gaussian-trained defenses; "
                          f"expected some of {gaussian}")


def check_hiding(hiding: HidingConfig, replicate: Any) -> None:
    """The hiding stage attacks models a replicate_c9 stage trains: its seed is one of ``replicate.seeds``."""
    if replicate is not None and hiding.seed not in replicate.seeds:
        raise ConfigError(f"params.yaml: 'hiding.seed' = {hiding.seed} is not in replicate.seeds {replicate.seeds}; "
                          "the hiding stage attacks the models of replicate_c9@<seed>")


def check(cfgs: dict[str, Any]) -> None:
    check_defend(cfgs["defend"], cfgs["train"], cfgs["certify"])
    if cfgs.get("hiding") is not None:
        check_hiding(cfgs["hiding"], cfgs.get("replicate"))
