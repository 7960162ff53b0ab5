"""Output layers that hide information (the lecture's defense), measured by the threat model they
create: the same model behind three APIs (full scores, scores rounded to ``decimals``, the top-1
label), each attacked by what it leaves an attacker, at one L-inf eps, per query budget.

- full scores: Square (score-based random search on the margin);
- rounded scores: Square on the rounded probabilities (rounding flattens its margin loss);
- label only: HopSkipJump (L-inf and L2) and the Boundary Attack (L2), which need only the
  label. Every API reveals the label, so HopSkipJump L-inf counts against all three: an API's
  worst case is over Square on its own scores (none for the label API) and HopSkipJump L-inf
  (run once, on the model's top-1 label; a rounded API's top-1 can differ from it only where two
  rounded probabilities tie).

Accuracy at eps after b queries per image (each attack spends up to b), and for the L2 attacks
the median L2 distance of their adversarials, per budget b; with the lecture's rate limit, a
budget is also hours per image. ``broken_at`` keeps, per image, the smallest budget at which it
was misclassified within eps (0: misclassified unattacked; None: never), so that a claim can
compare two APIs image by image.
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
from ..stats import mcnemar, wilson_p

#: Each API and the attacks its worst case is taken over (rows of :func:`hiding`).
API_ATTACKS = {"scores": ("square", "hopskipjump_linf"), "rounded": ("square", "hopskipjump_linf"),
               "label": ("hopskipjump_linf",)}


def broken_at(success: torch.Tensor, clean: torch.Tensor, budgets: list[int]) -> list[int | None]:
    """Per image, the smallest budget whose column of ``success`` (N, len(budgets)) is true, 0
    where ``clean`` (N,) is false (misclassified unattacked), None where never."""
    out: list[int | None] = []
    for ok, row in zip(clean.tolist(), success.tolist()):
        out.append(0 if not ok else next((b for b, s in zip(budgets, row) if s), None))
    return out


def accuracy(first: list[int | None], budgets: list[int]) -> dict[int, float]:
    """Accuracy after each budget from per-image ``broken_at`` values."""
    n = len(first)
    return {b: sum(f is None or f > b for f in first) / n for b in budgets}


def _square_success(q: torch.Tensor, budgets: list[int]) -> torch.Tensor:
    """(N, len(budgets)) from Square's ``queries_to_success`` (N,): 0 misclassified at the start,
    -1 never, else the query that fooled the model."""
    q = q.cpu()
    return torch.stack([(q >= 0) & (q <= b) for b in budgets], 1)


def _accuracy_row(api: str, attack: str, first: list[int | None], budgets: list[int], seconds: float,
                  queries: int, **extra: Any) -> dict:
    acc = accuracy(first, budgets)
    n = len(first)
    return {"api": api, "attack": attack, "accuracy": {str(b): a for b, a in acc.items()},
            "accuracy_ci95": {str(b): list(wilson_p(a, n)) for b, a in acc.items()}, "broken_at": first,
            "seconds": seconds, "queries": queries, **extra}


def worst_case(rows: list[dict], budgets: list[int]) -> dict[str, dict]:
    """Per API of :data:`API_ATTACKS`: the per-image earliest break over its attacks, the accuracy
    left at each budget (with its Wilson interval), and for the hiding APIs an exact paired test
    against full scores at each budget (``vs_scores``: ``p_a_higher`` small when the API keeps
    more images correct than full scores do)."""
    by = {(r["api"], r["attack"]): r["broken_at"] for r in rows if "broken_at" in r}
    out = {}
    for api, attacks in API_ATTACKS.items():
        cols = [by[(api if a == "square" else "label", a)] for a in attacks]  # the label attacks ran once
        first = [min((f for f in fs if f is not None), default=None) for fs in zip(*cols)]
        acc = accuracy(first, budgets)
        out[api] = {"attacks": list(attacks), "accuracy": {str(b): a for b, a in acc.items()},
                    "accuracy_ci95": {str(b): list(wilson_p(a, len(first))) for b, a in acc.items()},
                    "broken_at": first}
    for api in ("rounded", "label"):  # image by image against full scores: a = this API, b = full scores
        out[api]["vs_scores"] = {str(b): mcnemar(_robust(out[api]["broken_at"], b), _robust(out["scores"]["broken_at"], b))
                                 for b in budgets}
    return out


def _robust(first: list[int | None], budget: int) -> torch.Tensor:  # (N,) bool: still correct after ``budget``
    return torch.tensor([f is None or f > budget for f in first], dtype=torch.bool)


def hiding(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, decimals: int, budgets: list[int],
           p_init: float, queries_per_minute: float, seed: int, batch_size: int = 100,
           log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """The experiment on (x (N, C, H, W) in [0, 1], y (N,)); the largest budget is every attack's
    query limit per image. Returns JSON-ready metrics: one row per (API, attack) and each API's
    worst case (``apis``).

    Each attack draws from its own generator seeded from ``seed``; Square on full and on rounded
    scores share theirs (common random numbers), so the paired comparison of the two APIs differs
    by the rounding, not by the random squares. Square's first query (the unperturbed image) is not
    counted against its budget; the decision-based attacks count every query."""
    budgets = sorted(budgets)
    limit = budgets[-1]
    clean = (predict(model, x) == y).cpu()
    n = len(y)
    rows = []
    for mode in ("scores", "rounded"):
        api = PredictionAPI(model, mode, decimals)
        start = time.perf_counter()
        firsts = []
        square_gen = torch.Generator().manual_seed(seed)  # the same for both score APIs
        for i in range(0, n, batch_size):
            sq = Square(api.as_model(), eps, n_queries=limit, p_init=p_init, generator=square_gen)
            sq(x[i:i + batch_size], y[i:i + batch_size])
            firsts.append(sq.queries_to_success.cpu())
        first = broken_at(_square_success(torch.cat(firsts), budgets), clean, budgets)
        rows.append(_accuracy_row(mode, "square", first, budgets, time.perf_counter() - start, api.queries))
        log(f"{mode} / square: accuracy {rows[-1]['accuracy']}")
    for k, (attack, norm) in enumerate((("hopskipjump_linf", "Linf"), ("hopskipjump_l2", "L2"), ("boundary", "L2")), 1):
        api = PredictionAPI(model, "label")
        generator = torch.Generator().manual_seed(seed + k)
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
            success = torch.stack([dist[b].cpu() <= eps + 1e-9 for b in budgets], 1)
            rows.append(_accuracy_row("label", attack, broken_at(success, clean, budgets), budgets, seconds,
                                      api.queries, norm=norm))
        else:  # an L2 attack: the distance a decision-based attacker needs, over the clean-correct images
            rows.append({"api": "label", "attack": attack, "norm": norm, "seconds": seconds, "queries": api.queries,
                         "median_l2": {str(b): _median(d.cpu()[clean]) for b, d in dist.items()}})
        log(f"label / {attack}: " + str(rows[-1].get("accuracy") or rows[-1].get("median_l2")))
    return {"n": n, "eps": eps, "decimals": decimals, "budgets": budgets, "clean_accuracy": float(clean.float().mean()),
            "queries_per_minute": queries_per_minute,
            "hours_per_image": {str(b): b / queries_per_minute / 60 for b in budgets}, "rows": rows,
            "apis": worst_case(rows, budgets)}


def curve(m: dict[str, Any], model: str) -> list[dict[str, Any]]:
    """Plot rows (model, api, queries, hours, accuracy): each API's worst case per budget."""
    return [{"model": model, "api": api, "queries": int(b), "hours": m["hours_per_image"][b], "accuracy": a}
            for api, w in m["apis"].items() for b, a in w["accuracy"].items()]


