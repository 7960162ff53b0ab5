"""Uncertainty of accuracies: Wilson intervals, and exact paired tests on the same examples.

Every accuracy the pipeline reports is a binomial proportion over n evaluation images, so it
carries a 95% Wilson score interval. Two figures measured on the *same* images (clean vs
attacked, one attack vs another) are compared with an exact McNemar test: only the images
whose outcome differs carry information, and under the null hypothesis each of them goes
either way with probability 1/2 (an exact binomial sign test on the discordant pairs).
"""
from __future__ import annotations

import math

import torch

Z95 = 1.959963984540054  # the 97.5% quantile of N(0, 1)


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """95% Wilson score interval (lo, hi) of ``k`` successes out of ``n``; n = 0 gives (0, 1)."""
    if n <= 0:
        return 0.0, 1.0
    if not 0 <= k <= n:
        raise ValueError(f"successes must lie in [0, n={n}], found {k}")
    return wilson_p(k / n, n, z)


def wilson_p(p: float, n: int, z: float = Z95) -> tuple[float, float]:
    """95% Wilson score interval of an observed proportion ``p`` over ``n`` trials."""
    if n <= 0:
        return 0.0, 1.0
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"proportion must lie in [0, 1], found {p}")
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # The interval always contains p (rounding could put p = 1 a hair above the upper end).
    return max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))


def accuracy_ci(correct: torch.Tensor) -> dict[str, float | list[float] | int]:
    """``{"accuracy", "ci95": [lo, hi], "n"}`` of a (N,) bool tensor of correct outcomes."""
    n = int(correct.numel())
    k = int(correct.sum())
    lo, hi = wilson(k, n)
    return {"accuracy": k / n if n else float("nan"), "ci95": [lo, hi], "n": n}


def binom_tail(k: int, n: int) -> float:
    """P(X >= k) for X ~ Binomial(n, 1/2), exact."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    return sum(math.comb(n, i) for i in range(k, n + 1)) / 2.0 ** n


def mcnemar(a: torch.Tensor, b: torch.Tensor) -> dict[str, float | int]:
    """Exact paired test of two (N,) bool outcome vectors on the same examples.

    ``only_a`` counts examples correct under ``a`` only, ``only_b`` under ``b`` only.
    Returns both counts, ``p_a_higher`` = P(only_a this large | no difference) (one-sided,
    exact sign test), ``p_b_higher`` likewise, and ``p_two_sided`` = min(1, 2 min(...)).
    """
    if a.shape != b.shape:
        raise ValueError(f"paired outcomes must have the same shape, found {tuple(a.shape)} and {tuple(b.shape)}")
    a, b = a.bool(), b.bool()
    only_a, only_b = int((a & ~b).sum()), int((b & ~a).sum())
    n = only_a + only_b
    pa, pb = binom_tail(only_a, n), binom_tail(only_b, n)
    return {"only_a": only_a, "only_b": only_b, "p_a_higher": pa, "p_b_higher": pb,
            "p_two_sided": min(1.0, 2 * min(pa, pb))}
