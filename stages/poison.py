"""Stage poison: one poisoned copy of the training set per entry of params ``poison.configs``.

Usage: ``python stages/poison.py``. For each config ``<name>`` it writes ``data/poisoned/<name>/``
in the format the ingest stage writes (the train stage trains on it when a model says
``data: poisoned/<name>``), ``data/backdoor/<name>/`` (the poison index and the triggered test
set, for scoring only) and ``reports/poison/<name>/`` (a summary and a PNG of clean and
poisoned examples).

One stage for every config rather than a DVC foreach: poisoning takes 0.1 s per config (clean
label ~20 s) against about 1 s of DVC and start-up per stage, and the train stages still rerun only for the
configs whose dataset changed (the others are rewritten byte for byte).
"""
from __future__ import annotations

from pathlib import Path

import torch

from advgen import stage
from advgen.backdoors.dataset import check_all, examples_png, poison_dataset, write_poisoned
from advgen.backdoors.params import PoisonConfig
from advgen.config import load_section
from advgen.data import dataset_dir
from advgen.evaluation import load_for_attack
from advgen.utils import atomic_write_json, deterministic_kernels, resolve_device


def poison(params: dict) -> None:
    common = stage.common(params)
    cfg = load_section(PoisonConfig, params, "poison")
    specs = {name: cfg.spec(name) for name in cfg.configs}
    clean = dataset_dir(stage.dataset(params))
    check_all(specs, clean)  # every config, before any dataset is written
    deterministic_kernels()
    model = load_for_attack(cfg.model, resolve_device(common.device)) \
        if any(s.attack == "clean_label" for s in specs.values()) else None
    for name, spec in specs.items():
        # One seed for every config: configs that differ only in rate poison nested sets of images.
        gen = torch.Generator().manual_seed(common.seed)
        p = poison_dataset(name, spec, clean, gen,
                           model if spec.attack == "clean_label" else None, cfg.batch_size, cfg.n_train, cfg.n_test)
        write_poisoned(p, Path("data/poisoned") / name, Path("data/backdoor") / name)
        out = Path("reports/poison") / name
        kinds = {k: p.result.kinds.count(k) for k in sorted(set(p.result.kinds))}
        atomic_write_json(out / "metrics.json", {"name": name, **p.manifest["poisoning"], "kinds": kinds,
                                                 "n_train": len(p.result.labels), "n_test": len(p.test[1]),
                                                 **p.result.extra})
        examples_png(p, out / "examples.png")


if __name__ == "__main__":
    stage.run("poison", poison, Path("reports/cost/poison.json"))
