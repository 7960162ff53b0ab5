"""Evaluation measures: accuracy helpers and nearest-neighbour distances."""
from __future__ import annotations

import torch


def nearest_distances(queries: torch.Tensor, reference: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """L2 distance from each query (Q, D) to its nearest row of ``reference`` (R, D) -> (Q,)."""
    out = []
    for i in range(0, len(queries), batch_size):
        out.append(torch.cdist(queries[i:i + batch_size], reference).min(1).values)
    return torch.cat(out) if out else torch.empty(0)


def quantile(v: torch.Tensor, q: float) -> float:
    return float(torch.quantile(v.float(), q)) if len(v) else float("nan")
