"""Adversarial-training throughput: the defend stage's PGD-AT epoch against a minimal
hand-written PGD-AT loop, on the same model, initial weights and batches.

* ``advgen``: :func:`advgen.training.train_one_epoch` with :class:`advgen.defenses.PGDTraining`,
  exactly as the defend stage runs it (``channels_last`` conv model, generator-driven random
  starts and dropout, on-device loss accounting).
* ``minimal``: a hand-written loop: per batch, eval mode, uniform start, ``steps`` signed
  gradient steps with projection, train mode, forward, cross-entropy, zero_grad, backward,
  step; the same layout and optimiser.

Repetitions are interleaved (advgen, minimal, advgen, ...) so drift hits both alike; each is one
epoch over --n Fashion-MNIST training images after an untimed warm-up. Prints images/s (best
of --reps) and advgen/minimal: the target is >= 0.95.

Usage: python benchmarks/bench_defend.py [--n 2000] [--reps 3] [--steps 7] [--eps 0.1]
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from advgen.data import load_split, to_float
from advgen.defenses.adversarial import PGDTraining
from advgen.models import build_model, to_layout
from advgen.training import train_one_epoch
from advgen.utils import resolve_device

TARGET = 0.95


def minimal_epoch(model, opt, sched, x, y, batch_size, generator, device, eps, steps, step) -> None:
    order = torch.randperm(len(y), generator=generator)
    for start in range(0, len(y), batch_size):
        idx = order[start:start + batch_size]
        xb = x[idx].to(device).contiguous(memory_format=torch.channels_last)
        yb = y[idx].to(device)
        model.eval()
        adv = (xb + (2 * torch.rand(xb.shape, generator=generator) - 1).to(device) * eps).clamp(0, 1)
        for _ in range(steps):
            adv.requires_grad_(True)
            (g,) = torch.autograd.grad(F.cross_entropy(model(adv), yb, reduction="sum"), adv)
            adv = torch.min(torch.max(adv.detach() + step * g.sign(), xb - eps), xb + eps).clamp(0, 1)
        model.train()
        loss = F.cross_entropy(model(adv), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=7)
    ap.add_argument("--eps", type=float, default=0.1)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    device = resolve_device(args.device)
    x, y = load_split("data/prepared/fashion-mnist", "train")
    x, y = to_float(x[: args.n]), y[: args.n]
    step = args.eps / 4

    def fresh():
        model = to_layout(build_model("cnn", (1, 28, 28), 10, generator=torch.Generator().manual_seed(0)).to(device))
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=10_000)
        return model, opt, sched

    def run(variant: str) -> float:
        model, opt, sched = fresh()
        gen = torch.Generator().manual_seed(1)
        start = time.perf_counter()
        if variant == "advgen":
            loss = PGDTraining(args.eps, args.steps, step, torch.Generator().manual_seed(2))
            train_one_epoch(model, opt, x, y, args.batch_size, gen, device, sched, loss)
        else:
            minimal_epoch(model, opt, sched, x, y, args.batch_size, gen, device, args.eps, args.steps, step)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return args.n / (time.perf_counter() - start)

    run("advgen"), run("minimal")  # warm-up
    best = {"advgen": 0.0, "minimal": 0.0}
    for _ in range(args.reps):
        for v in best:
            best[v] = max(best[v], run(v))
    for v, ips in best.items():
        print(f"{v:8s} {ips:8.1f} images/s (PGD-{args.steps} AT, best of {args.reps}, n={args.n}, {device})")
    ratio = best["advgen"] / best["minimal"]
    print(f"advgen/minimal = {ratio:.3f} (target >= {TARGET}): {'met' if ratio >= TARGET else 'NOT met'}")


if __name__ == "__main__":
    main()
