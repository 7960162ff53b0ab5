"""Split-view poisoning end to end: scrape the published index from the simulated web for each
attacker purchase, judge every item under each integrity policy, write each scraped training set
in ingest's format, then train a ``cnn`` on each and score its clean accuracy and attack success.

The downloads of one purchase are shared by the policies (a policy only judges bytes already
downloaded, so scraping three times would fetch the same bytes three times). They are cached in
shards (``data/scrape_cache/<purchase>/shard_NNNNN.*``, img2dataset's unit): a rerun after a
kill fetches only the shards that are missing, and a shard is reused only when its URLs, the web
and the scraper settings are the ones that wrote it.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..io import atomic_dir, atomic_write_bytes, atomic_write_text, dumps
from .index import Index
from .scraper import STATUSES, Fetched, ScraperConfig, judge, scrape
from .web import SimulatedWeb, WebPlan, WebSpec, plan_web


def shard_key(urls: list[str], spec: WebSpec, cfg: ScraperConfig) -> str:
    """What a cached shard was fetched with; a shard is reused only under the same key."""
    return hashlib.sha256(dumps({"urls": urls, "web": asdict(spec), "scraper": asdict(cfg)}).encode()).hexdigest()


def _load_shard(folder: Path, k: int, key: str) -> list[Fetched] | None:
    meta_path, img_path = folder / f"shard_{k:05d}.json", folder / f"shard_{k:05d}.safetensors"
    if not (meta_path.is_file() and img_path.is_file()):
        return None
    meta = json.loads(meta_path.read_text())
    if meta.get("key") != key:
        return None
    images = load_file(str(img_path))["images"].numpy()
    return [Fetched(s, d, images[i] if s == "ok" else None, h, p)
            for i, (s, d, h, p) in enumerate(zip(meta["status"], meta["detail"], meta["sha256"], meta["phash"]))]


def _save_shard(folder: Path, k: int, key: str, fetched: list[Fetched], shape: tuple[int, int]) -> None:
    images = np.stack([f.image if f.image is not None else np.zeros(shape, np.uint8) for f in fetched])
    tmp = folder / f".shard_{k:05d}.safetensors.tmp"
    save_file({"images": torch.from_numpy(images)}, str(tmp))
    tmp.replace(folder / f"shard_{k:05d}.safetensors")  # the images first: the JSON marks the shard done
    meta = {"key": key, "status": [f.status for f in fetched], "detail": [f.detail for f in fetched],
            "sha256": [f.sha256 for f in fetched], "phash": [f.phash for f in fetched]}
    atomic_write_text(folder / f"shard_{k:05d}.json", dumps(meta))


def scrape_sharded(index: Index, web: SimulatedWeb, cfg: ScraperConfig, cache: Path, shard_size: int,
                   progress: bool = False) -> tuple[list[Fetched], int]:
    """Every URL of ``index`` from ``web``, shard by shard, reusing the shards of ``cache`` that
    were fetched with the same URLs, web and settings. Returns the results in index order and the
    number of shards fetched now."""
    cache.mkdir(parents=True, exist_ok=True)
    out: list[Fetched] = []
    fetched_now = 0
    for k, start in enumerate(range(0, len(index), shard_size)):
        urls = index.url[start:start + shard_size]
        key = shard_key(urls, web.spec, cfg)
        shard = _load_shard(cache, k, key)
        if shard is None:
            shard = scrape(urls, web.resolver(), cfg, progress=progress)
            _save_shard(cache, k, key, shard, cfg.shape)
            fetched_now += 1
        out += shard
    return out, fetched_now


@dataclass
class Judged:
    """One purchase under one policy: every item's final status, and what was kept."""

    status: list[str]
    keep: np.ndarray  # (N,) bool


def judge_all(index: Index, fetched: list[Fetched], policy: str, max_distance: int) -> Judged:
    status = [judge(f, index.sha256[i], index.phash[i], policy, max_distance) for i, f in enumerate(fetched)]
    return Judged(status, np.array([s == "ok" for s in status]))


def stats(index: Index, plan: WebPlan, judged: Judged) -> dict:
    """Status counts (img2dataset's stats) and the experiment's figures: poisoned images that
    entered the training set, and benign items the policy rejected although they downloaded."""
    counts = Counter(judged.status)
    bought = np.zeros(len(index), bool)
    bought[plan.bought_items] = True
    rejected = np.array([s in ("hash_mismatch", "phash_mismatch") for s in judged.status])
    drift = plan.drift > 0
    return {"n_index": len(index), "n_kept": int(judged.keep.sum()),
            "status": {s: int(counts.get(s, 0)) for s in STATUSES},
            "n_bought": int(bought.sum()), "poison_entered": int((judged.keep & bought).sum()),
            "benign_rejected": int((rejected & ~bought).sum()),
            "drifted": int(drift.sum()), "drifted_kept": int((judged.keep & drift).sum()),
            "domains": dict(sorted(Counter(plan.state.values()).items()))}


