"""Stage report: collect every stage's metrics into reports/summary.md, metrics.json, claims.json."""
from __future__ import annotations

from advgen import stage
from advgen.report import build_report
from advgen.utils import atomic_write_json, atomic_write_text, round_floats


def main(params: dict) -> None:
    stage.common(params)  # validates the top-level keys
    summary, claims, headline = build_report("reports")
    atomic_write_json("reports/claims.json", claims)
    atomic_write_json("reports/metrics.json", round_floats(headline))
    atomic_write_text("reports/summary.md", summary)


if __name__ == "__main__":
    stage.run("report", main, None)  # no cost file: the report would read its own
