"""Classifier architectures, and safetensors save/load with a JSON sidecar.

All models take inputs in [0, 1] of shape (B, C, H, W) and return logits (B, K); any
normalisation happens inside the model, so attacks work in pixel space.
Checkpoints are ``model.safetensors`` plus ``model.json`` (architecture, its keyword
arguments, provenance). :func:`load_model` rebuilds the architecture from the sidecar and
loads the tensors; nothing is ever unpickled.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from .sidecar import read_sidecar, save_weights

FORMAT = "advgen-model/1"


class Dropout(nn.Module):
    """Inverted dropout whose masks come from an explicit ``torch.Generator``.

    ``nn.Dropout`` draws from torch's global RNG; this one draws from ``self.generator`` (set
    by :func:`advgen.training.fit`), so training is reproducible without global seeding. With
    no generator set it falls back to the global RNG. Identity in eval mode.
    """

    def __init__(self, p: float = 0.5):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout p must lie in [0, 1), found {p}")
        self.p = p
        self.generator: torch.Generator | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        # Drawn on the generator's device (CPU), then moved: a GPU run draws the same masks.
        keep = torch.rand(x.shape, generator=self.generator, device=self.generator.device
                          if self.generator is not None else x.device) >= self.p
        return x * keep.to(x.device, x.dtype) / (1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class LogReg(nn.Module):
    """Softmax regression: the lecture's linear model, logits = W x + b."""

    def __init__(self, in_shape: tuple[int, int, int], num_classes: int):
        super().__init__()
        c, h, w = in_shape
        self.linear = nn.Linear(c * h * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, K)
        return self.linear(x.flatten(1))


class MLP(nn.Module):
    """Two hidden ReLU layers."""

    def __init__(self, in_shape: tuple[int, int, int], num_classes: int, hidden: int = 256):
        super().__init__()
        c, h, w = in_shape
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(c * h * w, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class CNN(nn.Module):
    """LeNet-like: two conv-BN-ReLU-pool blocks and two dense layers (the main target)."""

    def __init__(self, in_shape: tuple[int, int, int], num_classes: int, width: int = 32,
                 hidden: int = 128, dropout: float = 0.25):
        super().__init__()
        c, h, w = in_shape
        self.features = nn.Sequential(
            nn.Conv2d(c, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.MaxPool2d(2))
        flat = 2 * width * (h // 4) * (w // 4)
        self.head = nn.Sequential(nn.Flatten(), Dropout(dropout), nn.Linear(flat, hidden),
                                  nn.ReLU(), Dropout(dropout), nn.Linear(hidden, num_classes))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features (B, hidden), used as a feature space for distances."""
        return self.head[:-2](self.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.skip = (nn.Identity() if stride == 1 and cin == cout else
                     nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.skip(x))


class ResNet(nn.Module):
    """A small residual net (three stages of basic blocks), a different-architecture surrogate."""

    def __init__(self, in_shape: tuple[int, int, int], num_classes: int, width: int = 16):
        super().__init__()
        c = in_shape[0]
        self.stem = nn.Sequential(nn.Conv2d(c, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.stages = nn.Sequential(_Block(width, width, 1), _Block(width, 2 * width, 2),
                                    _Block(2 * width, 4 * width, 2))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * width, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))


ARCHS: dict[str, type[nn.Module]] = {"logreg": LogReg, "mlp": MLP, "cnn": CNN, "resnet": ResNet}


def init_parameters(model: nn.Module, generator: torch.Generator) -> nn.Module:
    """Re-draw every Linear/Conv weight and bias from ``generator`` (torch's default init).

    Weights: Kaiming-uniform with a = sqrt(5); biases: U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
    exactly the distributions ``nn.Linear``/``nn.Conv2d`` use, but from an explicit generator
    instead of the global RNG. BatchNorm keeps its constant init.
    """
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5), generator=generator)
            if module.bias is not None:
                fan_in = module.weight[0].numel()
                bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                nn.init.uniform_(module.bias, -bound, bound, generator=generator)
    return model


def is_conv(model: nn.Module) -> bool:
    """True when ``model`` has a convolution (it then runs in ``channels_last`` layout)."""
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def to_layout(model: nn.Module) -> nn.Module:
    """Put a convolutional model in ``channels_last`` memory format (a no-op for the others).

    Measured on the 2-core CPU: 1.4-1.5x faster training and 1.1-1.8x faster input-gradient
    evaluation for ``cnn`` and ``resnet`` (benchmarks/bench_train.py).
    """
    return model.to(memory_format=torch.channels_last) if is_conv(model) else model


def build_model(arch: str, in_shape: tuple[int, int, int], num_classes: int,
                generator: torch.Generator | None = None, **kwargs: Any) -> nn.Module:
    """Instantiate ``arch`` (one of :data:`ARCHS`) for inputs (C, H, W) and K classes.

    With ``generator``, the initial weights are drawn from it (:func:`init_parameters`).
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; expected one of {sorted(ARCHS)}")
    try:
        model = ARCHS[arch](tuple(in_shape), num_classes, **kwargs)
    except TypeError as exc:
        raise ValueError(f"architecture {arch!r}: bad arguments {kwargs}: {exc}") from None
    return init_parameters(model, generator) if generator is not None else model


def save_model(model: nn.Module, out_dir: str | Path, sidecar: dict[str, Any]) -> None:
    """Write ``model.safetensors`` and ``model.json`` into ``out_dir`` (an existing folder).

    ``sidecar`` must hold ``arch``, ``arch_kwargs``, ``in_shape`` and ``num_classes``.
    """
    save_weights(model.state_dict(), out_dir, "model", {"format": FORMAT, **sidecar})


def load_model(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a model saved by the ``train`` stage, in eval mode.

    ``path`` is the model folder (or its ``model.json``). Raises FileNotFoundError or
    ValueError naming the file when it is missing or was not produced by ``train``.
    """
    path = Path(path)
    folder = path.parent if path.suffix == ".json" else path
    meta = read_sidecar(folder, "model", fmt=FORMAT, producer="train")
    weights = folder / "model.safetensors"
    model = build_model(meta["arch"], tuple(meta["in_shape"]), meta["num_classes"], **meta["arch_kwargs"])
    model.load_state_dict(load_file(str(weights)), strict=True)
    model.sidecar = meta  # type: ignore[attr-defined]
    return to_layout(model.to(device).eval())
