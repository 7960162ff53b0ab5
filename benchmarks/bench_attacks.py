"""Attack throughput: advgen's PGD-20 (L-inf) against torchattacks' PGD, same model, batch and device.

Prints images/s for each and the ratio advgen / torchattacks (target >= 1.0), then the
Square Attack's queries per second (eps=0.02, 500-query budget). Uses models/cnn when the pipeline has produced it,
else a freshly initialised cnn (throughput does not depend on the weights).

Usage: python benchmarks/bench_attacks.py [--batch 256] [--reps 3] [--device auto]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from advgen.attacks import PGD, Square
from advgen.models import build_model, load_model
from advgen.utils import resolve_device


def best_time(fn, reps: int, sync) -> float:
    times = []
    for _ in range(reps):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    import torchattacks

    dev = resolve_device(args.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    path = Path("models/cnn")
    model = load_model(path, dev) if path.is_dir() else build_model("cnn", (1, 28, 28), 10).to(dev).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch, 1, 28, 28, generator=gen).to(dev)
    y = torch.randint(0, 10, (args.batch,), generator=gen).to(dev)
    eps, steps = 0.1, 20
    ours = PGD(model, eps, steps=steps, alpha=2.5 * eps / steps, generator=torch.Generator(dev).manual_seed(0))
    ref = torchattacks.PGD(model, eps=eps, alpha=2.5 * eps / steps, steps=steps, random_start=True)
    ours(x, y)  # warm-up
    ref(x, y)
    t_ours = best_time(lambda: ours(x, y), args.reps, sync)
    t_ref = best_time(lambda: ref(x, y), args.reps, sync)
    print(f"device {dev}, batch {args.batch}, PGD-{steps} L-inf eps={eps}")
    print(f"advgen       {args.batch / t_ours:9.1f} images/s")
    print(f"torchattacks {args.batch / t_ref:9.1f} images/s")
    print(f"ratio advgen/torchattacks = {t_ref / t_ours:.3f} (target >= 1.0)")
    sq = Square(model, 0.02, n_queries=500, generator=torch.Generator(dev).manual_seed(0))
    with torch.no_grad():
        own = model(x).argmax(1)  # every image starts "correct"; a small eps keeps most of them attacked
    t = best_time(lambda: sq(x, own), 1, sync)
    print(f"Square Attack: {sq.queries / t:9.1f} queries/s ({sq.queries} queries in {t:.2f} s)")


if __name__ == "__main__":
    main()
