"""Shared inputs of the attack-side stages: the fixed evaluation subset, model loading, prediction."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .data import load_classes, load_split, subset, to_float
from .models import load_model


def eval_set(dataset: str, n: int, seed: int, resolution: int | None = None,
             split: str = "test") -> tuple[torch.Tensor, torch.Tensor]:
    """The evaluation subset every attack and model shares: ``n`` images of ``split``.

    Drawn with its own generator seeded by ``seed``, so it does not depend on what else ran.
    Returns (x float (n, C, H, W) in [0, 1] at ``resolution``, y (n,)).
    """
    x, y = load_split(Path("data/prepared") / dataset, split)
    x, y = subset(x, y, n, torch.Generator().manual_seed(seed))
    return to_float(x, resolution), y


def load_for_attack(name: str, device: torch.device) -> nn.Module:
    """Load ``models/<name>`` frozen (no parameter gradients), in eval mode."""
    model = load_model(Path("models") / name, device)
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Predicted classes (N,) of ``x`` (N, C, H, W), batched."""
    return torch.cat([model(x[i:i + batch_size]).argmax(1)
                      for i in range(0, len(x), batch_size)]) if len(x) else torch.empty(0, dtype=torch.long)


def class_names(dataset: str) -> list[str]:
    return load_classes(Path("data/prepared") / dataset)
