"""Train one defend-stage model from a seed into a folder, outside the pipeline, for benchmarks
that need a defended model a machine's DVC cache lacks (e.g. ``bench_pyautoattack.py`` on
``cnn_pgd_at``): the defend stage's recipe (:func:`advgen.defenses.replicate.train_defended`)
with ``params.yaml``'s values; from the top-level seed on the machine that built the main run it
gives that run's weights.

Usage: python benchmarks/train_defended.py cnn_pgd_at /tmp/models/cnn_pgd_at [--seed 0]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from advgen.config import load_params, load_section
from advgen.defenses.params import DefendConfig
from advgen.defenses.replicate import train_defended
from advgen.evaluation import eval_set
from advgen.models import save_model
from advgen.schema import TrainConfig, dataset
from advgen.utils import deterministic_kernels, resolve_device


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("name", help="an entry of defend.defenses")
    ap.add_argument("out", type=Path, help="the model folder to write (model.safetensors + model.json)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    params = load_params()
    deterministic_kernels()
    train, defend = load_section(TrainConfig, params, "train"), load_section(DefendConfig, params, "defend")
    base = train.spec(defend.base)
    start = time.perf_counter()
    model, acc = train_defended(dataset(params), train, defend, args.name, args.seed, resolve_device(params["device"]))
    args.out.mkdir(parents=True, exist_ok=True)
    x, _ = eval_set(dataset(params), 1, 0, base.resolution)  # (1, C, H, W): the shape the model takes
    save_model(model.cpu(), args.out, {"name": args.name, "arch": base.arch, "arch_kwargs": base.arch_kwargs,
                                       "dataset": dataset(params), "in_shape": list(x.shape[1:]), "num_classes": 10,
                                       "seed": args.seed, "profile": params["profile"],
                                       "defense": {**defend.spec(args.name).config(), "base": defend.base}})
    print(f"{args.name} seed {args.seed}: test accuracy {acc:.4f}, {time.perf_counter() - start:.0f} s -> {args.out}")


if __name__ == "__main__":
    main()
