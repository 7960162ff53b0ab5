"""Stage ingest: fetch a dataset from its mirrors, verify, parse, write data/prepared/."""
from __future__ import annotations

from pathlib import Path

from advgen import headline, stage
from advgen.config import load_section
from advgen.data import FetchPolicy, ingest
from advgen.schema import IngestConfig
from advgen.utils import atomic_write_json


def main(params: dict) -> None:
    stage.common(params)  # validates the top-level keys
    cfg = load_section(IngestConfig, params, "ingest")
    policy = FetchPolicy(cfg.timeout_s, cfg.retries, cfg.backoff_s, cfg.max_bytes)
    manifest, provenance = ingest(cfg.dataset, Path("data/raw") / cfg.dataset, Path("data/prepared") / cfg.dataset,
                                  policy, mirrors=cfg.mirrors or None)
    # Not in data/prepared: the same bytes from another mirror must not make every stage stale.
    atomic_write_json("reports/ingest/provenance.json", provenance)
    metrics = {"dataset": cfg.dataset,
               **{f"{split}_count": info["count"] for split, info in manifest["splits"].items()},
               "class_histogram": {s: i["class_histogram"] for s, i in manifest["splits"].items()}}
    atomic_write_json("reports/ingest/metrics.json", metrics)
    headline.write("ingest", headline.ingest(metrics))


if __name__ == "__main__":
    stage.run("ingest", main, "reports/cost/ingest.json")
