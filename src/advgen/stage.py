"""What every stage script shares: the common params, cost accounting, clean failures."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .config import ConfigError, from_dict, load_params, require
from .utils import CostMeter, atomic_write_json


@dataclass
class Common:
    """Top-level keys of params.yaml that every stage sees."""

    seed: int
    device: str
    profile: str

    def validate(self) -> None:
        require(self.seed >= 0, "seed", f"must be >= 0, found {self.seed}")
        require(self.device == "auto" or self.device in ("cpu", "cuda") or self.device.startswith("cuda:"),
                "device", f"must be auto, cpu, cuda or cuda:N, found {self.device!r}")


def common(params: dict[str, Any]) -> Common:
    return from_dict(Common, {k: params.get(k) for k in ("seed", "device", "profile")}, "<top level>")


def run(name: str, body: Callable[[dict[str, Any]], None], cost_path: str | Path | None) -> None:
    """Run a stage body on params.yaml, record its cost, turn known errors into exit 2.

    Known errors (bad params, bad data, missing inputs) print one clear line instead of a
    traceback. ``cost_path=None`` records no cost.
    """
    try:
        with CostMeter() as meter:
            body(load_params())
    except (ConfigError, FileNotFoundError, ValueError, RuntimeError) as exc:
        if type(exc).__module__.startswith("torch"):
            raise
        print(f"[{name}] error: {exc}", file=sys.stderr)
        sys.exit(2)
    if cost_path is not None:
        atomic_write_json(cost_path, meter.as_dict())
