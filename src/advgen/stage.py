"""What every stage script shares: the common params, cost accounting, clean failures."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

from . import schema
from .config import ConfigError, load_params
from .params_digest import check_current, stage_name
from .schema import Common, load_common
from .utils import CostMeter, atomic_write_json, defer_dynamo, resolve_device


def common(params: dict[str, Any]) -> Common:
    """The validated top-level keys (seed, device, profile)."""
    return load_common(params)


def dataset(params: dict[str, Any]) -> str:
    """The validated dataset name (``ingest.dataset``)."""
    return schema.dataset(params)


def run(name: str, body: Callable[[dict[str, Any]], dict[str, Any] | None], cost_path: str | Path | None) -> None:
    """Run a stage body on params.yaml, record its cost, turn known errors into exit 2.

    The whole of params.yaml is validated by the ``validate`` stage, which also writes the params
    each stage reads (``reports/params/<stage>.json``, its DVC dependency); a stage stops if that
    file no longer matches params.yaml, and a stage of one model (``attack@cnn``) sees the models
    list it tracks cut down to its own (:func:`advgen.params_digest.own_view`). The body loads
    (and so validates) the sections it reads. Known errors (bad params, bad data, missing inputs) print a clear message instead of a
    traceback. ``cost_path=None`` records no cost. The body may return timings of its own (per
    epoch, per sample set): they join the cost record, since timings never go into metrics, and
    so does the run's :func:`environment`.
    """
    defer_dynamo()  # torch.optim's import of torch._dynamo: 1.1-1.5 s of every training stage
    try:
        with CostMeter() as meter:
            params = load_params()
            # its reports/params/<stage>.json; a stage of one model sees only its own entry
            params = check_current(params, stage_name(sys.argv[0], sys.argv[1:]))
            extra = body(params) or {}
    except (ConfigError, FileNotFoundError, ValueError, RuntimeError) as exc:
        if type(exc).__module__.startswith("torch"):
            raise
        print(f"[{name}] error: {exc}", file=sys.stderr)
        sys.exit(2)
    if cost_path is not None:
        atomic_write_json(cost_path, {**meter.as_dict(), **extra, "env": environment(params.get("device", "auto"))})


def environment(device_name: str) -> dict[str, Any]:
    """Where a stage ran, recorded in its cost file: float kernels differ by CPU (AVX2, AVX-512,
    AMX), so a stage's outputs are byte-identical only in the same environment and agree within
    their intervals elsewhere (the regression gate of ``advgen rerun`` relies on this)."""
    import platform

    import torch

    device = resolve_device(device_name)
    env = {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
           "threads": torch.get_num_threads(), "device": device.type, "machine": platform.machine()}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env
