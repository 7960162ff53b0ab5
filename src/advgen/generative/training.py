"""One GAN config trained end to end: data, models, optimizers, curves, grids, the C11 probe.

:func:`fit_gan` is what the ``gan`` stage calls; it returns everything the stage writes.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..models import to_layout
from .curve import CurvePoint, ema_copy, fid_point
from .gan import GANSchedule, GANStep, saturation_probe, train_gan
from .models import build_pair, generate, sample_codes
from .features import FeatureNet, extract


def stack_channels(x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Stacked Fashion-MNIST: for each of the N images, three images drawn independently (three
    permutations) as the three channels. x (N, 1, H, W) -> ((N, 3, H, W), index (N, 3))."""
    index = torch.stack([torch.randperm(len(x), generator=generator) for _ in range(3)], 1)  # (N, 3)
    return x[index, 0], index


def channel_images(x: torch.Tensor, n: int) -> torch.Tensor:
    """The first n single-channel images of samples x (B, C, H, W), channel by channel: (n, 1, H, W)."""
    return x.reshape(-1, 1, *x.shape[2:])[:n]


@dataclass
class GANRun:
    g: nn.Module  # what samples: the EMA of G's weights (G itself when gan.ema_decay = 0)
    log: list[dict]
    fid: list[dict]  # the FID curve: g_iter, images, fid, fid_lo, fid_hi
    probe: list[dict]
    grids: dict[int, torch.Tensor] = field(default_factory=dict)  # G iteration -> (grid^2, C, H, W)
    g_iters: int = 0
    d_iters: int = 0
    epochs: float = 0.0
    converged_at: int | None = None


def fit_gan(spec, schedule: GANSchedule, real: torch.Tensor, feature_net: FeatureNet, *, n_fid: int,
            grid: int, probe_steps: int, n_boot: int, generator: torch.Generator, device: torch.device) -> GANRun:
    """Train the DCGAN of ``spec`` (a :class:`advgen.generative.params.GANSpec`) on ``real`` (N, 1, H, W)
    float in [0, 1].

    ``generator`` draws, in order: G's and D's initial weights, the stacked dataset (if
    ``spec.stacked``), the C11 probe, the fixed codes of the FID curve and of the sample grids,
    the seed of the curve's bootstrap, then the batch order and the training codes. The FID
    curve compares ``n_fid`` samples of the EMA generator from fixed codes with the first
    ``n_fid`` real images in ``feature_net``'s features (stacked: the samples' channels as
    single images), each point with an ``n_boot`` bootstrap interval.
    """
    if tuple(real.shape[1:]) != (1, 28, 28):
        raise ValueError(f"gan: the DCGAN is built for 28x28 grey images, but the dataset's images are "
                         f"{tuple(real.shape[1:])} (C, H, W); use fashion-mnist or mnist")
    if n_fid > len(real):
        raise ValueError(f"params.yaml: the profile's 'gan.n_fid' = {n_fid} exceeds the {len(real)} training images "
                         "(gan.n_train) the FID curve compares with")
    channels = 3 if spec.stacked else 1
    g, d = build_pair(spec.z_dim, channels, spec.width, generator, spec.norm)
    g, d = to_layout(g.to(device)), to_layout(d.to(device))
    data = stack_channels(real, generator)[0] if spec.stacked else real
    data = data.to(device).contiguous(memory_format=torch.channels_last)
    betas = (float(spec.betas[0]), float(spec.betas[1]))
    probe = [] if spec.loss == "wgan_gp" or probe_steps == 0 else \
        saturation_probe(g, d, data, probe_steps, schedule.batch_size, spec.lr, betas, generator)
    real_feats = extract(feature_net, real[:n_fid])
    fid_codes = sample_codes(n_fid if not spec.stacked else -(-n_fid // 3), spec.z_dim, generator)
    grid_codes = sample_codes(grid * grid, spec.z_dim, generator)
    boot = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
    sampler = ema_copy(g) if schedule.ema_decay > 0 else g

    def fid_now(g_iter: int) -> CurvePoint:
        fake = generate(sampler, fid_codes)
        return fid_point(g_iter, real_feats, extract(feature_net, channel_images(fake, n_fid)), n_boot, boot)

    grids: dict[int, torch.Tensor] = {}
    opt_g = torch.optim.Adam(g.parameters(), lr=spec.lr, betas=betas)
    opt_d = torch.optim.Adam(d.parameters(), lr=spec.lr, betas=betas)
    step = GANStep(g, d, spec.loss, opt_g, opt_d, generator, spec.gp_weight or 0.0)
    hist = train_gan(step, len(data), lambda idx: data[idx.to(device)], schedule, generator, fid_now,
                     sampler if sampler is not g else None,
                     lambda g_iter: grids.__setitem__(g_iter, generate(sampler, grid_codes)))
    bs = schedule.batch_size
    curve = [{**p.row("g_iter"), "images": p.step * spec_images(schedule, bs)} for p in hist.fid]
    return GANRun(sampler.cpu(), hist.log, curve, probe, grids, hist.g_iters, hist.d_iters, hist.epochs,
                  hist.converged_at)


def spec_images(schedule: GANSchedule, bs: int) -> int:
    """Real images D has seen per G iteration."""
    return schedule.d_steps * bs


def early_d_fake(log: list[dict], iters: int) -> dict | None:
    """C11 in training: mean D(G(z)) over the first ``iters`` G iterations (the logged trace),
    its minimum and the iteration at which it first falls below 0.1 (None: never)."""
    rows = [r for r in log if r["g_iter"] < iters]
    if not rows:
        return None
    below = [r["g_iter"] for r in rows if r["d_fake"] < 0.1]
    return {"iters": len(rows), "mean": sum(r["d_fake"] for r in rows) / len(rows),
            "min": min(r["d_fake"] for r in rows), "first_below_0.1": below[0] if below else None}