def status_tsv(index: Index, fetched: list[Fetched], judged: Judged) -> str:
    """One row per item that was not kept: id, url, status, detail (the kept ones are the rest)."""
    rows = ["id\turl\tstatus\tdetail"]
    for i, (f, s) in enumerate(zip(fetched, judged.status)):
        if s != "ok":
            rows.append(f"{i}\t{index.url[i]}\t{s}\t{(f.detail if s == f.status else s).replace(chr(9), ' ')}")
    return "\n".join(rows) + "\n"


def write_dataset(folder: Path, index: Index, fetched: list[Fetched], judged: Judged, test: tuple[torch.Tensor, torch.Tensor],
                  classes: list[str], provenance: dict) -> None:
    """The kept items as a dataset in ingest's format (``train``: the scraped images with the
    index's labels; ``test``: the clean test split) and ``status.tsv`` (every item not kept,
    with its status and reason: img2dataset's per-item record), written atomically."""
    from ..data import write_splits

    kept = np.flatnonzero(judged.keep)
    images = np.stack([fetched[i].image for i in kept])[:, None] if len(kept) else np.zeros((0, 1, 28, 28), np.uint8)
    labels = index.label[kept]
    with atomic_dir(folder) as tmp:
        splits = write_splits(tmp, {"train": (images, labels), "test": (test[0].numpy(), test[1].numpy())}, classes)
        manifest = {"classes": classes, "splits": splits, "scrape": provenance, "index_ids_sha256":
                    hashlib.sha256(kept.astype(np.int64).tobytes()).hexdigest()}
        atomic_write_bytes(tmp / "manifest.json", dumps(manifest).encode())
        atomic_write_text(tmp / "status.tsv", status_tsv(index, fetched, judged))


def web_spec(cfg, seed: int, purchase: float) -> WebSpec:
    """The web at download time for one purchase fraction (``cfg``: the ``scrape`` section)."""
    w = {k: float(cfg.web.get(k, 0.0)) for k in ("p_expired", "p_slow", "p_flaky", "p_robots", "p_opt_out", "p_drift",
                                                  "slow_ms")}
    return WebSpec(seed=seed, purchase=float(purchase), target=cfg.target, source=cfg.source,
                   trigger_size=cfg.trigger_size, **w)


def scraper_config(cfg, shape: tuple[int, int]) -> ScraperConfig:
    return ScraperConfig(shape=shape, **cfg.scraper)


def serve(index: Index, images: np.ndarray, labels: np.ndarray, spec: WebSpec, latency_ms: float = 0.0) -> SimulatedWeb:
    """The simulated web of ``spec`` for ``index`` (a context manager: started on enter)."""
    return SimulatedWeb(index, images, plan_web(index, spec, labels), spec, latency_ms)


def triggered_eval(dataset: str, target: int, source: int, trigger_size: int, n_test: int, seed: int):
    """The clean test images and the triggered source-class test images (the ASR population),
    as the backdoors area scores them (:class:`advgen.backdoors.evaluation.EvalSet`)."""
    from ..backdoors.evaluation import EvalSet
    from ..data import load_split, subset, to_float
    from .web import triggered

    x, y = load_split(Path("data/prepared") / dataset, "test")
    x, y = subset(x, y, n_test, torch.Generator().manual_seed(seed))
    src = x[y == source]  # (M, 1, H, W) uint8
    trig = np.stack([triggered(img[0].numpy(), trigger_size) for img in src])[:, None] if len(src) else src.numpy()
    return EvalSet(to_float(x), y, to_float(torch.from_numpy(trig)), y[y == source], target)


def train_cnn(x: torch.Tensor, y: torch.Tensor, ev, *, epochs: int, batch_size: int, lr: float, weight_decay: float,
              seed: int, device: torch.device):
    """A ``cnn`` trained on ``x`` (N, 1, H, W) uint8 and ``y`` (N,) with the train stage's loop and
    recipe (the same seed for every set: the sets differ, the recipe does not)."""
    from ..data import to_float
    from ..models import build_model
    from ..training import fit

    gen = torch.Generator().manual_seed(seed)
    model = build_model("cnn", tuple(x.shape[1:]), 10, generator=gen)
    fit(model, (to_float(x), y), (ev.clean_x, ev.clean_y), epochs=epochs, batch_size=batch_size, lr=lr,
        weight_decay=weight_decay, num_classes=10, generator=gen, device=device)
    return model.eval()


def scraped_set(folder: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The kept images (N, 1, H, W) uint8 and their index labels of a scraped set."""
    from ..data import load_split

    return load_split(folder, "train")


def published_set(dataset: str, index: Index) -> tuple[torch.Tensor, torch.Tensor]:
    """What the index published, as it was published: every indexed training image (N, 1, H, W)
    uint8 with its index label; the clean twin of the scraped sets trains on it."""
    from ..data import load_split

    x, _ = load_split(Path("data/prepared") / dataset, "train")
    positions = torch.from_numpy(np.load(Path("data/index/positions.npy")))
    return x[positions], torch.from_numpy(index.label.astype(np.int64))
