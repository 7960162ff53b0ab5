"""Bring your own classifier: weights trained outside the pipeline, checked and written like the
train stage's models, so every stage that names the model evaluates it unchanged.

A model folder (``imports.models.<name>.path`` in params.yaml) holds exactly what the train stage
writes, minus what only the pipeline knows:

- ``model.safetensors``: the ``state_dict`` of one architecture of the zoo
  (:data:`advgen.models.ARCHS`), saved with ``safetensors.torch.save_file``;
- ``model.json``: ``{"arch": "cnn", "arch_kwargs": {...}}`` and optionally
  ``"claimed_accuracy"`` (a fraction, what its authors report) and ``"source"`` (free text).

Nothing is ever unpickled: a folder that holds a pickle-based file (``.pt``, ``.pth``, ``.pkl``,
``.bin``, ``.ckpt``) is refused, so a user cannot mistake it for a supported format. Inputs are
the dataset's images in [0, 1], shape (B, C, H, W), no normalisation layer assumed outside the
network; the output is (B, K) logits.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from .models import ARCHS, build_model
from .schema import ARCH_KWARGS
from .stats import wilson_p

PICKLES = (".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt")
KEYS = {"arch", "arch_kwargs", "claimed_accuracy", "source"}


class ModelImportError(ValueError):
    """A model folder that cannot be imported; the message names the file and what was expected."""


@dataclass
class Imported:
    """A checked model and what its sidecar records of where it came from."""

    model: nn.Module
    arch: str
    arch_kwargs: dict[str, Any]
    claimed_accuracy: float | None
    provenance: dict[str, Any]  # the folder, the sha256 of both files, the source text


def _meta(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelImportError(f"{path}: not a readable JSON file ({exc})") from None
    if not isinstance(meta, dict):
        raise ModelImportError(f"{path}: expected a JSON object with 'arch', found {type(meta).__name__}")
    unknown = sorted(set(meta) - KEYS)
    if unknown:
        raise ModelImportError(f"{path}: unknown key(s) {unknown}; expected some of {sorted(KEYS)}")
    if meta.get("arch") not in ARCHS:
        raise ModelImportError(f"{path}: 'arch' = {meta.get('arch')!r}; expected one of {sorted(ARCHS)}")
    kwargs = meta.get("arch_kwargs", {})
    if not isinstance(kwargs, dict):
        raise ModelImportError(f"{path}: 'arch_kwargs' must be an object, found {kwargs!r}")
    unknown = sorted(set(kwargs) - set(ARCH_KWARGS[meta["arch"]]))  # as train.models' entries are checked
    if unknown:
        raise ModelImportError(f"{path}: 'arch_kwargs' has unknown key(s) {unknown}; {meta['arch']} accepts "
                               f"{list(ARCH_KWARGS[meta['arch']])}")
    claimed = meta.get("claimed_accuracy")
    if claimed is not None and not (isinstance(claimed, (int, float)) and 0 <= claimed <= 1):
        raise ModelImportError(f"{path}: 'claimed_accuracy' must be a fraction in [0, 1], found {claimed!r}")
    return meta


def load_folder(folder: str | Path, in_shape: tuple[int, int, int], num_classes: int) -> Imported:
    """Check ``folder`` and load its weights into the named architecture for inputs ``in_shape``
    (C, H, W) and ``num_classes`` classes, strictly (every tensor present, named and shaped as
    the architecture has it). Raises :class:`ModelImportError` naming the file and the problem."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelImportError(f"{folder}: not a folder; expected one holding model.safetensors and model.json")
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in PICKLES)
    if pickles:
        raise ModelImportError(f"{folder}: holds {pickles}; pickle-based files are never loaded: save the state_dict "
                           "with safetensors.torch.save_file as model.safetensors")
    weights, meta_path = folder / "model.safetensors", folder / "model.json"
    for p in (weights, meta_path):
        if not p.is_file():
            raise ModelImportError(f"{p}: not found; a model folder holds model.safetensors and model.json")
    meta = _meta(meta_path)
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelImportError(f"{weights}: not a safetensors file ({exc})") from None
    kwargs = dict(meta.get("arch_kwargs", {}))
    try:
        model = build_model(meta["arch"], in_shape, num_classes, **kwargs)
    except ValueError as exc:
        raise ModelImportError(f"{meta_path}: {exc}") from None
    _load_strict(model, state, weights, meta["arch"])
    provenance = {"path": str(folder), "source": meta.get("source"),
                  "weights_sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
                  "json_sha256": hashlib.sha256(meta_path.read_bytes()).hexdigest()}
    return Imported(model.eval(), meta["arch"], kwargs, meta.get("claimed_accuracy"), provenance)


def _load_strict(model: nn.Module, state: dict[str, torch.Tensor], weights: Path, arch: str) -> None:
    expected = model.state_dict()
    missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    shapes = [f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})" for k, v in expected.items()
              if k in state and state[k].shape != v.shape]
    problems = [f"missing {missing[:5]}" if missing else "", f"unexpected {extra[:5]}" if extra else "",
                f"wrong shape: {', '.join(shapes[:3])}" if shapes else ""]
    problems = [p for p in problems if p]
    if problems:
        raise ModelImportError(f"{weights}: does not fit architecture {arch!r} for these inputs: {'; '.join(problems)}")
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise ModelImportError(f"{weights}: non-finite values in {bad[:5]}")
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=True)


@torch.no_grad()
def score(model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int,
                 device: torch.device | str = "cpu", batch_size: int = 500) -> dict[str, Any]:
    """Accuracy (with its 95% Wilson interval), mean cross-entropy and per-class accuracy of
    ``model`` on ``x`` (N, C, H, W) in [0, 1] with labels ``y`` (N,), as the train stage reports them."""
    model = model.to(device).eval()
    logits = torch.cat([model(x[i:i + batch_size].to(device)).float().cpu()
                        for i in range(0, len(x), batch_size)])  # (N, K)
    correct = logits.argmax(1) == y
    acc = float(correct.float().mean())
    return {"test_accuracy": acc, "test_accuracy_ci95": list(wilson_p(acc, len(y))),
            "test_loss": float(torch.nn.functional.cross_entropy(logits.double(), y)), "n_test": len(y),
            "per_class_accuracy": [float(correct[y == k].float().mean()) for k in range(num_classes)]}
