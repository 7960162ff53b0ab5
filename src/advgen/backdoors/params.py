"""The backdoors area's sections of params.yaml (``poison``, ``backdoor_defense``), one validated
dataclass each, and their cross-checks with ``train.models`` (poisoned models are trained by the
train stage on ``poisoned/<name>``)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..config import ConfigError, from_dict, require
from ..schema import TrainConfig, model_field, sized

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

    model: str = model_field()  # clean_label's surrogate (the standard cnn)
    configs: dict
    batch_size: int  # clean_label: images per PGD batch
    n_train: int = sized()  # 0 = the whole training split (a seeded subset otherwise)
    n_test: int = sized()  # 0 = the whole test split

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

    reference: str = model_field()  # the clean model trained like the poisoned ones (the CA drop's baseline)
    models: dict  # poisoned model (named like its poison.configs entry) -> defenses run on it
    spectral_factor: float  # remove factor x the expected poison count per class (Tran et al.: 1.5)
    spectral_max_class_fraction: float  # never remove more of a class than this
    clustering_dims: int  # ICA components (Chen et al.: 10)
    clustering_size: float  # flag the smaller 2-means cluster below this share of its class
    strip_frr: float  # false-rejection rate on clean images that fixes the threshold
    prune_acc_drop: float  # fine-pruning: stop before clean accuracy falls this much
    prune_max_fraction: float  # fine-pruning: prune at most this share of the channels
    finetune_lr: float
    n_clean: int = sized()  # the defender's trusted clean training images
    n_eval: int = sized()  # test images scored (0 = all)
    strip_overlays: int = sized()  # clean images superimposed on each input (Gao et al.)
    finetune_epochs: int = sized()  # fine-pruning and fine-tuning

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



SECTIONS: dict[str, type] = {"poison": PoisonConfig, "backdoor_defense": BackdoorDefenseConfig}
#: section -> its field whose entries ``spec(name)`` validates one by one
ENTRIES = {"poison": "configs"}


def check_backdoors(train: TrainConfig, poison: PoisonConfig, bd: BackdoorDefenseConfig) -> None:
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


def check(cfgs: dict[str, Any]) -> None:
    check_backdoors(cfgs["train"], cfgs["poison"], cfgs["backdoor_defense"])
