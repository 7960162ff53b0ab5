"""Stage split_view: a ``cnn`` trained on each scraped set (``data/scraped/<purchase>_<policy>``),
scored like the backdoors area scores its poisoned models: clean accuracy and attack success
rate (triggered source-class test images classified as the target) with 95% intervals, beside
the rate of its clean twin (the same recipe on the images the index published, as published)
on the same triggered images: the confusion no poison explains.
Writes ``reports/split_view/metrics.json`` and the weights under ``models/split_view/``. With
``train.nproc > 1`` it trains under torchrun like the train stage (only rank 0 writes).
"""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from advgen import headline, stage
from advgen.backdoors.evaluation import backdoor_metrics
from advgen.config import load_section
from advgen.io import atomic_dir, atomic_write_json
from advgen.models import save_model
from advgen.schema import TrainConfig
from advgen.scrape import experiment as ex
from advgen.scrape import headline as hl
from advgen.scrape.index import read_index
from advgen.scrape.params import ScrapeConfig
from advgen.training import setup
from advgen.utils import deterministic_kernels, round_floats


def main(params: dict) -> None:
    common = stage.common(params)
    cfg = load_section(ScrapeConfig, params, "scrape")
    train = load_section(TrainConfig, params, "train")
    deterministic_kernels()
    started = setup(train.nproc, common.device)
    if started is None:  # it ran under torchrun
        return
    rank, device = started
    dataset = stage.dataset(params)
    ev = ex.triggered_eval(dataset, cfg.target, cfg.source, cfg.trigger_size, cfg.n_test, common.seed)
    recipe = dict(epochs=cfg.epochs, batch_size=train.batch_size, lr=train.lr, weight_decay=train.weight_decay,
                  seed=common.seed, device=device)
    out = {"target": cfg.target, "source": cfg.source, "epochs": cfg.epochs, "n_test": len(ev.clean_y),
           "n_triggered": len(ev.trig_y), "sets": {}}
    published = ex.published_set(dataset, read_index("data/index/index.parquet"))
    sets = {"clean": published, **{name: ex.scraped_set(Path("data/scraped") / name) for name in cfg.datasets()}}
    with (atomic_dir(Path("models/split_view")) if rank == 0 else contextlib.nullcontext()) as weights:
        for name, (x, y) in sets.items():
            model = ex.train_cnn(x, y, ev, **recipe)
            if rank != 0:
                continue
            scores = backdoor_metrics(ev.score(model, device), ev)
            if name == "clean":
                out["clean"] = {**scores, "n_kept": len(y)}
            else:
                stats = json.loads((Path("reports/scrape") / name / "stats.json").read_text())
                out["sets"][name] = {**scores, **{k: stats[k] for k in (
                    "purchase", "fraction", "policy", "n_kept", "n_bought", "poison_entered", "benign_rejected",
                    "drifted", "drifted_kept")}}
            (weights / name).mkdir()
            save_model(model.cpu(), weights / name, {"name": name, "arch": "cnn", "arch_kwargs": {}, "in_shape": [1, 28, 28],
                                                     "num_classes": 10, "data": "index" if name == "clean" else f"scraped/{name}",
                                                     "seed": common.seed, "profile": common.profile})
    if rank != 0:
        return
    out = round_floats(out)
    atomic_write_json("reports/split_view/metrics.json", out)
    headline.write("split_view", hl.split_view(out))


if __name__ == "__main__":
    # Under torchrun the launching process records the cost, children included.
    stage.run("split_view", main, None if "LOCAL_RANK" in os.environ else "reports/cost/split_view.json")