def evaluate_models(models: dict[str, nn.Module], x: torch.Tensor, y: torch.Tensor, *, eps: float, decimals: int,
                    budgets: list[int], p_init: float, queries_per_minute: float, seed: int, batch_size: int = 100,
                    log: Callable[[str], None] = lambda s: None
                    ) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, float]]:
    """:func:`hiding` for each of ``models`` ({name: model}, in order) on the same images, each
    with generators seeded from ``seed`` (one model's result does not depend on another's).
    Returns the metrics ``{"models": {name: hiding(...)}}`` without timings (they vary from run to
    run, so they go to the stage's cost record), the plot rows of :func:`curve`, and the wall
    seconds of each ``<model>/<api>/<attack>``."""
    out, rows, seconds = {}, [], {}
    for name, model in models.items():
        out[name] = hiding(model, x, y, eps=eps, decimals=decimals, budgets=budgets, p_init=p_init,
                           queries_per_minute=queries_per_minute, batch_size=batch_size, seed=seed,
                           log=lambda s, name=name: log(f"{name}: {s}"))
        for row in out[name]["rows"]:
            seconds[f"{name}/{row['api']}/{row['attack']}"] = row.pop("seconds")
        rows += curve(out[name], name)
    return {"models": out}, rows, seconds


def _median(d: torch.Tensor) -> float | None:
    """Median of ``d`` with inf (no adversarial yet) counted as larger than any distance; None if
    the median itself is inf."""
    if len(d) == 0:
        return None
    m = float(d.sort().values[(len(d) - 1) // 2])
    return None if math.isinf(m) else m
