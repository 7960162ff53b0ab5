"""Stage curate: publish the URL index of the training images (``data/index/index.parquet``).

One row per image (``url, label, sha256, phash, width, height, split``, plus its ``id`` and
``domain``), the URLs spread over ``curate.n_domains`` virtual domains, Zipf-sized within each
class (:mod:`advgen.scrape.index`). This is the dataset as web-scale datasets publish it: a list
of URLs with per-item metadata, fixed at publication time.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from advgen import stage
from advgen.config import load_section
from advgen.data import load_split, subset_index
from advgen.io import atomic_dir, atomic_write_json
from advgen.scrape.index import build_index
from advgen.scrape.params import CurateConfig


def main(params: dict) -> None:
    common = stage.common(params)
    cfg = load_section(CurateConfig, params, "curate")
    x, y = load_split(Path("data/prepared") / stage.dataset(params), "train")
    keep = subset_index(len(y), cfg.n_items, torch.Generator().manual_seed(common.seed))  # sorted positions
    images, labels = x[keep, 0].numpy(), y[keep].numpy()  # (N, H, W) uint8, (N,)
    index = build_index(images, labels, cfg.n_domains, cfg.zipf_exponent, common.seed)
    with atomic_dir(Path("data/index")) as tmp:
        pq.write_table(index.to_table(), tmp / "index.parquet")
        np.save(tmp / "positions.npy", keep.numpy())  # which training image each row is
    sizes = np.bincount(index.domain)
    metrics = {"n_items": len(index), "n_domains": int(len(sizes)), "largest_domain": int(sizes.max()),
               "median_domain": float(np.median(sizes)), "single_image_domains": int((sizes == 1).sum())}
    atomic_write_json("reports/curate/metrics.json", metrics)


if __name__ == "__main__":
    stage.run("curate", main, "reports/cost/curate.json")
