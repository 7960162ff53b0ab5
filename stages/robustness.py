"""Stage robustness: per model, the worst case as a cascade over every attack, and the
automatic sanity checks.

Usage: ``python stages/robustness.py <model>``. A failed check is printed loudly, recorded in
the metrics and shown in the report; it never fails the stage silently or is dropped.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from advgen import headline, stage
from advgen.attacks import headline as hl
from advgen.attacks.params import load_attack_config
from advgen.attacks.robustness import cascade_config, evaluate, paired_vs_base
from advgen.defenses.params import defended_base
from advgen.evaluation import eval_set, load_for_attack
from advgen.io import tsv
from advgen.utils import (
    atomic_write_json,
    atomic_write_text,
    deterministic_kernels,
    generator,
    resolve_device,
    round_floats,
)


def load_attack_results(name: str, attacks: list[str]) -> dict[str, tuple[list[float], torch.Tensor]]:
    """attack -> (eps list, correct (n_eps, N) bool) from ``data/attacks/<name>/``."""
    out = {}
    for attack in attacks:
        data = load_file(str(Path("data/attacks") / name / f"{attack}.safetensors"))
        out[attack] = ([round(e, 9) for e in data["eps"].tolist()], data["correct"].bool())
    return out


def load_transfer(name: str) -> tuple[dict[str, torch.Tensor], float | None]:
    """source -> correct (N,) of PGD crafted on every other model and evaluated on ``name``."""
    meta = json.loads(Path("reports/transfer/metrics.json").read_text())
    if name not in meta["matrix"]:
        return {}, None
    correct = load_file("data/transfer/correct.safetensors")
    return {s: correct[f"{s}->{name}"].bool() for s in meta["matrix"] if s != name}, meta["eps"]


def main(params: dict, name: str) -> None:
    common = stage.common(params)
    cfg = load_attack_config(params, defended=defended_base(params, name) is not None)
    deterministic_kernels()
    device = resolve_device(common.device)
    model = load_for_attack(name, device)
    x, y = eval_set(stage.dataset(params), cfg.n_eval, common.seed, model.sidecar["in_shape"][-1])
    per_attack = load_attack_results(name, [a for a in cfg.attacks if a != "square"])
    transfer, t_eps = load_transfer(name)
    result = evaluate(model, x.to(device), y.to(device), eps_linf=cfg.eps_linf, per_attack=per_attack,
                      transfer=transfer, transfer_eps=t_eps, cfg=cascade_config(cfg), convergence_eps=cfg.convergence_eps,
                      check_eps=cfg.check_eps, tolerance=cfg.tolerance, pgd_steps=cfg.pgd_steps,
                      generator=generator(common.seed), log=lambda s: print(f"[robustness {name}] {s}", file=sys.stderr))
    base = defended_base(params, name)
    if base is not None:  # C9: the defended model against its base on the same images
        result.metrics["vs_base"] = {"base": base, "eps": paired_vs_base(
            load_for_attack(base, device), x.to(device), y.to(device), result.worst_case, cfg.pgd_steps,
            generator(common.seed + 1))}
    for c in result.metrics["checks"]:
        if not c["passed"]:
            print(f"!!! SANITY CHECK FAILED [{name}] {c['name']}: {c['detail']}", file=sys.stderr)
    out = Path("reports/robustness") / name
    metrics = round_floats({"model": name, **result.metrics})
    atomic_write_json(out / "metrics.json", metrics)
    headline.write(f"robustness/{name}", hl.robustness(metrics))
    atomic_write_text(out / "linf.tsv", tsv(result.linf_rows, "%.6f"))
    atomic_write_text(out / "l2.tsv", tsv(result.l2_rows, "%.6f"))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python stages/robustness.py <model>")
    model_name = sys.argv[1]
    stage.run("robustness", lambda p: main(p, model_name), Path("reports/cost/robustness") / f"{model_name}.json")
