"""Poisoned datasets on disk: what the ``poison`` stage writes and the later stages read.

A poisoned dataset ``data/poisoned/<name>/`` has exactly the format of an ingested one
(``train.safetensors``, ``test.safetensors``, ``manifest.json``), so the train stage loads it
like any other; its manifest adds the clean parent's digest and the poisoning config. What a
defender must not see lives apart, in ``data/backdoor/<name>/``: ``poison_index.json`` (which
training images changed, how, and their original labels) and ``triggered_test.safetensors``
(every test image with the trigger, true labels kept) for scoring.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from ..data import load_classes, load_split, subset, write_splits
from ..io import atomic_dir, dumps
from ..backdoors.params import PoisonSpec
from .poison import (BadNets, Blended, CleanLabel, DirtyLabel, PatchTrigger, PoisonResult, blend_pattern,
                     checkerboard)

INDEX = "poison_index.json"
TRIGGERED = "triggered_test.safetensors"


@dataclass
class Poisoned:
    """A poisoned training split, the clean test split, and the triggered test split."""

    result: PoisonResult
    clean: torch.Tensor  # uint8 (N, C, H, W): the clean training images
    test: tuple[torch.Tensor, torch.Tensor]  # clean (uint8 (N, C, H, W), (N,))
    triggered: torch.Tensor  # uint8 (N, C, H, W): the test images with the trigger
    classes: list[str]
    manifest: dict


def build_attack(spec: PoisonSpec, shape: tuple[int, int, int], generator: torch.Generator,
                 model: nn.Module | None = None, batch_size: int = 500) -> DirtyLabel | CleanLabel:
    """The attack object of a ``poison.configs`` entry, for images of ``shape`` (C, H, W)."""
    c = shape[0]
    if spec.attack == "badnets":
        return BadNets(spec.target, spec.rate, spec.trigger_size or 3, c, spec.location or "corner",
                       spec.source, spec.keep_target or 0.0)
    if spec.attack == "blended":
        return Blended(spec.target, spec.rate, blend_pattern(shape, generator), spec.alpha or 0.1, spec.source)
    if model is None:
        raise ValueError("clean_label needs the surrogate model (poison.model)")
    trigger = PatchTrigger(checkerboard(spec.trigger_size or 3, c), spec.location or "corner")
    return CleanLabel(trigger, spec.target, spec.rate, model, spec.eps, spec.steps or 10, spec.step, batch_size)


def manifest_digest(folder: Path) -> str:
    return hashlib.sha256((folder / "manifest.json").read_bytes()).hexdigest()


def check_all(specs: dict[str, PoisonSpec], clean_dir: Path) -> None:
    """Reject any impossible config (:meth:`PoisonSpec.check_data`) before anything is written."""
    x, y = load_split(clean_dir, "train")
    classes = load_classes(clean_dir)
    counts = torch.bincount(y, minlength=len(classes)).tolist()
    for name, spec in specs.items():
        spec.check_data(len(classes), min(x.shape[-2:]), counts, f"poison.configs.{name}")


def poison_dataset(name: str, spec: PoisonSpec, clean_dir: Path, generator: torch.Generator,
                   model: nn.Module | None = None, batch_size: int = 500, n_train: int = 0,
                   n_test: int = 0) -> Poisoned:
    """Poison the training split of the ingested dataset in ``clean_dir`` with config ``spec``.

    ``n_train``/``n_test`` > 0 keep seeded subsets of the splits (the smoke profile; 0 = all).
    Raises ConfigError (via :meth:`PoisonSpec.check_data`) for a target or source outside the
    classes, a trigger larger than the image, or a rate needing more images than exist.
    """
    x, y = subset(*load_split(clean_dir, "train"), n_train, generator)
    xte, yte = subset(*load_split(clean_dir, "test"), n_test, generator)
    classes = load_classes(clean_dir)
    spec.check_data(len(classes), min(x.shape[-2:]), torch.bincount(y, minlength=len(classes)).tolist(),
                    f"poison.configs.{name}")
    attack = build_attack(spec, tuple(x.shape[1:]), generator, model, batch_size)
    result = attack.poison(x, y, len(classes), generator)
    triggered, _, _ = attack.trigger.apply(xte, generator)
    parent = json.loads((clean_dir / "manifest.json").read_text())
    manifest = {"dataset": parent["dataset"], "classes": classes, "files": {},
                "parent": {"path": clean_dir.as_posix(), "manifest_sha256": manifest_digest(clean_dir)},
                "poisoning": {"name": name, **spec.config(), "n_poisoned": len(result.indices)},
                "subset": {"n_train": n_train, "n_test": n_test}}
    return Poisoned(result, x, (xte, yte), triggered, classes, manifest)


def write_poisoned(p: Poisoned, data_dir: Path, meta_dir: Path) -> None:
    """Write the dataset (ingest's format) to ``data_dir`` and the index and triggered test set
    to ``meta_dir``, each folder atomically."""
    splits = {"train": (p.result.images.numpy(), p.result.labels.numpy()),
              "test": (p.test[0].numpy(), p.test[1].numpy())}
    with atomic_dir(data_dir) as tmp:
        manifest = {**p.manifest, "splits": write_splits(tmp, splits, p.classes)}
        (tmp / "manifest.json").write_text(dumps(manifest))
    with atomic_dir(meta_dir) as tmp:
        (tmp / INDEX).write_text(dumps(p.result.index()))
        save_file({"images": p.triggered.contiguous(), "labels": p.test[1].contiguous()}, str(tmp / TRIGGERED))


def load_index(meta_dir: Path) -> dict:
    """``poison_index.json`` of a poisoned dataset (for scoring only: defenses never read it)."""
    path = Path(meta_dir) / INDEX
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; run the poison stage first (dvc repro poison)")
    return json.loads(path.read_text())


def load_triggered(meta_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """(triggered test images uint8 (N, C, H, W), true labels (N,))."""
    path = Path(meta_dir) / TRIGGERED
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; run the poison stage first (dvc repro poison)")
    t = load_file(str(path))
    return t["images"], t["labels"]


def poisoned_mask(index: dict, train_index: torch.Tensor) -> torch.Tensor:
    """(n,) bool: which images of a training subset (positions ``train_index`` in the full
    split) the poison stage changed."""
    changed = torch.zeros(index["n_train"], dtype=torch.bool)
    changed[torch.tensor(index["indices"], dtype=torch.long)] = True
    return changed[train_index]


def examples_png(p: Poisoned, path: Path, n: int = 8, scale: int = 3, pad: int = 2) -> None:
    """Clean training images (top row) above their poisoned versions (bottom row), ``scale``x
    upscaled, on a grey grid; written with PIL (no torchvision import: ~1 s less per stage)."""
    from PIL import Image

    idx = p.result.indices[:n]
    rows = torch.stack([p.clean[idx], p.result.images[idx]])  # (2, n, C, H, W) uint8
    rows = rows.repeat_interleave(scale, -2).repeat_interleave(scale, -1)
    _, k, c, h, w = rows.shape
    grid = torch.full((c, 2 * (h + pad) + pad, k * (w + pad) + pad), 128, dtype=torch.uint8)
    for r in range(2):
        for j in range(k):
            top, left = pad + r * (h + pad), pad + j * (w + pad)
            grid[:, top:top + h, left:left + w] = rows[r, j]
    array = grid[0].numpy() if c == 1 else grid.permute(1, 2, 0).numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    Image.fromarray(array).save(tmp, format="PNG")
    tmp.replace(path)
