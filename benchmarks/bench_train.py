"""Training throughput: the train stage's epoch function against a minimal torch loop.

Both train the same `cnn` on the same batches in the same process; the ratio
advgen / minimal should be >= 0.95. Usage: python benchmarks/bench_train.py [--n 6000] [--reps 3]
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from advgen.data import load_split, to_float
from advgen.models import build_model
from advgen.training import train_one_epoch


def minimal_epoch(model, opt, x, y, batch_size, generator):
    model.train()
    order = torch.randperm(len(y), generator=generator)
    for start in range(0, len(y), batch_size):
        idx = order[start:start + batch_size]
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=6000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=128)
    args = ap.parse_args()
    x, y = load_split("data/prepared/fashion-mnist", "train")
    x, y = to_float(x[: args.n]), y[: args.n]
    dev = torch.device("cpu")
    times = {"advgen": [], "minimal": []}
    for rep in range(args.reps):  # interleaved, so drift hits both alike
        for name in times:
            torch.manual_seed(rep)
            model = build_model("cnn", (1, 28, 28), 10)
            opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
            gen = torch.Generator().manual_seed(rep)
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=-(-args.n // args.batch_size))
            if name == "advgen":
                times[name].append(timed(lambda: train_one_epoch(model, opt, x, y, args.batch_size, gen, dev, sched)))
            else:
                times[name].append(timed(lambda: minimal_epoch(model, opt, x, y, args.batch_size, gen)))
    best = {k: args.n / min(v) for k, v in times.items()}
    for k, v in best.items():
        print(f"{k:8s} {v:8.1f} images/s (best of {args.reps})")
    print(f"ratio advgen/minimal = {best['advgen'] / best['minimal']:.3f} (target >= 0.95)")


if __name__ == "__main__":
    main()
