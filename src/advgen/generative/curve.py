"""What every generative training loop shares: an EMA of the weights, and the FID curve that
says when training has flattened.

* **EMA** (Polyak averaging; Karras et al. 2018 for GANs, Ho et al. 2020 for diffusion):
  samples come from an exponential moving average of the weights, with the usual warm-up
  ``min(decay, (1 + n) / (10 + n))``.
* **FID curve**: FID at fixed codes (or noise) and a fixed N against the same real features,
  each point with a bootstrap 95% interval (:func:`advgen.generative.scores.bootstrap_fid`).
  Training has **flattened** when the last ``window`` points agree within their intervals:
  every point lies inside every other point's interval (interval overlap alone is too lenient:
  two intervals of half-width h overlap while the estimates differ by up to 2h, and at small N
  that stopped a curve still falling by 10-20 FID per epoch).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from .features import frechet_distance
from .scores import bootstrap_fid


def ema_decay_at(step: int, decay: float) -> float:
    """The EMA decay after ``step`` updates, with the usual warm-up min(decay, (1 + step) / (10 + step)):
    without it, a short run's average keeps a visible share of the random initial weights
    (decay 0.999 leaves 0.999^2500 = 8% of them after 2,500 steps)."""
    return min(decay, (1 + step) / (10 + step))


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model, parameter by parameter (buffers, such as
    BatchNorm's running statistics, copied)."""
    e, m = list(ema.parameters()), list(model.parameters())
    torch._foreach_lerp_(e, m, 1 - decay)
    for be, bm in zip(ema.buffers(), model.buffers()):
        be.copy_(bm)


def ema_copy(model: nn.Module) -> nn.Module:
    """A frozen copy of ``model`` for the EMA weights."""
    ema = copy.deepcopy(model)
    for p in ema.parameters():
        p.requires_grad_(False)
    return ema


@dataclass
class CurvePoint:
    """One point of a FID curve: the step it was taken at, FID and its bootstrap 95% interval."""

    step: int
    fid: float
    lo: float
    hi: float

    def row(self, step_name: str) -> dict:
        return {step_name: self.step, "fid": self.fid, "fid_lo": self.lo, "fid_hi": self.hi}


def fid_point(step: int, real_feats: torch.Tensor, fake_feats: torch.Tensor, n_boot: int,
              generator: torch.Generator) -> CurvePoint:
    """FID of fake_feats (N, F) against real_feats (M, F) and its bootstrap interval."""
    lo, hi = bootstrap_fid(real_feats, fake_feats, n_boot, generator)
    return CurvePoint(step, frechet_distance(real_feats, fake_feats), lo, hi)


def flattened(points: list[CurvePoint], window: int) -> bool:
    """True when the last ``window`` points agree within their intervals: each point's FID lies
    inside every other point's interval."""
    if len(points) < window:
        return False
    last = points[-window:]
    return all(b.lo <= a.fid <= b.hi for a in last for b in last)
