"""One GAN config trained end to end: data, models, optimizers, curves, grids, the C11 probe.

:func:`fit_gan` is what the ``gan`` stage calls; it returns everything the stage writes.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..models import to_layout
from .gan import GANSchedule, GANStep, saturation_probe, train_gan
from .models import build_pair, generate, sample_codes
from .features import FeatureNet, extract, frechet_distance


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
    g: nn.Module
    log: list[dict]
    fid: list[dict]
    probe: list[dict]
    grids: list[torch.Tensor] = field(default_factory=list)  # one (grid^2, C, H, W) batch per epoch
    g_iters: int = 0
    d_iters: int = 0


def fit_gan(spec, schedule: GANSchedule, real: torch.Tensor, feature_net: FeatureNet, *, n_fid: int,
            grid: int, probe_steps: int, generator: torch.Generator, device: torch.device) -> GANRun:
    """Train the DCGAN of ``spec`` (a :class:`advgen.schema.GANSpec`) on ``real`` (N, 1, H, W)
    float in [0, 1].

    ``generator`` draws, in order: G's and D's initial weights, the stacked dataset (if
    ``spec.stacked``), the C11 probe, the fixed codes of the FID curve and of the sample grids,
    the batch order and the training codes. The FID curve compares ``n_fid`` samples from fixed
    codes with the first ``n_fid`` real images in ``feature_net``'s features (stacked: the
    samples' channels as single images).
    """
    if tuple(real.shape[1:]) != (1, 28, 28):
        raise ValueError(f"gan: the DCGAN is built for 28x28 grey images, but the dataset's images are "
                         f"{tuple(real.shape[1:])} (C, H, W); use fashion-mnist or mnist")
    if n_fid > len(real):
        raise ValueError(f"params.yaml: the profile's 'gan.n_fid' = {n_fid} exceeds the {len(real)} training images "
                         "(gan.n_train) the FID curve compares with")
    channels = 3 if spec.stacked else 1
    g, d = build_pair(spec.z_dim, channels, spec.width, generator)
    g, d = to_layout(g.to(device)), to_layout(d.to(device))
    data = stack_channels(real, generator)[0] if spec.stacked else real
    data = data.to(device).contiguous(memory_format=torch.channels_last)
    betas = (float(spec.betas[0]), float(spec.betas[1]))
    probe = [] if spec.loss == "wgan_gp" or probe_steps == 0 else \
        saturation_probe(g, d, data, probe_steps, schedule.batch_size, spec.lr, betas, generator)
    real_feats = extract(feature_net, real[:n_fid])
    fid_codes = sample_codes(n_fid if not spec.stacked else -(-n_fid // 3), spec.z_dim, generator)
    grid_codes = sample_codes(grid * grid, spec.z_dim, generator)

    def fid_now() -> float:
        fake = generate(g, fid_codes)
        return frechet_distance(real_feats, extract(feature_net, channel_images(fake, n_fid)))

    grids: list[torch.Tensor] = []
    opt_g = torch.optim.Adam(g.parameters(), lr=spec.lr, betas=betas)
    opt_d = torch.optim.Adam(d.parameters(), lr=spec.lr, betas=betas)
    step = GANStep(g, d, spec.loss, opt_g, opt_d, generator, spec.gp_weight or 0.0)
    hist = train_gan(step, len(data), lambda idx: data[idx.to(device)], schedule, generator, fid_now,
                     lambda epoch: grids.append(generate(g, grid_codes)))
    return GANRun(g.cpu(), hist.log, hist.fid, probe, grids, hist.g_iters, hist.d_iters)
