"""Typed configs shared by several stages (each stage's own config lives in its script)."""
from __future__ import annotations

from dataclasses import dataclass

from .config import ConfigError, from_dict, require, section
from .robustness import ATTACKS, CascadeConfig


@dataclass
class AttackConfig:
    models: list[str]
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
    n_eval: int  # profile
    n_square: int  # profile
    apgd_steps: int  # profile
    more_restarts: int  # profile
    square_queries: int  # profile
    square_budgets: list[int]  # profile

    def validate(self) -> None:
        for key in ("eps_linf", "eps_l2"):
            bad = [e for e in getattr(self, key) if e < 0]
            require(not bad, f"attack.{key}", f"must hold eps >= 0, found {bad}")
        require(0.0 in self.eps_linf and self.check_eps in self.eps_linf, "attack.eps_linf",
                f"must contain 0 and check_eps={self.check_eps}")
        for key in ("square_eps", "check_eps"):
            value = getattr(self, key)
            require(value > 0 and value in self.eps_linf, f"attack.{key}",
                    f"must be > 0 and one of attack.eps_linf {self.eps_linf}, found {value}")
        outside = [e for e in self.convergence_eps if e <= 0 or e not in self.eps_linf]
        require(not outside, "attack.convergence_eps",
                f"must hold eps > 0 from attack.eps_linf {self.eps_linf}, found {outside}")
        unknown = [a for a in self.attacks if a not in ATTACKS]
        require(not unknown, "attack.attacks", f"unknown attack(s) {unknown}; expected some of {sorted(ATTACKS)}")
        require(0 <= self.tolerance < 1, "attack.tolerance", f"must lie in [0, 1), found {self.tolerance}")
        require(min(self.n_eval, self.n_square, self.apgd_steps, self.pgd_steps, self.pgd_restarts,
                    self.n_target_classes, self.more_restarts) >= 1,
                "attack", "n_eval, n_square, apgd_steps, pgd_steps, pgd_restarts, n_target_classes and "
                "more_restarts must be >= 1")
        require(self.more_restarts >= 2, "attack.more_restarts", f"must be >= 2 (more than one), found {self.more_restarts}")
        require(all(0 < b <= self.square_queries for b in self.square_budgets), "attack.square_budgets",
                f"must lie in (0, square_queries={self.square_queries}]")
        require(self.queries_per_minute > 0, "attack.queries_per_minute", "must be > 0")

    def cascade(self) -> CascadeConfig:
        return CascadeConfig(apgd_steps=self.apgd_steps, n_target_classes=self.n_target_classes,
                             square_queries=self.square_queries, square_p_init=self.square_p_init,
                             n_square=self.n_square, more_restarts=self.more_restarts)


def load_attack_config(params: dict) -> AttackConfig:
    """The ``attack`` section merged with its profile, validated, with its cross-section
    constraints: ``transfer.eps`` must be one of ``attack.eps_linf`` (the worst case counts the
    transfer attack there) and every model in ``attack.models`` must be in ``train.models``."""
    cfg = from_dict(AttackConfig, section(params, "attack"), "attack")
    t_eps = (params.get("transfer") or {}).get("eps")
    if t_eps is not None and t_eps not in cfg.eps_linf:
        raise ConfigError(f"params.yaml: 'transfer.eps' = {t_eps} must be one of attack.eps_linf {cfg.eps_linf}")
    trained = sorted((params.get("train") or {}).get("models") or {})
    missing = [m for m in cfg.models if m not in trained]
    if missing:
        raise ConfigError(f"params.yaml: 'attack.models' names {missing}, which are not in train.models {trained}")
    return cfg
