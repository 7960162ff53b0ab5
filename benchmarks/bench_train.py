"""Training throughput: the train stage's epoch function against a plain eager PyTorch loop.

Variants, each on the same architecture, the same initial weights and the same batches (the
same seeded permutation of the same images):

* ``advgen``: :func:`advgen.training.train_one_epoch` as the train stage runs it: a conv model
  in ``channels_last`` memory format (:func:`advgen.models.to_layout`), inputs converted to it,
  dropout masks drawn from a ``torch.Generator`` (:class:`advgen.models.Dropout`), loss and
  accuracy accumulated on-device.
* ``plain``: a plain eager loop in the default NCHW layout with stock ``torch.nn.Dropout``:
  forward, cross-entropy, zero_grad, backward, step, and nothing else.
* ``compiled`` (with --compile): the plain loop on ``torch.compile(model)``. Its warm-up (one
  epoch, compilation included) is reported apart from its steady-state throughput.

Every variant uses AdamW with a OneCycleLR schedule stepped per batch. Repetitions are
interleaved (rep 1 of every arch and variant, then rep 2, ...) so that drift on a shared
machine hits all alike; each is one epoch over --n images, after an untimed warm-up. Prints images/s (best of --reps)
and the ratios to ``plain``: the target is advgen/plain >= 1.3 for ``cnn``.

Usage: python benchmarks/bench_train.py [--n 6000] [--reps 3] [--batch-size 128]
       [--archs cnn,resnet] [--compile] [--threads 0] [--device cpu]
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn

from advgen.data import load_split, to_float
from advgen.models import Dropout, build_model, to_layout
from advgen.training import train_one_epoch
from advgen.utils import resolve_device

TARGET = {"cnn": 1.3}  # advgen / plain


def plain_epoch(model, opt, sched, x, y, batch_size, generator, device) -> None:
    """The plain loop: default layout, nothing but the training step."""
    model.train()
    order = torch.randperm(len(y), generator=generator)
    for start in range(0, len(y), batch_size):
        idx = order[start:start + batch_size]
        loss = F.cross_entropy(model(x[idx].to(device)), y[idx].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()


def stock_dropout(model: nn.Module) -> nn.Module:
    """Replace advgen's generator-driven Dropout by torch.nn.Dropout (same p)."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, Dropout):
                setattr(parent, name, nn.Dropout(child.p))
    return model


class Runner:
    """One (arch, variant): its model, optimizer and schedule, kept across repetitions."""

    def __init__(self, arch: str, variant: str, args, x, y, device):
        self.variant, self.x, self.y, self.args, self.device = variant, x, y, args, device
        model = build_model(arch, (1, 28, 28), 10, generator=torch.Generator().manual_seed(args.seed)).to(device)
        if variant == "advgen":  # as advgen.training.fit prepares it
            model = to_layout(model)
            for m in model.modules():
                if isinstance(m, Dropout):
                    m.generator = torch.Generator().manual_seed(args.seed)
        else:
            model = stock_dropout(model)
        self.model = model
        self.net = torch.compile(model) if variant == "compiled" else model
        self.opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
        steps = -(-len(y) // args.batch_size)
        self.sched = torch.optim.lr_scheduler.OneCycleLR(self.opt, max_lr=3e-3, total_steps=(args.reps + 2) * steps)
        self.epochs = 0
        self.times: list[float] = []
        self.warmup = float("nan")

    def epoch(self, limit: int | None = None) -> float:
        """Seconds for one epoch (over the first ``limit`` images only, for a warm-up)."""
        gen = torch.Generator().manual_seed(self.args.seed + self.epochs)  # the same batches for every variant
        self.epochs += 1
        x, y = (self.x, self.y) if limit is None else (self.x[:limit], self.y[:limit])
        sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None)
        sync()
        start = time.perf_counter()
        if self.variant == "advgen":
            train_one_epoch(self.net, self.opt, x, y, self.args.batch_size, gen, self.device, self.sched)
        else:
            plain_epoch(self.net, self.opt, self.sched, x, y, self.args.batch_size, gen, self.device)
        sync()
        return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=6000, help="training images per epoch")
    ap.add_argument("--reps", type=int, default=3, help="timed epochs per variant (best of)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--archs", default="cnn,resnet")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile of the plain loop")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    x, y = load_split("data/prepared/fashion-mnist", "train")
    x, y = to_float(x[: args.n]), y[: args.n]
    archs = [a for a in args.archs.split(",") if a]
    variants = ["advgen", "plain"] + (["compiled"] if args.compile else [])
    print(f"device {device}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
          f"{len(y)} images per epoch, batch {args.batch_size}, {args.reps} reps interleaved")

    runners = {(a, v): Runner(a, v, args, x, y, device) for a in archs for v in variants}
    for (arch, variant), r in runners.items():
        # Warm-up, untimed: 5 batches; for 'compiled' a whole epoch (compiles the last, smaller batch too).
        r.warmup = r.epoch() if variant == "compiled" else r.epoch(limit=5 * args.batch_size)
    for _ in range(args.reps):
        for r in runners.values():
            r.times.append(r.epoch())

    n = len(y)
    print(f"\n{'arch':8s} {'variant':9s} {'images/s':>9s}  (every rep)")
    for (arch, variant), r in runners.items():
        reps = ", ".join(f"{n / t:.0f}" for t in r.times)
        print(f"{arch:8s} {variant:9s} {n / min(r.times):9.1f}  ({reps})")
        if variant == "compiled":
            print(f"{'':8s} {'':9s} warm-up epoch (compilation included): {r.warmup:.1f} s "
                  f"vs {min(r.times):.1f} s steady")
    print()
    for arch in archs:
        best = {v: n / min(runners[arch, v].times) for v in variants}
        target = f" (target >= {TARGET[arch]})" if arch in TARGET else ""
        print(f"{arch:8s} ratio advgen/plain = {best['advgen'] / best['plain']:.3f}{target}")
        if "compiled" in best:
            print(f"{arch:8s} ratio advgen/compiled = {best['advgen'] / best['compiled']:.3f}, "
                  f"compiled/plain = {best['compiled'] / best['plain']:.3f}")


if __name__ == "__main__":
    main()
