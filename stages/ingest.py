"""Stage ingest: fetch a dataset from its mirrors, verify, parse, write data/prepared/."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from advgen import stage
from advgen.config import from_dict, require, section
from advgen.data import DATASETS, FetchPolicy, ingest
from advgen.utils import atomic_write_json


@dataclass
class IngestConfig:
    dataset: str
    mirrors: list[str] = field(default_factory=list)  # empty: the dataset's own list
    timeout_s: float = 30.0
    retries: int = 3
    backoff_s: float = 1.0
    max_bytes: int = 200_000_000

    def validate(self) -> None:
        known = sorted(DATASETS) + ["digits"]
        require(self.dataset in known, "ingest.dataset", f"must be one of {known}, found {self.dataset!r}")
        require(self.timeout_s > 0, "ingest.timeout_s", f"must be > 0, found {self.timeout_s}")
        require(self.retries >= 1, "ingest.retries", f"must be >= 1, found {self.retries}")
        require(self.backoff_s >= 0, "ingest.backoff_s", f"must be >= 0, found {self.backoff_s}")
        require(self.max_bytes > 0, "ingest.max_bytes", f"must be > 0, found {self.max_bytes}")


def main(params: dict) -> None:
    stage.common(params)  # validates the top-level keys
    cfg = from_dict(IngestConfig, section(params, "ingest"), "ingest")
    policy = FetchPolicy(cfg.timeout_s, cfg.retries, cfg.backoff_s, cfg.max_bytes)
    manifest = ingest(cfg.dataset, Path("data/raw") / cfg.dataset, Path("data/prepared") / cfg.dataset,
                      policy, mirrors=cfg.mirrors or None)
    metrics = {"dataset": cfg.dataset,
               **{f"{split}_count": info["count"] for split, info in manifest["splits"].items()},
               "class_histogram": {s: i["class_histogram"] for s, i in manifest["splits"].items()}}
    atomic_write_json("reports/ingest/metrics.json", metrics)


if __name__ == "__main__":
    stage.run("ingest", main, "reports/cost/ingest.json")
