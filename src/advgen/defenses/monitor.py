"""The catastrophic-overfitting monitor of fast adversarial training (Wong et al., ICLR 2020)."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..attacks.fgsm import FGSM

from ..attacks.pgd import PGD


class OverfitMonitor:
    r"""Watch for catastrophic overfitting: after each epoch, attack a fixed subset of the
    training set with PGD and FGSM at the training radius.

    Wong, Rice & Kolter (ICLR 2020, section 5) saw FGSM-trained models lose all PGD robustness
    within a few batches while their FGSM accuracy rose: the single step stops finding the
    worst case. A *collapse* is flagged when the monitor's PGD accuracy falls more than ``drop``
    below its best so far; with ``stop`` the training stops there (the model of that epoch is
    kept, as Wong et al.'s early stopping keeps the last good one only if one saves it).

    Arguments:
        x (N, C, H, W) in [0, 1], y (N,): the fixed training subset.
        eps (float): L-inf radius. steps (int): PGD iterations (step 2.5 eps / steps, 1 restart).
        drop (float): the fall in PGD accuracy that counts as a collapse.
        stop (bool): stop training at a collapse. generator (torch.Generator): PGD's random starts.
    ``__call__(epoch, model)`` returns (history columns, stop now?) for :func:`advgen.training.fit`.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int, drop: float, stop: bool,
                 generator: torch.Generator, batch_size: int = 500):
        self.x, self.y, self.eps, self.steps = x, y, eps, steps
        self.drop, self.stop, self.generator, self.batch_size = drop, stop, generator, batch_size
        self.best = 0.0
        self.collapse_epoch: int | None = None
        self.grad_evals = 0

    def _accuracy(self, model: nn.Module, attack_cls, **kw: Any) -> float:
        hits = 0
        for i in range(0, len(self.y), self.batch_size):
            xb, yb = self.x[i:i + self.batch_size], self.y[i:i + self.batch_size]
            attack = attack_cls(model, self.eps, **kw)
            adv = attack(xb, yb)
            self.grad_evals += attack.grad_evals
            with torch.no_grad():
                hits += int((model(adv).argmax(1) == yb).sum())
        return hits / max(len(self.y), 1)

    def __call__(self, epoch: int, model: nn.Module) -> tuple[dict[str, Any], bool]:
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        self.x, self.y = self.x.to(device), self.y.to(device)
        pgd = self._accuracy(model, PGD, steps=self.steps, generator=self.generator)
        fgsm = self._accuracy(model, FGSM)
        model.train(was_training)
        collapsed = pgd < self.best - self.drop
        if collapsed and self.collapse_epoch is None:
            self.collapse_epoch = epoch
        self.best = max(self.best, pgd)
        return ({"monitor_pgd_acc": pgd, "monitor_fgsm_acc": fgsm, "collapse": collapsed},
                bool(collapsed and self.stop))
