"""GAN training throughput: the gan stage's step function (GANStep) against a minimal
hand-written DCGAN step on the same models and batches (target ratio >= 0.95), and
channels_last against the default layout for the DCGAN pair.

Usage: ``python benchmarks/bench_gan.py [--steps 60] [--batch-size 64] [--repeats 3]``.
Prints ratios (timings are noisy: both sides run interleaved in the same process).
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from advgen.generative.gan import GANStep
from advgen.generative.models import build_pair


def minimal_step(g, d, opt_g, opt_d, real, z_dim, gen):
    """The textbook non-saturating DCGAN step, nothing else."""
    z = torch.randn(len(real), z_dim, generator=gen)
    with torch.no_grad():
        fake = g(z)
    loss_d = F.softplus(-d(real)).mean() + F.softplus(d(fake)).mean()
    opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    opt_d.step()
    z = torch.randn(len(real), z_dim, generator=gen)
    loss_g = F.softplus(-d(g(z))).mean()
    opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    opt_g.step()


def setup(layout):
    g, d = build_pair(100, 1, 64, torch.Generator().manual_seed(0))
    g, d = g.to(memory_format=layout), d.to(memory_format=layout)
    opt_g = torch.optim.Adam(g.parameters(), 2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), 2e-4, betas=(0.5, 0.999))
    return g, d, opt_g, opt_d


def time_it(fn, steps):
    fn()  # warm-up
    t = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - t) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    real = torch.rand(args.batch_size, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    results = {"stage": [], "minimal": [], "contiguous": []}
    for _ in range(args.repeats):
        g, d, og, od = setup(torch.channels_last)
        step = GANStep(g, d, "non_saturating", og, od, torch.Generator().manual_seed(2))
        xb = real.contiguous(memory_format=torch.channels_last)
        results["stage"].append(time_it(lambda: (step.d_step(xb, len(xb)), step.g_step(len(xb))), args.steps))
        g, d, og, od = setup(torch.channels_last)
        gen = torch.Generator().manual_seed(2)
        results["minimal"].append(time_it(lambda: minimal_step(g, d, og, od, xb, 100, gen), args.steps))
        g, d, og, od = setup(torch.contiguous_format)
        gen = torch.Generator().manual_seed(2)
        results["contiguous"].append(time_it(lambda: minimal_step(g, d, og, od, real, 100, gen), args.steps))
    best = {k: min(v) for k, v in results.items()}
    print(f"threads {torch.get_num_threads()}, batch {args.batch_size}, {args.steps} steps x {args.repeats} repeats (best)")
    for k, v in best.items():
        print(f"  {k:>10}: {1000 * v:.1f} ms per D+G step ({args.batch_size / v:.0f} images/s)")
    print(f"GANStep throughput / minimal step: {best['minimal'] / best['stage']:.3f} (target >= 0.95)")
    print(f"channels_last speed-up over contiguous (minimal step): {best['contiguous'] / best['minimal']:.2f}x")


if __name__ == "__main__":
    main()
