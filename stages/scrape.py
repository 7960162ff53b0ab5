"""Stage scrape: download the published index from the simulated web, once per attacker purchase
(``scrape.purchases``), and keep what each integrity policy (``scrape.policies``) accepts.

For every purchase: the seeded web of that purchase is served on 127.0.0.1 while the scraper
fetches every URL (cached in resumable shards, ``data/scrape_cache/<purchase>/``); each policy
then judges the same downloads. Writes ``data/scraped/<purchase>_<policy>/`` in ingest's format
(``train: scraped/<name>`` trains on it), with ``status.tsv`` (every item not kept, with its
status and reason), and ``reports/scrape/<purchase>_<policy>/stats.json`` (status counts,
poisoned images that entered, benign items rejected). Timings go to the cost file only.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from advgen import headline, stage
from advgen.config import load_section
from advgen.data import load_classes, load_split
from advgen.io import atomic_write_json
from advgen.scrape import experiment as ex
from advgen.scrape import headline as hl
from advgen.scrape.index import read_index
from advgen.scrape.params import ScrapeConfig


def main(params: dict) -> dict:
    common = stage.common(params)
    cfg = load_section(ScrapeConfig, params, "scrape")
    prepared = Path("data/prepared") / stage.dataset(params)
    x, y = load_split(prepared, "train")
    test = load_split(prepared, "test")
    classes = load_classes(prepared)
    index = read_index("data/index/index.parquet")
    positions = torch.from_numpy(np.load("data/index/positions.npy"))
    images = x[positions, 0].numpy()  # (N, H, W): what the index published
    scfg = ex.scraper_config(cfg, tuple(images.shape[1:]))
    timings, summary = {}, {}
    for purchase, fraction in cfg.purchases.items():
        spec = ex.web_spec(cfg, common.seed, fraction)
        start = time.perf_counter()
        with ex.serve(index, images, index.label, spec) as web:
            fetched, shards = ex.scrape_sharded(index, web, scfg, Path("data/scrape_cache") / purchase, cfg.shard_size,
                                                progress=True)
        timings[purchase] = {"seconds": round(time.perf_counter() - start, 3), "shards_fetched": shards,
                             "images_per_s": round(len(index) / max(time.perf_counter() - start, 1e-9), 1)}
        for policy in cfg.policies:
            name = f"{purchase}_{policy}"
            judged = ex.judge_all(index, fetched, policy, cfg.phash_distance)
            stats = {"purchase": purchase, "fraction": fraction, "policy": policy, **ex.stats(index, web.plan, judged)}
            ex.write_dataset(Path("data/scraped") / name, index, fetched, judged, test, classes,
                             {"purchase": purchase, "fraction": fraction, "policy": policy,
                              "phash_distance": cfg.phash_distance, "seed": common.seed})
            atomic_write_json(Path("reports/scrape") / name / "stats.json", stats)
            summary[name] = stats
    headline.write("scrape", hl.scrape(summary))
    return {"scrape": timings}


if __name__ == "__main__":
    stage.run("scrape", main, "reports/cost/scrape.json")
