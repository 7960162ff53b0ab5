"""Diffusion throughput on this machine, as ratios measured in one process:

1. the diffusion stage's step function (DiffusionStep: label dropout, EMA) against a minimal
   hand-written DDPM step (Ho et al., Algorithm 1) on the same network and batches (target >= 0.95);
2. this project's U-Net against diffusers' ``UNet2DModel`` (28x28 padded to 32x32, the nearest
   configuration in parameter count): training seconds per Fashion-MNIST epoch;
3. ``channels_last`` against NCHW for the U-Net: a training step and a sampling forward pass;
4. the latent denoiser against the pixel one: a training step and a sampling forward (decoder included).

Usage: ``python benchmarks/bench_diffusion.py [--steps 20] [--batch-size 64] [--repeats 3]``.
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from advgen.generative.autoencoder import Autoencoder
from advgen.generative.diffusion import DiffusionStep, alphas_cumprod, ema_copy
from advgen.generative.unet import UNet, n_params

EPOCH = 60_000


def minimal_step(model, opt, abar, x0, y, gen):
    """Algorithm 1 of Ho et al. with a class label: nothing else."""
    t = torch.randint(0, len(abar), (len(x0),), generator=gen)
    noise = torch.randn(x0.shape, generator=gen).contiguous(memory_format=torch.channels_last)
    a = abar[t].reshape(-1, 1, 1, 1)
    loss = F.mse_loss(model(a.sqrt() * x0 + (1 - a).sqrt() * noise, t, y), noise)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def best(fn, steps: int, repeats: int) -> float:
    """Best wall seconds per call over ``repeats`` runs of ``steps`` calls (after one warm-up)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            fn()
        times.append((time.perf_counter() - start) / steps)
    return min(times)


def unet(channels=1, base=16, mults=(1, 2, 2), layout=torch.channels_last):
    gen = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=gen)))
        return UNet(channels, base, mults, 10).to(memory_format=layout)


def step_ratio(args) -> None:
    abar = alphas_cumprod("linear", 1000)
    x0 = torch.randn(args.batch_size, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (args.batch_size,))
    a, b = unet(), unet()
    opt_a, opt_b = torch.optim.Adam(a.parameters(), 2e-4), torch.optim.Adam(b.parameters(), 2e-4)
    stage = DiffusionStep(a, abar, opt_a, torch.Generator().manual_seed(1), 0.1, ema_copy(a), 0.999)
    gen = torch.Generator().manual_seed(1)
    t_stage = best(lambda: stage(x0, y, args.batch_size), args.steps, args.repeats)
    t_min = best(lambda: minimal_step(b, opt_b, abar, x0, y, gen), args.steps, args.repeats)
    print(f"step: DiffusionStep {args.batch_size / t_stage:.0f} img/s, minimal {args.batch_size / t_min:.0f} img/s, "
          f"ratio {t_min / t_stage:.3f} (target >= 0.95)")


def train_time(model, x, t, kw, steps, repeats) -> float:
    opt = torch.optim.Adam(model.parameters(), 2e-4)

    def step():
        out = model(x, t, **kw)
        out = out.sample if hasattr(out, "sample") else out
        loss = out.square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return best(step, steps, repeats)


def versus_diffusers(args) -> None:
    from diffusers import UNet2DModel

    bs = args.batch_size
    ours = unet()
    theirs = UNet2DModel(sample_size=32, in_channels=1, out_channels=1, block_out_channels=(16, 32, 32),
                         layers_per_block=1, down_block_types=("DownBlock2D",) * 3, up_block_types=("UpBlock2D",) * 3,
                         norm_num_groups=8, num_class_embeds=11).to(memory_format=torch.channels_last)
    t = torch.randint(0, 1000, (bs,))
    y = torch.randint(0, 10, (bs,))
    x28 = torch.randn(bs, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    x32 = F.pad(x28, (2, 2, 2, 2)).contiguous(memory_format=torch.channels_last)
    s_ours = train_time(ours, x28, t, {"y": y}, args.steps, args.repeats)
    s_theirs = train_time(theirs, x32, t, {"class_labels": y}, args.steps, args.repeats)
    print(f"U-Net: ours {n_params(ours):,} parameters, {s_ours * EPOCH / bs:.0f} s / epoch; diffusers UNet2DModel "
          f"{n_params(theirs):,} parameters (32x32), {s_theirs * EPOCH / bs:.0f} s / epoch; "
          f"ours is {s_theirs / s_ours:.2f}x faster")


@torch.no_grad()
def forward_time(model, x, t, y, repeats, decoder=None) -> float:
    def call():
        out = model(x, t, y)
        if decoder is not None:
            decoder(out)
    return best(call, 3, repeats)


def layouts(args) -> None:
    bs = args.batch_size
    t, y = torch.randint(0, 1000, (bs,)), torch.randint(0, 10, (bs,))
    res = {}
    for name, layout in (("channels_last", torch.channels_last), ("NCHW", torch.contiguous_format)):
        x = torch.randn(bs, 1, 28, 28).contiguous(memory_format=layout)
        m = unet(layout=layout)
        res[name] = (train_time(m, x, t, {"y": y}, args.steps, args.repeats),
                     forward_time(m.eval(), torch.randn(500, 1, 28, 28).contiguous(memory_format=layout),
                                  torch.full((500,), 10), torch.full((500,), 10), args.repeats))
    tr, fw = res["NCHW"][0] / res["channels_last"][0], res["NCHW"][1] / res["channels_last"][1]
    print(f"layout: channels_last is {tr:.2f}x faster to train and {fw:.2f}x faster to sample than NCHW")


def latent_vs_pixel(args) -> None:
    bs = args.batch_size
    t, y = torch.randint(0, 1000, (bs,)), torch.randint(0, 10, (bs,))
    pixel, latent = unet(), unet(4, 48, (1,))
    ae = Autoencoder((4, 7, 7), 16).to(memory_format=torch.channels_last).eval()
    xp = torch.randn(bs, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    xl = torch.randn(bs, 4, 7, 7).contiguous(memory_format=torch.channels_last)
    tp = train_time(pixel, xp, t, {"y": y}, args.steps, args.repeats)
    tl = train_time(latent, xl, t, {"y": y}, args.steps, args.repeats)
    n = 500
    fp = forward_time(pixel.eval(), torch.randn(n, 1, 28, 28).contiguous(memory_format=torch.channels_last),
                      torch.full((n,), 10), torch.full((n,), 10), args.repeats)
    fl = forward_time(latent.eval(), torch.randn(n, 4, 7, 7).contiguous(memory_format=torch.channels_last),
                      torch.full((n,), 10), torch.full((n,), 10), args.repeats)
    dec = best(lambda: ae.decode(torch.randn(n, 4, 7, 7)), 3, args.repeats)
    steps = 50
    print(f"latent vs pixel: training step {tp / tl:.1f}x cheaper ({n_params(latent):,} vs {n_params(pixel):,} "
          f"parameters); one denoising call {fp / fl:.1f}x cheaper; DDIM-{steps} per sample with one decode "
          f"{steps * fp / (steps * fl + dec):.1f}x cheaper")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}")
    step_ratio(args)
    versus_diffusers(args)
    layouts(args)
    latent_vs_pixel(args)


if __name__ == "__main__":
    main()
