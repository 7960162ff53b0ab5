"""Files of the diffusion area: networks as safetensors + JSON sidecar, and sample sets.

A network folder holds ``<stem>.safetensors`` and ``<stem>.json`` (format, producing stage,
architecture kwargs, provenance, the weights' sha256); :func:`load_module` checks all of it and
rebuilds the network without unpickling. Sample sets are uint8 images (like the real data) in
one safetensors file with a JSON index: what the ``diffusion`` and ``autoencoder`` stages hand
to ``evaluate_generative``.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .. import sidecar
from ..sidecar import save_weights
from ..utils import dumps

FORMAT = "advgen-net/1"
SAMPLES_FORMAT = "advgen-samples/1"


def save_module(module: nn.Module, folder: str | Path, stem: str, sidecar: dict[str, Any],
                state: dict[str, torch.Tensor] | None = None) -> None:
    """Write ``<stem>.safetensors`` (``state`` or the module's state dict) and ``<stem>.json``
    into ``folder`` (existing). ``sidecar`` must hold ``produced_by`` and ``arch_kwargs``."""
    save_weights(module.state_dict() if state is None else state, folder, stem, {"format": FORMAT, **sidecar})


def read_sidecar(folder: str | Path, stem: str, produced_by: str) -> dict[str, Any]:
    """The checked sidecar of the network ``<folder>/<stem>`` (see :func:`advgen.sidecar.read_sidecar`)."""
    return sidecar.read_sidecar(folder, stem, fmt=FORMAT, producer=produced_by)


def load_module(folder: str | Path, stem: str, produced_by: str, build: Callable[[dict[str, Any]], nn.Module],
                device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the network ``<folder>/<stem>`` with ``build(arch_kwargs)``, in eval mode;
    ``module.sidecar`` holds its JSON."""
    meta = read_sidecar(folder, stem, produced_by)
    module = build(meta["arch_kwargs"])
    module.load_state_dict(load_file(str(Path(folder) / f"{stem}.safetensors")), strict=True)
    module.sidecar = meta  # type: ignore[attr-defined]
    return module.to(device).eval()


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] (N, C, H, W) -> uint8, as the real data is stored."""
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def save_samples(folder: str | Path, sets: dict[str, dict[str, Any]]) -> None:
    """``sets``: name -> {"images": (N, C, H, W) in [0, 1], "labels": (N,) or None, **info}.
    Writes ``samples.safetensors`` and ``samples.json`` (the info, N, and the file's sha256)."""
    folder = Path(folder)
    tensors, index = {}, {}
    for name, s in sets.items():
        tensors[f"{name}/images"] = to_uint8(s["images"]).contiguous()
        if s.get("labels") is not None:
            tensors[f"{name}/labels"] = s["labels"].to(torch.int64).contiguous()
        index[name] = {k: v for k, v in s.items() if k not in ("images", "labels")} | {"n": len(s["images"])}
    path = folder / "samples.safetensors"
    save_file(tensors, str(path))
    (folder / "samples.json").write_text(dumps({"format": SAMPLES_FORMAT, "sets": index,
                                                "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}))


def load_samples(folder: str | Path) -> dict[str, dict[str, Any]]:
    """The sets saved by :func:`save_samples`, images back as float in [0, 1]."""
    folder = Path(folder)
    index_path, path = folder / "samples.json", folder / "samples.safetensors"
    for p in (index_path, path):
        if not p.is_file():
            raise FileNotFoundError(f"{p}: not found; sample sets are written by the diffusion and autoencoder stages")
    index = json.loads(index_path.read_text())
    if index.get("format") != SAMPLES_FORMAT:
        raise ValueError(f"{index_path}: expected format {SAMPLES_FORMAT!r}, found {index.get('format')!r}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != index.get("sha256"):
        raise ValueError(f"{path}: sha256 {digest} does not match {index_path}'s {index.get('sha256')}")
    tensors = load_file(str(path))
    return {name: {**info, "images": tensors[f"{name}/images"].float() / 255,
                   "labels": tensors.get(f"{name}/labels")} for name, info in index["sets"].items()}
