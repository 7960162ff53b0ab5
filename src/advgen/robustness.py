"""Robustness evaluation: epsilon sweeps, worst case over attacks, and automatic sanity checks.

The same evaluation subset is used for every attack and model, so per-example results can
be combined into an AutoAttack-style worst case: an example counts as robust at eps only if
no attack run at that eps fooled it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from .attacks import APGD, FGSM, PGD, Attack, AttackError, Square, UniformNoise, lp_norm

# name -> (norm, builder(model, eps, cfg, generator))
Builder = Callable[[nn.Module, float, dict, torch.Generator], Attack]
ATTACKS: dict[str, tuple[str, Builder]] = {
    "fgsm": ("Linf", lambda m, e, c, g: FGSM(m, e)),
    "pgd": ("Linf", lambda m, e, c, g: PGD(m, e, steps=c["pgd_steps"], restarts=c["pgd_restarts"], generator=g)),
    "pgd_l2": ("L2", lambda m, e, c, g: PGD(m, e, norm="L2", steps=c["pgd_steps"], restarts=c["pgd_restarts"],
                                           generator=g)),
    "apgd_ce": ("Linf", lambda m, e, c, g: APGD(m, e, loss="ce", steps=c["apgd_steps"], generator=g)),
    "apgd_dlr": ("Linf", lambda m, e, c, g: APGD(m, e, loss="dlr", steps=c["apgd_steps"], generator=g)),
    "square": ("Linf", lambda m, e, c, g: Square(m, e, n_queries=c["square_queries"], p_init=c["square_p_init"],
                                                generator=g)),
    "noise": ("Linf", lambda m, e, c, g: UniformNoise(m, e, generator=g)),
}
WHITE_BOX = ("fgsm", "pgd", "apgd_ce", "apgd_dlr")


def build_attack(name: str, model: nn.Module, eps: float, cfg: dict, generator: torch.Generator) -> Attack:
    """Instantiate attack ``name`` (one of :data:`ATTACKS`) from the stage's config dict."""
    if name not in ATTACKS:
        raise AttackError(f"unknown attack {name!r}; expected one of {sorted(ATTACKS)}")
    return ATTACKS[name][1](model, eps, cfg, generator)


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Predicted classes (N,) of ``x`` (N, C, H, W), batched."""
    return torch.cat([model(x[i:i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])


@dataclass
class SweepResult:
    eps: list[float]
    correct: torch.Tensor  # (n_eps, N) bool: still correctly classified
    adv_examples: torch.Tensor  # (n_show, C, H, W) at ``show_eps``
    show_eps: float
    queries: int
    grad_evals: int
    seconds: float
    max_norm: list[float]  # largest perturbation norm found at each eps (must be <= eps)
    extra: dict


def sweep(name: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps_list: list[float], cfg: dict,
          generator: torch.Generator, batch_size: int = 250, n_show: int = 8, show_eps: float | None = None) -> SweepResult:
    """Run attack ``name`` at each eps on (x (N, C, H, W), y (N,)) and record who stays correct."""
    norm = ATTACKS[name][0] if name in ATTACKS else "Linf"
    show_eps = show_eps if show_eps in eps_list else max(eps_list)
    correct, max_norm, queries, grads, extra = [], [], 0, 0, {}
    shown = x[:n_show].clone()
    start = time.perf_counter()
    for eps in eps_list:
        hits, worst, q_first = [], 0.0, []
        for i in range(0, len(y), batch_size):
            xb, yb = x[i:i + batch_size], y[i:i + batch_size]
            attack = build_attack(name, model, eps, cfg, generator)
            adv = attack(xb, yb)
            hits.append(predict(model, adv) == yb)
            worst = max(worst, float(lp_norm(adv - xb, norm).max()))
            queries, grads = queries + attack.queries, grads + attack.grad_evals
            if isinstance(attack, Square) and eps > 0:
                q_first.append(attack.queries_to_success)
            if eps == show_eps and i == 0:
                shown = adv[:n_show].clone()
        correct.append(torch.cat(hits))
        max_norm.append(worst)
        if q_first:
            extra[f"queries_to_success@{eps:g}"] = torch.cat(q_first).tolist()
    return SweepResult(list(eps_list), torch.stack(correct), shown, show_eps, queries, grads,
                       time.perf_counter() - start, max_norm, extra)


def success_vs_budget(queries_to_success: list[int], clean_correct: torch.Tensor, budgets: list[int]) -> dict[int, float]:
    """Fraction of initially correct examples fooled within each query budget."""
    q = torch.tensor(queries_to_success)
    ok = clean_correct.bool()
    n = max(int(ok.sum()), 1)
    return {b: float(((q >= 1) & (q <= b) & ok).sum()) / n for b in budgets}


def worst_case(per_attack: dict[str, tuple[list[float], torch.Tensor]], eps_list: list[float]) -> dict[float, float]:
    """Robust accuracy at each eps when every attack that ran at that eps counts.

    ``per_attack`` maps attack -> (its eps list, correct (n_eps, N)). An example is robust at
    eps only if it is correct under every attack run at that eps.
    """
    out = {}
    for eps in eps_list:
        rows = [c[e.index(eps)] for e, c in per_attack.values() if eps in e]
        if rows:
            out[eps] = float(torch.stack(rows).all(0).float().mean())
    return out


@dataclass
class Check:
    name: str
    passed: bool
    detail: str

    def as_dict(self) -> dict:
        return {"name": self.name, "passed": self.passed, "detail": self.detail}


def sanity_checks(clean_acc: float, curves: dict[str, dict[float, float]], *, check_eps: float,
                  pgd_variants: dict[str, float], black_box: dict[str, float], unbounded_acc: float,
                  deterministic: bool, noise_margin: float = 0.5, tol: float = 0.0) -> list[Check]:
    """The automatic checks of an evaluation (Carlini et al. 2019, sections 5-6).

    ``curves`` maps attack -> {eps: robust accuracy} (L-inf attacks; ``pgd`` and ``fgsm`` and
    ``noise`` expected). ``pgd_variants`` maps "PGD-<steps>x<restarts>" -> accuracy at
    ``check_eps``, ordered from weakest to strongest budget. ``black_box`` maps attack ->
    (its accuracy, the best white-box accuracy on the same examples at the same eps).
    """
    checks = []
    for name, curve in curves.items():
        if name == "noise":  # a baseline, not a loss maximiser: it may raise accuracy by chance
            continue
        if 0.0 in curve:
            checks.append(Check(f"eps0_equals_clean[{name}]", abs(curve[0.0] - clean_acc) <= 1e-9,
                                f"acc at eps=0 {curve[0.0]:.4f} vs clean {clean_acc:.4f}"))
        over = {e: a for e, a in curve.items() if a > clean_acc + tol}
        checks.append(Check(f"robust_le_clean[{name}]", not over,
                            "all <= clean" if not over else f"above clean {clean_acc:.4f} at {over}"))
        eps_sorted = sorted(curve)
        ups = [(a, b) for a, b in zip(eps_sorted, eps_sorted[1:]) if curve[b] > curve[a] + tol]
        checks.append(Check(f"monotone_in_eps[{name}]", not ups,
                            "non-increasing" if not ups else
                            "increases " + ", ".join(f"{curve[a]:.4f}@{a:g} -> {curve[b]:.4f}@{b:g}" for a, b in ups)))
    if "pgd" in curves and "fgsm" in curves:
        bad = {e: (curves["pgd"][e], curves["fgsm"][e]) for e in curves["pgd"]
               if e in curves["fgsm"] and curves["pgd"][e] > curves["fgsm"][e] + tol}
        checks.append(Check("pgd_le_fgsm", not bad, "PGD <= FGSM at every eps" if not bad else f"PGD > FGSM at {bad}"))
    names = list(pgd_variants)
    ups = [(a, b) for a, b in zip(names, names[1:]) if pgd_variants[b] > pgd_variants[a] + tol]
    checks.append(Check("more_steps_or_restarts_never_help_accuracy", not ups,
                        ", ".join(f"{k}={v:.4f}" for k, v in pgd_variants.items()) + f" at eps={check_eps:g}"))
    for name, (acc, white) in black_box.items():
        checks.append(Check(f"black_box_not_stronger[{name}]", acc >= white - tol,
                            f"{name} {acc:.4f} vs best white-box {white:.4f} on the same examples"))
    if "noise" in curves and "pgd" in curves and check_eps in curves["noise"]:
        noise, pgd = curves["noise"][check_eps], curves["pgd"][check_eps]
        ok = (clean_acc - noise) <= noise_margin * (clean_acc - pgd)
        checks.append(Check("noise_much_weaker_than_pgd", ok,
                            f"noise drop {clean_acc - noise:.4f} vs PGD drop {clean_acc - pgd:.4f} at eps="
                            f"{check_eps:g} (must be <= {noise_margin:g} x)"))
    checks.append(Check("unbounded_pgd_reaches_zero", unbounded_acc == 0.0, f"PGD at eps=1: {unbounded_acc:.4f}"))
    checks.append(Check("logits_deterministic", deterministic, "two forward passes equal" if deterministic
                        else "two forward passes differ"))
    return checks


def transfer_matrix(models: dict[str, nn.Module], x: torch.Tensor, y: torch.Tensor, eps: float, steps: int,
                    generator: torch.Generator, batch_size: int = 250) -> tuple[dict, dict[str, torch.Tensor]]:
    """Craft L-inf PGD on each source model and evaluate every target on those images.

    Returns ({source: {target: accuracy}}, {"source->target": correct (N,) bool}). The
    diagonal is the white-box attack itself.
    """
    matrix, correct = {}, {}
    for src, model in models.items():
        adv = torch.cat([PGD(model, eps, steps=steps, generator=generator)(x[i:i + batch_size], y[i:i + batch_size])
                         for i in range(0, len(y), batch_size)])
        matrix[src] = {}
        for tgt, target in models.items():
            hit = predict(target, adv) == y
            matrix[src][tgt] = float(hit.float().mean())
            correct[f"{src}->{tgt}"] = hit
    return matrix, correct
