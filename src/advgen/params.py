"""Typed configs shared by several stages (each stage's own config lives in its script)."""
from __future__ import annotations

from dataclasses import dataclass

from .config import from_dict, require, section
from .robustness import ATTACKS


@dataclass
class AttackConfig:
    models: list[str]
    attacks: list[str]
    eps_linf: list[float]
    eps_l2: list[float]
    check_eps: float
    pgd_steps: int
    pgd_restarts: int
    square_eps: float
    square_p_init: float
    queries_per_minute: float
    window_minutes: float
    n_eval: int  # profile
    n_square: int  # profile
    apgd_steps: int  # profile
    more_steps: int  # profile
    more_restarts: int  # profile
    square_queries: int  # profile
    square_budgets: list[int]  # profile

    def validate(self) -> None:
        for key in ("eps_linf", "eps_l2"):
            bad = [e for e in getattr(self, key) if e < 0]
            require(not bad, f"attack.{key}", f"must hold eps >= 0, found {bad}")
        require(0.0 in self.eps_linf and self.check_eps in self.eps_linf, "attack.eps_linf",
                f"must contain 0 and check_eps={self.check_eps}")
        unknown = [a for a in self.attacks if a not in ATTACKS]
        require(not unknown, "attack.attacks", f"unknown attack(s) {unknown}; expected some of {sorted(ATTACKS)}")
        require(self.square_eps >= 0 and self.check_eps >= 0, "attack.square_eps/check_eps", "must be >= 0")
        require(min(self.n_eval, self.n_square, self.apgd_steps, self.pgd_steps, self.pgd_restarts) >= 1,
                "attack", "n_eval, n_square, apgd_steps, pgd_steps and pgd_restarts must be >= 1")
        require(self.more_steps > self.pgd_steps and self.more_restarts > self.pgd_restarts, "attack.more_*",
                "must exceed pgd_steps and pgd_restarts")
        require(all(0 < b <= self.square_queries for b in self.square_budgets), "profiles.*.attack.square_budgets",
                f"must lie in (0, square_queries={self.square_queries}]")
        require(self.queries_per_minute > 0, "attack.queries_per_minute", "must be > 0")


def load_attack_config(params: dict) -> AttackConfig:
    """The ``attack`` section merged with its profile, validated."""
    return from_dict(AttackConfig, section(params, "attack"), "attack")
