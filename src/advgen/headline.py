"""The headline framework: the few scalars per stage that DVC declares as ``metrics``.

Each stage writes its detailed JSON (per-class arrays, intervals, per-check rows, tables) as a
plain output that the report reads, and one small headline file under
``reports/headline/<stage>.json`` that ``dvc metrics show/diff`` and ``advgen compare`` show.
Headline files hold scalars only (numbers, bools, strings, nested at most one level under a
named group), no timings, and no figure another stage already reports; :func:`check` enforces
the shape, ``tests/test_headline.py`` the budget (``dvc metrics show`` at most 450 values).

Each area maps its stages' detailed metrics to their headline in ``advgen.<area>.headline``;
this module has the base stages' (``ingest``, ``train``) and writes them all.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .io import atomic_write_json

ROOT = Path("reports/headline")
Scalar = bool | int | float | str


def eps_group(values: dict[str, float]) -> dict[str, float]:
    """``{"0": .., "0.025": ..}`` -> ``{"eps=0.025": ..}``, dropping eps = 0 (that is clean accuracy)."""
    return {f"eps={e}": v for e, v in values.items() if float(e) != 0}


def ingest(m: dict[str, Any]) -> dict[str, Scalar]:
    return {"train_count": m["train_count"], "test_count": m["test_count"]}


def train(m: dict[str, Any]) -> dict[str, Scalar]:
    return {"test_accuracy": m["test_accuracy"], "test_loss": m["test_loss"]}


def check(obj: dict[str, Any], where: str = "headline") -> int:
    """Raise ValueError unless ``obj`` holds scalars (at most one level of groups); return the count."""
    count = 0
    for key, value in obj.items():
        if isinstance(value, dict):
            bad = {k: v for k, v in value.items() if not isinstance(v, Scalar)}
            if bad:
                raise ValueError(f"{where}: '{key}' must hold scalars only, found {sorted(bad)}")
            count += len(value)
        elif isinstance(value, Scalar):
            count += 1
        else:
            raise ValueError(f"{where}: '{key}' must be a scalar or a group of scalars, found {type(value).__name__}")
    return count


def write(stage_path: str, obj: dict[str, Any], root: str | Path = ROOT) -> Path:
    """Check and write ``reports/headline/<stage_path>.json`` (e.g. ``train/cnn``)."""
    path = Path(root) / f"{stage_path}.json"
    check(obj, str(path))
    atomic_write_json(path, obj)
    return path
