"""Output layers that hide information (the lecture's defense), measured by the threat model they
create: the same model behind three APIs (full scores, scores rounded to ``decimals``, the top-1
label), each attacked by what it leaves an attacker, at one L-inf eps, per query budget.

- full scores: Square (score-based random search on the margin);
- rounded scores: Square on the rounded probabilities (rounding flattens its margin loss);
- label only: HopSkipJump (L-inf and L2) and the Boundary Attack (L2), which need only the
  label; they would do the same against the score APIs, whose top label is the same.

Accuracy at eps after b queries per image, and for the L2 attacks the median L2 distance of their
adversarials, per budget b; with the lecture's rate limit, a budget is also hours per image.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..attacks.decision import BoundaryAttack, HopSkipJump, PredictionAPI
from ..attacks.square import Square
from ..evaluation import predict
from ..stats import wilson_p


def _square_accuracy(q_first: torch.Tensor, clean: torch.Tensor, budgets: list[int]) -> dict[int, float]:
    """Accuracy per budget from Square's ``queries_to_success`` (B,): 0 misclassified at the start,
    -1 never; correct unless misclassified or fooled within the budget."""
    q = q_first.cpu()
    return {b: float((clean & ~((q >= 0) & (q <= b))).float().mean()) for b in budgets}


def _row(api: str, attack: str, acc: dict[int, float], n: int, seconds: float, queries: int, **extra: Any) -> dict:
    return {"api": api, "attack": attack, "accuracy": {str(b): a for b, a in acc.items()},
            "accuracy_ci95": {str(b): list(wilson_p(a, n)) for b, a in acc.items()}, "seconds": seconds,
            "queries": queries, **extra}


def hiding(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, decimals: int, budgets: list[int],
           p_init: float, queries_per_minute: float, generator: torch.Generator, batch_size: int = 100,
           log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """The experiment on (x (N, C, H, W) in [0, 1], y (N,)); the largest budget is every attack's
    query limit per image. Returns JSON-ready metrics: one row per (API, attack)."""
    budgets = sorted(budgets)
    limit = budgets[-1]
    clean = (predict(model, x) == y).cpu()
    n = len(y)
    rows = []
    for mode in ("scores", "rounded"):
        api = PredictionAPI(model, mode, decimals)
        start = time.perf_counter()
        firsts = []
        for i in range(0, n, batch_size):
            sq = Square(api.as_model(), eps, n_queries=limit, p_init=p_init, generator=generator)
            sq(x[i:i + batch_size], y[i:i + batch_size])
            firsts.append(sq.queries_to_success.cpu())
        acc = _square_accuracy(torch.cat(firsts), clean, budgets)
        rows.append(_row(mode, "square", acc, n, time.perf_counter() - start, api.queries))
        log(f"{mode} / square: accuracy {acc}")
    for attack, norm in (("hopskipjump_linf", "Linf"), ("hopskipjump_l2", "L2"), ("boundary", "L2")):
        api = PredictionAPI(model, "label")
        start = time.perf_counter()
        traces = []
        for i in range(0, n, batch_size):
            a = (HopSkipJump(api, norm, steps=10**6, max_queries=limit, generator=generator) if attack != "boundary"
                 else BoundaryAttack(api, steps=limit, max_queries=limit, generator=generator))
            a(x[i:i + batch_size], y[i:i + batch_size])
            traces.append(a.trace)
        seconds = time.perf_counter() - start
        dist = {b: torch.cat([t.at(b) for t in traces]) for b in budgets}  # (N,) per budget, inf: none
        if norm == "Linf":
            acc = {b: float((clean & ~(d <= eps + 1e-9)).float().mean()) for b, d in dist.items()}
            rows.append(_row("label", attack, acc, n, seconds, api.queries, norm=norm))
        else:  # an L2 attack: the distance a decision-based attacker needs, over the clean-correct images
            rows.append({"api": "label", "attack": attack, "norm": norm, "seconds": seconds, "queries": api.queries,
                         "median_l2": {str(b): _median(d[clean]) for b, d in dist.items()}})
        log(f"label / {attack}: " + str(rows[-1].get("accuracy") or rows[-1].get("median_l2")))
    return {"n": n, "eps": eps, "decimals": decimals, "budgets": budgets, "clean_accuracy": float(clean.float().mean()),
            "queries_per_minute": queries_per_minute,
            "hours_per_image": {str(b): b / queries_per_minute / 60 for b in budgets}, "rows": rows}


def _median(d: torch.Tensor) -> float | None:
    """Median of ``d`` with inf (no adversarial yet) counted as larger than any distance; None if
    the median itself is inf."""
    if len(d) == 0:
        return None
    m = float(d.sort().values[(len(d) - 1) // 2])
    return None if math.isinf(m) else m

