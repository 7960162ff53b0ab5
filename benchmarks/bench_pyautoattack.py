"""advgen's worst-case cascade, side by side with the original AutoAttack (PyPI ``pyautoattack``,
fra31/auto-attack's code; install it with ``pip install --no-deps pyautoattack``).

For each model folder and eps, on the same images, in the same process: AutoAttack's standard
version (APGD-CE, APGD-T, FAB-T, Square 5,000 queries) and advgen's cascade (FGSM and PGD-20 as
the attack stages run them, then the cascade's white-box attacks, then Square 5,000 queries on the
survivors among the first ``--n-square``) in each ``--versions`` of ``CASCADES``: ``advgen``
(APGD-CE, APGD-T), ``standard`` (+ FAB-T), ``plus`` (+ APGD-DLR). Prints robust accuracy, the
difference to AutoAttack in points and wall seconds. Target: advgen's worst case <= AutoAttack's
+ 0.5 points at every eps.

Usage: python benchmarks/bench_pyautoattack.py --model models/cnn [--model models/cnn_pgd_at]
       [--n 200] [--eps 0.025 0.05 0.1] [--versions advgen standard]
"""
from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from advgen.attacks.fgsm import FGSM
from advgen.attacks.pgd import PGD
from advgen.attacks.robustness import CascadeConfig, batched, cascade
from advgen.evaluation import eval_set, predict
from advgen.models import load_model
from advgen.utils import deterministic_kernels


def advgen_robust(model, x, y, eps: float, cfg: CascadeConfig, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    known = {"fgsm": predict(model, batched(FGSM(model, eps), x, y)) == y,
             "pgd": predict(model, batched(PGD(model, eps, steps=20, generator=gen), x, y)) == y}
    return cascade(model, x, y, eps, cfg, gen, known_white=known).robust


def autoattack_robust(model, x, y, eps: float, seed: int) -> torch.Tensor:
    from pyautoattack import AutoAttack

    adv, _ = AutoAttack(model, norm="Linf", eps=eps, version="standard", seed=seed).run_standard_evaluation(x, y)
    return predict(model, adv) == y


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append", required=True, help="a model folder (repeat)")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--n-square", type=int, default=200, help="advgen's Square runs on survivors among the first n")
    ap.add_argument("--eps", type=float, nargs="+", default=[0.025, 0.05, 0.1])
    ap.add_argument("--versions", nargs="+", default=["advgen", "standard"])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    deterministic_kernels()
    print("| model | eps | AutoAttack % (s) | " + " | ".join(f"advgen {v} % (s), diff" for v in args.versions) + " |")
    print("|---|---|---|" + "---|" * len(args.versions))
    for path in args.model:
        model = load_model(path)
        x, y = eval_set("fashion-mnist", args.n, args.seed, model.sidecar["in_shape"][-1])
        for eps in args.eps:
            start = time.perf_counter()
            aa = float(autoattack_robust(model, x, y, eps, args.seed).float().mean())
            cells = [f"{100 * aa:.1f} ({time.perf_counter() - start:.0f})"]
            for v in args.versions:
                cfg = dataclasses.replace(CascadeConfig(), n_square=args.n_square, version=v)
                start = time.perf_counter()
                ours = float(advgen_robust(model, x, y, eps, cfg, args.seed).float().mean())
                cells.append(f"{100 * ours:.1f} ({time.perf_counter() - start:.0f}), {100 * (ours - aa):+.1f}")
            print(f"| {path} | {eps:g} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
