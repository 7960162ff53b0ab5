"""Shared plumbing: seeding, devices, atomic writes and cost accounting."""
from __future__ import annotations

import os
import resource
import sys
import time
import types
from pathlib import Path
from typing import Any

import torch

from .io import atomic_dir, atomic_write_bytes, atomic_write_json, atomic_write_text, dumps  # noqa: F401 (re-exported)


def deterministic_kernels() -> None:
    """On CUDA, ask for deterministic kernels (nothing to do on CPU).

    Randomness itself never comes from a global seed: every random draw takes an explicit
    ``torch.Generator`` (see :func:`generator`). The CPU kernels used here are deterministic
    for a fixed thread count; the switch is not flipped on CPU because it imports torch's
    compiler stack, 1.7 s per stage process.
    """
    if torch.cuda.is_available():
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)


class _DeferredDynamo(types.ModuleType):
    """Stands in for ``torch._dynamo`` until something needs more than eager mode asks of it.

    ``torch.optim`` imports ``torch._dynamo`` (1.1 to 1.5 s) the first time an optimizer is
    built or stepped, only to call ``graph_break()`` (a no-op outside compilation) and to wrap
    a few methods in ``disable(fn)`` (which, with no compiler active, calls ``fn``). This stub
    answers those two exactly as eager mode does; any other attribute (``torch.compile``, DDP,
    a submodule import) imports the real module, which then replaces the stub. The arithmetic
    of every optimizer is unchanged: the same ``torch.optim`` code runs, minus the wrappers.
    """

    @staticmethod
    def graph_break(msg: str = "") -> None:
        return None

    @staticmethod
    def disable(fn=None, recursive: bool = True, *args: Any, **kwargs: Any):
        return fn if fn is not None else (lambda f: f)

    def __getattr__(self, name: str) -> Any:
        if sys.modules.get("torch._dynamo") is self:
            del sys.modules["torch._dynamo"]
        if torch.__dict__.get("_dynamo") is self:
            del torch._dynamo
        import importlib

        return getattr(importlib.import_module("torch._dynamo"), name)


def defer_dynamo() -> None:
    """Install :class:`_DeferredDynamo` unless ``torch._dynamo`` is already imported (stage
    processes only: they never compile)."""
    if "torch._dynamo" not in sys.modules:
        sys.modules["torch._dynamo"] = _DeferredDynamo("torch._dynamo")


def generator(seed: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with ``seed``.

    Random draws happen on the CPU and are then moved to the device, so a GPU run draws the
    same numbers (random starts, noise, masks) as the committed CPU run.
    """
    return torch.Generator().manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """Map ``auto`` to cuda when present, else cpu; reject unknown names."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise ValueError(f"device {name!r} is not one of 'auto', 'cpu', 'cuda', 'cuda:N'")
    return torch.device(name)


def quiet() -> bool:
    """True when stderr is not a terminal: progress bars then stay silent."""
    return not sys.stderr.isatty()


def atomic_save_tensors(path: str | Path, tensors: dict[str, torch.Tensor]) -> None:
    """Save tensors as safetensors, atomically."""
    from safetensors.torch import save

    atomic_write_bytes(path, save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}))


class CostMeter:
    """Measure wall time, CPU time and peak RSS of a block (children included).

    Costs vary from run to run, so they go to their own ``cost.json`` beside the
    deterministic ``metrics.json``.
    """

    def __enter__(self) -> "CostMeter":
        self._wall = time.perf_counter()
        self._cpu = self._cpu_now()
        return self

    @staticmethod
    def _cpu_now() -> float:
        own = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    def __exit__(self, *exc: object) -> None:
        self.wall_s = time.perf_counter() - self._wall
        self.cpu_s = self._cpu_now() - self._cpu
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        self.peak_rss_mb = max(own, kids) / 1024.0  # ru_maxrss is KiB on Linux

    def as_dict(self) -> dict[str, float]:
        return {
            "wall_s": round(self.wall_s, 3),
            "cpu_s": round(self.cpu_s, 3),
            "peak_rss_mb": round(self.peak_rss_mb, 1),
        }


def round_floats(obj: Any, digits: int = 6) -> Any:
    """Round every float in a JSON-like object, so metrics files diff cleanly."""
    if isinstance(obj, float):
        return round(obj, digits)
    if isinstance(obj, dict):
        return {k: round_floats(v, digits) for k, v in obj.items()}
    if isinstance(obj, list):
        return [round_floats(v, digits) for v in obj]
    return obj
