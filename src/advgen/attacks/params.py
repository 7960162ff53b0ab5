"""The attacks area's sections of params.yaml (``attack``, ``transfer``, ``forge``, ``patch``,
``dimension``), one validated dataclass each, and their cross-checks.

No torch here (the validate stage imports every area's params): the attack names are repeated
in :data:`ATTACK_NAMES`, which ``tests/test_schema.py`` holds against
:data:`advgen.attacks.robustness.ATTACKS`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..config import PROFILE, ConfigError, require
from ..schema import model_field, sized

ATTACK_NAMES = ("apgd_ce", "apgd_dlr", "fgsm", "noise", "pgd", "pgd_l2", "square")


@dataclass
class AttackConfig:
    models: list[str] = model_field()
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
    # the worst-case cascade's white-box attacks (advgen.attacks.robustness.CASCADES): "advgen" (APGD-CE,
    # APGD-T: the committed results), "standard" (+ FAB-T: AutoAttack's standard version) or "plus"
    # (+ APGD-DLR and FAB-T). Not in params.yaml by default: setting it reruns every robustness stage.
    cascade: str = field(default="advgen", kw_only=True)
    square_sweep: bool = field(default=False, kw_only=True)  # Square at every eps_linf (else at square_eps only: C7's experiment)
    # Models of the defend stage survive most attacks, so each attack costs several times more on
    # them: these keys replace the ones above for them (``defended_sizes``: the size-like ones).
    defended: dict = field(default_factory=dict, kw_only=True)
    n_eval: int = sized()
    n_square: int = sized()
    apgd_steps: int = sized()
    more_restarts: int = sized()
    square_queries: int = sized()
    square_budgets: list[int] = sized()
    defended_sizes: dict = field(default_factory=dict, metadata=PROFILE, kw_only=True)

    def for_defended(self) -> "AttackConfig":
        """This config with the overrides for models of the defend stage applied."""
        return dataclasses.replace(self, **self.defended, **self.defended_sizes, defended={}, defended_sizes={})

    def _check_overrides(self) -> None:
        fields = {f.name: f for f in dataclasses.fields(self)}
        for key, is_sized in (("defended", False), ("defended_sizes", True)):
            allowed = sorted(n for n, f in fields.items() if bool(f.metadata.get("profile")) == is_sized
                             and n not in ("models", "defended", "defended_sizes"))
            unknown = sorted(set(getattr(self, key)) - set(allowed))
            require(not unknown, key, f"has unknown key(s) {unknown}; it may override {allowed}")
        try:
            self.for_defended().validate()
        except ConfigError as exc:
            raise ConfigError(f"gives an invalid config for defended models: {', '.join(exc.keys)} {exc}",
                              keys=("defended",)) from None

    def validate(self) -> None:
        require(self.cascade in ("advgen", "standard", "plus"), "cascade",
                f"must be advgen, standard or plus, found {self.cascade!r}")
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
    models: list[str] = model_field()
    eps: float
    steps: int

    def validate(self) -> None:
        require(len(self.models) >= 2, "models", f"needs at least two models, found {self.models}")
        require(self.eps >= 0, "eps", f"must be >= 0, found {self.eps}")
        require(self.steps >= 1, "steps", f"must be >= 1, found {self.steps}")


@dataclass
class ForgeConfig:
    model: str = model_field()
    noise_lr: float
    image_lam: float
    image_lr: float
    n_per_class: int = sized()
    n_reference: int = sized()
    noise_steps: int = sized()
    image_steps: int = sized()

    def validate(self) -> None:
        for key in ("noise_steps", "image_steps", "n_per_class"):
            require(getattr(self, key) >= 1, key, f"must be >= 1, found {getattr(self, key)}")
        for key in ("noise_lr", "image_lr"):
            require(getattr(self, key) > 0, key, f"must be > 0, found {getattr(self, key)}")
        require(self.image_lam >= 0, "image_lam", f"must be >= 0, found {self.image_lam}")
        require(self.n_reference >= 10, "n_reference", f"must be >= 10, found {self.n_reference}")


@dataclass
class PatchConfig:
    model: str = model_field()
    sizes: list[int]  # k x k patches, ascending
    target: int | None  # None: untargeted
    lr: float
    batch_size: int
    w_nps: float  # per pixel of the patch
    w_tv: float  # per pixel of the patch
    palette: list[float]  # printable grey levels
    ablation_size: int
    weight_scales: list[float]  # (w_nps, w_tv) times each, at ablation_size
    n_train: int = sized()
    n_test: int = sized()
    epochs: int = sized()

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
    models: list[str] = model_field()
    eps: float
    n_eval: int = sized()

    def validate(self) -> None:
        require(len(self.models) >= 2, "models", f"needs at least two models, found {self.models}")
        require(self.eps > 0, "eps", f"must be > 0, found {self.eps}")
        require(self.n_eval >= 1, "n_eval", f"must be >= 1, found {self.n_eval}")



SECTIONS: dict[str, type] = {"attack": AttackConfig, "transfer": TransferConfig, "forge": ForgeConfig,
                             "patch": PatchConfig, "dimension": DimensionConfig}


def check_transfer_eps(eps: float | None, eps_linf: list[float]) -> None:
    """``transfer.eps`` is one of ``attack.eps_linf`` (the worst case counts the transfer attack there)."""
    if eps is not None and eps not in eps_linf:
        raise ConfigError(f"params.yaml: 'transfer.eps' = {eps} must be one of attack.eps_linf "
                          f"{eps_linf} (the worst case counts the transfer attack there)")


def check(cfgs: dict[str, Any]) -> None:
    """Cross-section rules: ``transfer.eps`` in ``attack.eps_linf``; ``dimension.models`` are logreg models."""
    attack, transfer, dimension, train = cfgs["attack"], cfgs["transfer"], cfgs["dimension"], cfgs["train"]
    check_transfer_eps(transfer.eps, attack.eps_linf)
    low_res = [m for m in dimension.models if m in train.models and train.spec(m).arch != "logreg"]
    if low_res:
        raise ConfigError(f"params.yaml: 'dimension.models' names {low_res}, which are not logreg models "
                          "(C4 compares one linear model at several input sizes)")


def load_attack_config(params: dict[str, Any], *, defended: bool = False) -> AttackConfig:
    """The ``attack`` section merged with its profile (``transfer.eps`` must be one of its
    ``eps_linf``); for a model of the defend stage (``defended``), with ``attack.defended`` and
    ``defended_sizes`` applied."""
    from ..config import load_section
    cfg = load_section(AttackConfig, params, "attack")
    check_transfer_eps((params.get("transfer") or {}).get("eps"), cfg.eps_linf)
    return cfg.for_defended() if defended else cfg
