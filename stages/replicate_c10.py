"""Stage replicate_c10: C10 from one seed of params ``replicate.seeds``.

Usage: ``python stages/replicate_c10.py <seed>``. Poisons, trains and scores the configs C10
judges, and their clean twin, from that seed (:func:`advgen.backdoors.replicate.c10_seed`).
With ``train.nproc > 1`` it runs under torchrun like ``train``; only rank 0 scores and writes.
Writes the models under ``models/replicate/c10/<seed>/``,
``reports/replicate/c10/<seed>/metrics.json`` and its headline.
"""
from __future__ import annotations

import sys

from advgen import stage
from advgen.backdoors.params import BackdoorDefenseConfig, PoisonConfig
from advgen.backdoors.replicate import c10_seed
from advgen.config import load_section
from advgen.seeds import headline as hl
from advgen.seeds.store import run_stage, start, write


def main(params: dict, seed: int) -> None:
    run = start(params, seed)
    if run is None:  # ran under torchrun
        return
    bd = load_section(BackdoorDefenseConfig, params, "backdoor_defense")
    rep = c10_seed(stage.dataset(params), run.train, load_section(PoisonConfig, params, "poison"), run.replicate.c10_configs,
                   bd.reference, seed=seed, eval_seed=run.common.seed, n_eval=bd.n_eval,
                   device=run.device, rank=run.rank)
    if rep is None:  # not rank 0: only rank 0 writes
        return
    write("c10", seed, rep.models, rep.metrics, run.common.profile, hl.c10)


if __name__ == "__main__":
    run_stage("c10", main, sys.argv)
