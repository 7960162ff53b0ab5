"""Stage report: collect every stage's metrics from reports/ into one document and write it as
reports/summary.md and reports/index.html, with reports/claims.json, the plots in
reports/figures/, the long tables behind `dvc plots` in reports/plots/ and the report's own
headline metrics in reports/headline/report.json; then rewrites the results section of README.md
(claims, verdicts and headline figures, :mod:`advgen.glance`) when it has one."""
from __future__ import annotations

from pathlib import Path

from advgen import areas, glance, stage
from advgen.plotdata import write_plot_data
from advgen.report import make_report


def main(params: dict) -> None:
    common = stage.common(params)  # validates the top-level keys
    report = make_report("reports", areas.report_parts(), areas.claim_registries())
    report.write("reports")
    write_plot_data("reports", "reports/plots")  # long tables for dvc.yaml's top-level plots
    # Not a DVC output (git keeps the README): the section is current whenever claims.json is,
    # which tests/test_glance.py checks on the committed files.
    readme = Path("README.md")
    if readme.is_file() and glance.START in readme.read_text():
        glance.update_readme(readme, report.claims, report.links, common.profile)


if __name__ == "__main__":
    stage.run("report", main, None)  # no cost file: the report would read its own
