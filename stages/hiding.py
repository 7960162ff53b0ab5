"""Stage hiding: output layers that hide information, measured by the threat model each creates
(:func:`advgen.defenses.hiding.evaluate_models`).

Usage: ``python stages/hiding.py``. The models are those of ``replicate_c9@<hiding.seed>``:
``defend.base`` and ``replicate.c9`` (the lecture's FGSM training), each behind three APIs (full
scores, scores rounded to ``hiding.decimals``, the top-1 label) on the attack stages' first
``hiding.n_eval`` evaluation images, attacked at ``hiding.eps`` (L-inf) by Square on the scores
and HopSkipJump / the Boundary Attack on the label, per query budget of ``hiding.budgets``, with
the hours each budget takes at ``attack.queries_per_minute``. Writes
``reports/hiding/metrics.json``, ``reports/hiding/curve.tsv`` (each API's worst-case accuracy
against queries, per model) and ``reports/headline/hiding.json``; its cost, with each attack's
wall seconds, goes to ``reports/cost/hiding.json``.
"""
from __future__ import annotations

import sys
from pathlib import Path

from advgen import headline, stage
from advgen.attacks.params import load_attack_config
from advgen.config import load_section
from advgen.defenses import headline as hl
from advgen.defenses.hiding import evaluate_models
from advgen.defenses.params import DefendConfig, HidingConfig
from advgen.evaluation import eval_set, load_for_attack
from advgen.io import tsv
from advgen.seeds.params import ReplicateConfig
from advgen.utils import atomic_write_json, atomic_write_text, deterministic_kernels, resolve_device, round_floats

OUT = Path("reports/hiding")


def main(params: dict) -> dict:
    common = stage.common(params)
    cfg = load_section(HidingConfig, params, "hiding")
    base = load_section(DefendConfig, params, "defend").base
    defended = load_section(ReplicateConfig, params, "replicate").c9
    qpm = load_attack_config(params).queries_per_minute
    deterministic_kernels()
    device = resolve_device(common.device)
    folder = f"replicate/c9/{cfg.seed}"
    models = {n: load_for_attack(f"{folder}/{n}", device) for n in (base, defended)}
    x, y = eval_set(stage.dataset(params), cfg.n_eval, common.seed, models[base].sidecar["in_shape"][-1])
    metrics, curve, seconds = evaluate_models(models, x.to(device), y.to(device), eps=cfg.eps, decimals=cfg.decimals,
                                     budgets=cfg.budgets, p_init=cfg.p_init, queries_per_minute=qpm, seed=common.seed,
                                     batch_size=cfg.batch_size, log=lambda s: print(f"[hiding] {s}", file=sys.stderr))
    metrics = round_floats({"seed": cfg.seed, "folder": f"models/{folder}", "base": base, "defended": defended,
                            **metrics})
    atomic_write_json(OUT / "metrics.json", metrics)
    atomic_write_text(OUT / "curve.tsv", tsv(curve, "%.6f"))
    headline.write("hiding", hl.hiding(metrics))
    return {"attack_seconds": round_floats(seconds, 1)}  # timings go to the cost record, never to metrics


if __name__ == "__main__":
    stage.run("hiding", main, Path("reports/cost/hiding.json"))
