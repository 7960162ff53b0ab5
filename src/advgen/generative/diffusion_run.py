"""One diffusion config end to end: data (pixels or latents), the U-Net, training, and every
sample set the config asks for. :func:`fit_diffusion` and :func:`sample_sets` are what the
``diffusion`` stage calls."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..models import to_layout
from .autoencoder import Autoencoder
from .diffusion import (DiffusionStep, SamplerSpec, TrainHistory, alphas_cumprod, ema_copy, sample, to_image,
                        to_model, train_diffusion)
from .curve import CurvePoint, fid_point
from .features import FeatureNet, extract
from .params import DiffusionConfig
from .unet import UNet


def seeded_init(build, generator: torch.Generator) -> nn.Module:
    """Build a network whose default initialisation draws from a seed taken from ``generator``,
    inside a forked RNG: the global RNG is neither used nor changed."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


@dataclass
class DiffusionFit:
    ema: nn.Module  # the EMA weights: what samples and is saved
    hist: TrainHistory
    data_shape: tuple[int, int, int]  # (C, H, W) of what the network denoises


def model_space(x: torch.Tensor, ae: Autoencoder | None, batch_size: int = 1000) -> torch.Tensor:
    """Images (N, 1, 28, 28) in [0, 1] -> what the network denoises: [-1, 1] pixels, or the
    autoencoder's latents standardised per channel (N, c, h, w)."""
    if ae is None:
        return to_model(x)
    dev = ae.scale.device
    with torch.no_grad():
        return torch.cat([ae.encode(x[i:i + batch_size].to(dev)).cpu() for i in range(0, len(x), batch_size)])


def to_images(x: torch.Tensor, ae: Autoencoder | None, batch_size: int = 1000) -> torch.Tensor:
    """The inverse of :func:`model_space`: samples in model space -> images in [0, 1] (on the CPU)."""
    if ae is None:
        return to_image(x)
    dev = ae.scale.device
    with torch.no_grad():
        return torch.cat([ae.decode(x[i:i + batch_size].to(dev)).cpu() for i in range(0, len(x), batch_size)])


@dataclass
class Curve:
    """How the FID curve is taken: ``n`` samples by DDIM-``steps`` (eta 0) from fixed noise (and,
    for a conditional model, balanced labels at guidance 1, like the main set) against the first
    ``n`` training images in ``net``'s features; ``window`` > 0 stops training once it flattens."""

    net: FeatureNet
    n: int
    steps: int
    n_boot: int
    window: int = 0


def _curve_fn(curve: Curve, ema: nn.Module, spec, T: int, shape, x: torch.Tensor, ae: Autoencoder | None,
              generator: torch.Generator, device):
    """fid_fn(epoch) for :func:`train_diffusion`; draws the fixed noise and the bootstrap seed from ``generator``."""
    real_feats = extract(curve.net, x[:curve.n])
    noise = torch.randn((curve.n, *shape), generator=generator)
    boot = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
    labels = balanced_labels(curve.n, spec.num_classes) if spec.num_classes else None
    sampler = SamplerSpec("ddim", curve.steps, 0.0)

    def fid_fn(epoch: int) -> CurvePoint:
        z, _ = sample(ema, sampler, spec.schedule, T, shape, curve.n, torch.Generator().manual_seed(0), labels,
                      1.0 if labels is not None else 0.0, clip=ae is None, device=device, x_T=noise)
        return fid_point(epoch, real_feats, extract(curve.net, to_images(z, ae)), curve.n_boot, boot)
    return fid_fn


def warmup_schedule(opt: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """The learning rate ramps linearly from lr / steps to lr over the first ``steps`` updates, then stays."""
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda i: min(1.0, (i + 1) / steps) if steps else 1.0)


def fit_diffusion(spec, x: torch.Tensor, y: torch.Tensor | None, ae: Autoencoder | None, *, T: int, epochs: int,
                  batch_size: int, lr: float, ema_decay: float, p_uncond: float, log_every: int, snapshot_iters: int,
                  generator: torch.Generator, device: torch.device, rank: int = 0, world: int = 1, warmup: int = 0,
                  curve: Curve | None = None) -> DiffusionFit:
    """Train the denoiser of ``spec`` (a :class:`advgen.generative.params.DiffusionSpec`) on images x
    (N, 1, 28, 28) in [0, 1] with labels y (N,) (None for an unconditional model): Adam at
    ``lr`` after a linear ``warmup``, at most ``epochs`` epochs, the FID curve of ``curve``
    after every epoch (rank 0).

    ``generator`` draws, in order: the network's initial weights, the curve's fixed noise and
    bootstrap seed (if ``curve``), the batch order, then per step t, the noise and the label dropout."""
    if curve is not None and curve.n > len(x):
        raise ValueError(f"params.yaml: the profile's 'diffusion.n_fid' = {curve.n} exceeds the {len(x)} training "
                         "images (diffusion.n_train) the FID curve compares with")
    data = model_space(x, ae).to(device)  # (N, C, H, W)
    shape = tuple(data.shape[1:])
    levels = len(spec.mults) - 1
    if shape[1] % 2 ** levels or shape[2] % 2 ** levels:
        raise ValueError(f"params.yaml: 'diffusion.configs.<name>.mults' has {len(spec.mults)} levels, so the U-Net halves "
                         f"its input {levels} time(s), but the {spec.space} data are {shape[1]}x{shape[2]}; "
                         f"use at most {1 + _halvings(shape[1])} levels")
    net = seeded_init(lambda: UNet(shape[0], spec.base, tuple(spec.mults), spec.num_classes), generator)
    net = to_layout(net.to(device))
    data = data.contiguous(memory_format=torch.channels_last)
    ema = ema_copy(net)
    fid_fn = _curve_fn(curve, ema, spec, T, shape, x, ae, generator, device) if curve is not None else None
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    step = DiffusionStep(net, alphas_cumprod(spec.schedule, T), opt, generator, p_uncond if spec.num_classes else 0.0,
                         ema, ema_decay, rank, world, warmup_schedule(opt, warmup))
    labels = None if not spec.num_classes or y is None else y.to(device)
    hist = train_diffusion(step, data, labels, epochs, batch_size, generator, log_every, snapshot_iters,
                           None if fid_fn is None else fid_fn if rank == 0 else _no_point,
                           curve.window if curve is not None else 0)
    return DiffusionFit(ema, hist, shape)


