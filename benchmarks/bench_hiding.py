"""What hiding information buys, in queries: one model behind three prediction APIs (full
scores, scores rounded to --decimals, the top-1 label), each attacked by what it leaves an
attacker (advgen.defenses.hiding: Square on the scores; HopSkipJump L-inf and L2 and the
Boundary Attack on the label), at one L-inf eps, per query budget.

Prints, per API and attack, accuracy at eps after each budget of queries per image (with the
lecture's rate limit of 3 queries a minute, also in hours per image), and for the L2 attacks the
median L2 distance of their adversarials; then the wall time of each.

Usage: python benchmarks/bench_hiding.py [--model models/cnn] [--n 100] [--eps 0.1]
       [--decimals 2] [--budgets 10 100 1000 10000] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from advgen.defenses.hiding import hiding
from advgen.evaluation import eval_set
from advgen.models import load_model
from advgen.utils import deterministic_kernels


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="models/cnn", help="a model folder of the pipeline (model.safetensors + model.json)")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--eps", type=float, default=0.1)
    p.add_argument("--decimals", type=int, default=2)
    p.add_argument("--budgets", type=int, nargs="+", default=[10, 100, 1000, 10000])
    p.add_argument("--queries-per-minute", type=float, default=3.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write the metrics here")
    args = p.parse_args()
    deterministic_kernels()
    model = load_model(args.model)
    x, y = eval_set(args.dataset, args.n, args.seed, model.sidecar["in_shape"][-1])
    start = time.perf_counter()
    m = hiding(model, x, y, eps=args.eps, decimals=args.decimals, budgets=args.budgets, p_init=0.8,
               queries_per_minute=args.queries_per_minute, seed=args.seed,
               log=lambda s: print(s, file=sys.stderr))
    wall = time.perf_counter() - start
    b = [str(v) for v in m["budgets"]]
    print(f"model {args.model} (weights sha256 {model.sidecar.get('weights_sha256', '?')[:12]}), n={m['n']}, "
          f"clean {100 * m['clean_accuracy']:.1f}%, eps {m['eps']:g} (L-inf), rounded to {m['decimals']} decimals")
    print("| API | attack | " + " | ".join(f"{v} q ({m['hours_per_image'][v]:.2g} h)" for v in b) + " | wall s |")
    print("|---|---|" + "---|" * (len(b) + 1))
    for r in m["rows"]:
        if "accuracy" in r:
            cells = [f"{100 * r['accuracy'][v]:.0f}% [{100 * r['accuracy_ci95'][v][0]:.0f}, "
                     f"{100 * r['accuracy_ci95'][v][1]:.0f}]" for v in b]
        else:
            cells = ["L2 " + ("—" if r["median_l2"][v] is None else f"{r['median_l2'][v]:.2f}") for v in b]
        print(f"| {r['api']} | {r['attack']} | " + " | ".join(cells) + f" | {r['seconds']:.0f} |")
    for api, w in m["apis"].items():
        cells = [f"{100 * w['accuracy'][v]:.0f}% [{100 * w['accuracy_ci95'][v][0]:.0f}, "
                 f"{100 * w['accuracy_ci95'][v][1]:.0f}]" for v in b]
        print(f"| **{api}** | worst case ({' + '.join(w['attacks'])}) | " + " | ".join(cells) + " | |")
    print(f"total wall {wall:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": args.model, **m}, f, indent=1)


if __name__ == "__main__":
    main()
