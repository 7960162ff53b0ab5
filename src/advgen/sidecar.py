"""Weights as safetensors beside a JSON sidecar: the one writer and the one checked reader of
every network file of the project (classifiers, generators, denoisers, autoencoders).

A network ``<folder>/<stem>`` is ``<stem>.safetensors`` plus ``<stem>.json``: the file format,
what the producing stage recorded (architecture, kwargs, provenance) and the weights' sha256.
:func:`read_sidecar` checks all of it before anything is rebuilt; nothing is ever unpickled.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from .io import dumps


def save_weights(state: dict[str, torch.Tensor], folder: str | Path, stem: str, head: dict[str, Any]) -> None:
    """Write ``<stem>.safetensors`` (``state``, on the CPU) and ``<stem>.json`` (``head`` plus the
    weights' sha256) into ``folder`` (an existing folder)."""
    weights = Path(folder) / f"{stem}.safetensors"
    save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(weights))
    meta = {**head, "weights_sha256": hashlib.sha256(weights.read_bytes()).hexdigest()}
    (Path(folder) / f"{stem}.json").write_text(dumps(meta))


def read_sidecar(folder: str | Path, stem: str, *, fmt: str, producer: str) -> dict[str, Any]:
    """The checked sidecar of ``<folder>/<stem>``: both files present, valid JSON, format ``fmt``,
    ``produced_by`` = ``producer`` (when the format records it), weights matching the sha256.
    Raises FileNotFoundError / ValueError naming the file and what was expected."""
    folder = Path(folder)
    meta_path, weights = folder / f"{stem}.json", folder / f"{stem}.safetensors"
    for p in (meta_path, weights):
        if not p.is_file():
            raise FileNotFoundError(f"{p}: not found; it is written by the {producer} stage")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{meta_path}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != fmt or meta.get("produced_by", producer) != producer:
        found = (meta.get("format"), meta.get("produced_by")) if isinstance(meta, dict) else meta
        raise ValueError(f"{meta_path}: expected format {fmt!r} produced by {producer!r}, found {found!r}")
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    if digest != meta.get("weights_sha256"):
        raise ValueError(f"{weights}: sha256 {digest} does not match the sidecar's {meta.get('weights_sha256')}")
    return meta
