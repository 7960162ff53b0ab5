"""Stage report: collect every stage's metrics from reports/ into one document and write it as
reports/summary.md and reports/index.html, with reports/claims.json, the plots in
reports/figures/, the long tables behind `dvc plots` in reports/plots/ and the report's own
headline metrics in reports/headline/report.json."""
from __future__ import annotations

from advgen import areas, stage
from advgen.plotdata import write_plot_data
from advgen.report import make_report


def main(params: dict) -> None:
    stage.common(params)  # validates the top-level keys
    make_report("reports", areas.report_parts(), areas.claim_registries()).write("reports")
    write_plot_data("reports", "reports/plots")  # long tables for dvc.yaml's top-level plots


if __name__ == "__main__":
    stage.run("report", main, None)  # no cost file: the report would read its own