def _no_point(epoch: int) -> CurvePoint:  # ranks > 0 take no curve point (rank 0 decides when to stop)
    raise AssertionError("only rank 0 takes FID points")


def _halvings(side: int) -> int:
    k = 0
    while side % 2 == 0:
        side //= 2
        k += 1
    return k


def balanced_labels(n: int, num_classes: int) -> torch.Tensor:
    """0, 1, ..., num_classes - 1, 0, 1, ...: n requested classes, as even as n allows."""
    return torch.arange(n) % num_classes


def timed_sample(model: nn.Module, sampler: SamplerSpec, spec, T: int, shape, n: int, generator: torch.Generator,
                 ae: Autoencoder | None, device, labels=None, scale: float = 0.0, frames: int = 0):
    """Images (n, 1, 28, 28) in [0, 1], the strip frames as images, and the wall seconds
    (a one-step warm-up first: the first call pays one-off allocation costs)."""
    warm = SamplerSpec("ddim", 1, 0.0)
    sample(model, warm, spec.schedule, T, shape, min(n, 8), torch.Generator().manual_seed(0),
           clip=ae is None, device=device)
    start = time.perf_counter()
    z, strip = sample(model, sampler, spec.schedule, T, shape, n, generator, labels, scale, clip=ae is None,
                      frames=frames, device=device)
    x = to_images(z, ae)
    seconds = time.perf_counter() - start
    return x, [to_images(f, ae) for f in strip], seconds


def sample_plan(cfg: DiffusionConfig, name: str) -> dict[str, dict[str, Any]]:
    """The sample sets of config ``name``, in drawing order: set name -> {role, sampler, steps,
    eta, n[, scale, guided][, frames, strip_seeds]}. A conditional model's main set is its
    conditional samples (guidance 1, classes balanced), what it was trained to do; its
    unconditional mode (the null label) is a set of its own, ``uncond_<sampler>``. The C15
    snapshot is unconditional: it is compared with unconditional GANs."""
    spec, main = cfg.spec(name), cfg.sampler(cfg.main_sampler)
    base = lambda s: {"sampler": s.sampler, "steps": s.steps, "eta": float(s.eta)}  # noqa: E731
    cond = {"scale": 1.0, "guided": True} if spec.conditional else {}
    plan = {main.name: {"role": "main", **base(main), "n": cfg.n_sample, **cond}}
    if not spec.sweep:
        plan[main.name].update(frames=cfg.strip_frames, strip_seeds=cfg.strip_seeds)
    if spec.conditional:
        plan[f"uncond_{main.name}"] = {"role": "unconditional", **base(main), "n": cfg.n_sample}
    if spec.snapshot and cfg.snapshot_iters:
        plan[f"snapshot_{main.name}"] = {"role": "snapshot", **base(main), "n": cfg.n_sample}
    if spec.sweep:
        for item in cfg.sweep:
            s = cfg.sampler(item)
            plan[f"sweep_{s.name}"] = {"role": "sweep", **base(s), "n": cfg.n_sweep}
            if s.sampler == "ddpm":  # the lecture's "image appearing over time": the full reverse process
                plan[f"sweep_{s.name}"].update(frames=cfg.strip_frames, strip_seeds=cfg.strip_seeds)
    if spec.guidance:
        for scale in cfg.guidance_scales:
            plan[f"guidance_s{scale:g}"] = {"role": "guidance", **base(main), "n": cfg.n_guidance,
                                            "scale": float(scale), "guided": True}
    return plan


def sample_sets(fit_model: nn.Module, spec, plan: dict, T: int, shape, ae: Autoencoder | None,
                generator: torch.Generator, device, snapshot: nn.Module | None = None):
    """Every set of ``plan`` (see :func:`sample_plan`): name -> {images,
    labels, role, sampler, steps, eta, scale}; plus the trajectory strip (frames of (k, 1, 28, 28))
    and the wall seconds per set. Sets are drawn in plan order from ``generator``."""
    sets, seconds, strip = {}, {}, []
    for name, item in plan.items():
        model = snapshot if item["role"] == "snapshot" else fit_model
        sampler = SamplerSpec(item["sampler"], item["steps"], item["eta"])
        labels = balanced_labels(item["n"], spec.num_classes) if item.get("guided") else None
        frames = item.get("frames", 0)
        x, frames_img, secs = timed_sample(model, sampler, spec, T, shape, item["n"], generator, ae, device,
                                           labels, item.get("scale", 0.0), frames)
        if frames:
            strip = [f[:item["strip_seeds"]] for f in frames_img]
        sets[name] = {"images": x, "labels": labels,
                      **{k: item[k] for k in ("role", "sampler", "steps", "eta")},
                      **({"scale": item["scale"]} if item.get("guided") else {})}
        seconds[name] = secs
    return sets, strip, seconds
