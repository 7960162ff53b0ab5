"""What the ``defend`` stage calls: train one model with a training-time defense."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..training import BatchLoss, FitResult, fit, rank_world
from .adversarial import (
    FastTraining,
    FGSMTraining,
    GaussianNoiseTraining,
    PGDTraining,
    TRADESLoss,
    adversarial_augmentation,
)
from .monitor import OverfitMonitor
from .params import DefenseSpec

#: methods whose models are trained against an L-inf attack (and so get the overfitting monitor)
ADVERSARIAL = ("augment", "fgsm", "fgsm_rs", "pgd", "trades")


def make_loss(spec: DefenseSpec, generator: torch.Generator) -> BatchLoss:
    """The per-batch loss of a defense (one entry of ``defend.defenses``)."""
    method = spec.method
    if method == "augment":
        return BatchLoss()  # the augmented data do the work
    if method == "fgsm":
        return FGSMTraining(spec.eps, spec.alpha)
    if method == "fgsm_rs":
        return FastTraining(spec.eps, spec.step, generator)
    if method == "pgd":
        return PGDTraining(spec.eps, spec.steps, spec.step, generator)
    if method == "trades":
        return TRADESLoss(spec.eps, spec.steps, spec.step, spec.beta, generator)
    if method == "gaussian":
        return GaussianNoiseTraining(spec.sigma, generator)
    raise ValueError(f"unknown defense method {method!r}")


@dataclass
class DefenseResult:
    fit: FitResult
    grad_evals: int  # training, inner attacks and (augment) crafting; not the monitor
    monitor_grad_evals: int
    collapse_epoch: int | None
    extra: dict = field(default_factory=dict)


def train_defense(spec: DefenseSpec, model: nn.Module, train: tuple[torch.Tensor, torch.Tensor],
                  test: tuple[torch.Tensor, torch.Tensor], monitor_set: tuple[torch.Tensor, torch.Tensor] | None, *,
                  source: nn.Module | None, epochs: int, batch_size: int, lr: float, weight_decay: float,
                  num_classes: int, generator: torch.Generator, device: torch.device, monitor_steps: int,
                  monitor_drop: float, stop_on_collapse: bool) -> DefenseResult:
    """Train ``model`` (freshly initialised) with the defense ``spec``.

    ``train``/``test``: (x (N, C, H, W) in [0, 1], y (N,)). ``source``: the trained model whose
    FGSM examples ``augment`` adds (frozen). ``monitor_set``: the fixed training subset of the
    catastrophic-overfitting monitor, run after every epoch for the adversarial methods
    (:class:`OverfitMonitor`, PGD-``monitor_steps`` at the training eps). Random starts, noise,
    batch order and dropout all come from ``generator``.
    """
    method = spec.method
    extra: dict[str, Any] = {}
    crafting = 0
    if method == "augment":
        if source is None:
            raise ValueError("augment needs the source model whose FGSM examples it adds")
        x, y, stats = adversarial_augmentation(source.to(device), train[0].to(device), train[1].to(device), spec.eps)
        train, crafting = (x.cpu(), y.cpu()), stats["grad_evals"]
        extra["source_fooled_rate"] = stats["source_fooled_rate"]
        extra["n_train_augmented"] = len(y)
    # one stream per rank (as for dropout): under torchrun each rank crafts for its own images
    loss_gen = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)) + rank_world()[0])
    monitor = None
    if method in ADVERSARIAL and monitor_set is not None:
        mon_gen = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
        monitor = OverfitMonitor(*monitor_set, eps=spec.eps, steps=monitor_steps, drop=monitor_drop,
                                 stop=stop_on_collapse, generator=mon_gen)
    result = fit(model, train, test, epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                 num_classes=num_classes, generator=generator, device=device, loss_fn=make_loss(spec, loss_gen),
                 after_epoch=monitor)
    return DefenseResult(result, result.grad_evals + crafting, monitor.grad_evals if monitor else 0,
                         monitor.collapse_epoch if monitor else None, extra)
