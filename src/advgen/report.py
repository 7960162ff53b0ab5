"""The report: collect every stage's metrics and cost, render tables and the claims table."""
from __future__ import annotations

import json
from pathlib import Path

from .claims import claims_table


def collect(reports: str | Path) -> dict[str, dict]:
    """Map each stage output folder under ``reports`` (e.g. ``train/cnn``) to its metrics and cost."""
    reports = Path(reports)
    out: dict[str, dict] = {}
    for path in sorted(reports.rglob("*.json")):
        if path.parent == reports or path.name not in ("metrics.json", "cost.json"):
            continue
        key = path.parent.relative_to(reports).as_posix()
        out.setdefault(key, {})[path.stem] = json.loads(path.read_text())
    return out


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _cost_cells(entry: dict) -> list[str]:
    cost = entry.get("cost", {})
    return [f"{cost.get('wall_s', float('nan')):.1f}", f"{cost.get('cpu_s', float('nan')):.1f}",
            f"{cost.get('peak_rss_mb', float('nan')):.0f}"]


def summary_metrics(collected: dict, claims: list[dict]) -> dict:
    """The deterministic headline figures (no costs), for ``dvc metrics diff``."""
    train = {k.split("/", 1)[1]: v["metrics"]["test_accuracy"]
             for k, v in collected.items() if k.startswith("train/") and "metrics" in v}
    verdicts = {v: sum(r["verdict"] == v for r in claims) for v in ("supported", "not_supported", "not_measured")}
    return {"test_accuracy": train, "claims": verdicts}


def render(collected: dict, claims: list[dict]) -> str:
    """``reports/summary.md``: dataset, classifiers, cost per stage, claims table."""
    parts = ["# advgen report", ""]
    ingest = collected.get("ingest", {}).get("metrics")
    if ingest:
        parts += ["## Data", "",
                  f"Dataset `{ingest['dataset']}`: {ingest['train_count']} training and "
                  f"{ingest['test_count']} test images (provenance in `data/prepared/{ingest['dataset']}/manifest.json`).",
                  ""]
    train = {k: v for k, v in collected.items() if k.startswith("train/") and "metrics" in v}
    if train:
        rows = [[m["metrics"]["model"], m["metrics"]["arch"], f"{m['metrics']['params']:,}",
                 m["metrics"]["n_train"], m["metrics"]["epochs"], f"{100 * m['metrics']['test_accuracy']:.2f}",
                 f"{m['metrics']['test_loss']:.4f}", *_cost_cells(m)] for m in train.values()]
        parts += ["## Classifiers", "",
                  _table(["model", "arch", "params", "train images", "epochs", "test acc %", "test loss",
                          "wall s", "CPU s", "peak RSS MB"], rows), ""]
        per_class = [[m["metrics"]["model"], *(f"{100 * a:.1f}" for a in m["metrics"]["per_class_accuracy"])]
                     for m in train.values()]
        k = len(next(iter(train.values()))["metrics"]["per_class_accuracy"])
        parts += ["### Per-class test accuracy (%)", "", _table(["model", *map(str, range(k))], per_class), ""]
    costs = [[key, *_cost_cells(v)] for key, v in collected.items() if "cost" in v]
    parts += ["## Cost of each stage", "", "Wall and CPU seconds and peak RSS of the last run of each stage "
              "(these vary from run to run; every other figure is deterministic).", "",
              _table(["stage", "wall s", "CPU s", "peak RSS MB"], costs), ""]
    parts += ["## Claims", "", "Criteria are fixed in `src/advgen/claims.py` before the runs; "
              "a claim the data does not support is reported as such.", "",
              _table(["id", "claim", "experiment", "measured", "criterion", "verdict"],
                     [[r["id"], r["claim"], r["experiment"], r["measured"], r["criterion"], f"**{r['verdict']}**"]
                      for r in claims]), ""]
    return "\n".join(parts)


def build_report(reports: str | Path) -> tuple[str, list[dict], dict]:
    """Return (summary markdown, claims rows, headline metrics) for the folder ``reports``."""
    collected = collect(reports)
    claims = claims_table(collected)
    return render(collected, claims), claims, summary_metrics(collected, claims)
