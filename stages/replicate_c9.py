"""Stage replicate_c9: C9 from one seed of params ``replicate.seeds``.

Usage: ``python stages/replicate_c9.py <seed>``. Trains the defend stage's base and its FGSM
entry (the lecture's recipe) from that seed and compares them at the training eps on the main
run's evaluation images (:func:`advgen.defenses.replicate.c9_seed`). With ``train.nproc > 1`` it runs under torchrun like ``train``; only rank 0 evaluates and writes.
Writes both models under
``models/replicate/c9/<seed>/``, ``reports/replicate/c9/<seed>/metrics.json`` and its headline.
"""
from __future__ import annotations

import sys

from advgen import stage
from advgen.attacks.params import load_attack_config
from advgen.config import load_section
from advgen.defenses.params import DefendConfig
from advgen.defenses.replicate import c9_seed
from advgen.seeds import headline as hl
from advgen.seeds.store import run_stage, start, write


def main(params: dict, seed: int) -> None:
    run = start(params, seed)
    if run is None:  # ran under torchrun
        return
    defend = load_section(DefendConfig, params, "defend")
    rep = c9_seed(stage.dataset(params), run.train, defend, load_attack_config(params, defended=True), run.replicate.c9,
                  seed=seed, eval_seed=run.common.seed, device=run.device, rank=run.rank)
    if rep is None:  # not rank 0: only rank 0 writes
        return
    write("c9", seed, rep.models, rep.metrics, run.common.profile, hl.c9)


if __name__ == "__main__":
    run_stage("c9", main, sys.argv)
