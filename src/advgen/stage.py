"""What every stage script shares: the common params, cost accounting, clean failures."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

from .config import ConfigError, load_params
from .schema import Common, load_common, validate_params
from .utils import CostMeter, atomic_write_json, defer_dynamo


def common(params: dict[str, Any]) -> Common:
    """The validated top-level keys (seed, device, profile)."""
    return load_common(params)


def run(name: str, body: Callable[[dict[str, Any]], dict[str, Any] | None], cost_path: str | Path | None) -> None:
    """Run a stage body on params.yaml, record its cost, turn known errors into exit 2.

    Every key of params.yaml is validated first (see :func:`advgen.schema.validate_params`).
    Known errors (bad params, bad data, missing inputs) print a clear message instead of a
    traceback. ``cost_path=None`` records no cost. The body may return timings of its own (per
    epoch, per sample set): they join the cost record, since timings never go into metrics.
    """
    defer_dynamo()  # torch.optim's import of torch._dynamo: 1.1-1.5 s of every training stage
    try:
        with CostMeter() as meter:
            params = load_params()
            validate_params(params)  # the whole file, as the validate stage does
            extra = body(params) or {}
    except (ConfigError, FileNotFoundError, ValueError, RuntimeError) as exc:
        if type(exc).__module__.startswith("torch"):
            raise
        print(f"[{name}] error: {exc}", file=sys.stderr)
        sys.exit(2)
    if cost_path is not None:
        atomic_write_json(cost_path, {**meter.as_dict(), **extra})
