"""The report: collect every stage's metrics, build one document, render it twice.

:func:`make_report` reads the folder ``reports/`` only:

1. :func:`collect` maps each stage output to its metrics (``metrics``), its cost (``cost``,
   from ``reports/cost/``) and the names of its other files (``files``: PNGs, TSVs). The
   report's own outputs are never collected: top-level files (``summary.md``, ``index.html``,
   ``claims.json``) and the folders of :data:`NOT_COLLECTED` (``figures/``, ``headline/``,
   ``params/``, ``plots/``, ``screenshots/``, ``sources/``).
2. The figure builders (the core's :data:`FIGURES`, then each part's ``FIGURES``) turn TSVs
   into PNG plots (``figures/*.png``, bytes made by :mod:`advgen.plots`); their names are added
   to the collected metrics as ``collected["figures"]["files"]`` so that sections can show them.
3. The claims table (:func:`advgen.claims.claims_table` over the registries passed in) and the
   section builders turn the collected metrics into a list of
   :class:`~advgen.document.Section` (title plus blocks: paragraphs, tables, images, bullets),
   in this order: the claims table, the core's :data:`HEAD` sections (data, classifiers), each
   part's ``SECTIONS`` in the order of the parts, the core's :data:`TAIL` (cost).
4. That one document is rendered to Markdown (``summary.md``) and to a static HTML page
   (``index.html``) by :mod:`advgen.document`, which escapes every string in HTML.

This module imports no area: the areas' report modules (``advgen.<area>.report``) import their
helpers from here, and the caller (the report stage, through :mod:`advgen.areas`) passes them in.

An area's report module (a "part")
----------------------------------
A module with two tuples, in order, and optionally a dict::

    SECTIONS = (_defenses, _sanitize)         # (collected: dict) -> list[Section]
    FIGURES = (_curves_figure,)               # (reports: Path, collected: dict) -> {"figures/x.png": bytes}
    CLAIM_SECTIONS = {"C9": DEFENSES_TITLE}   # claim id -> title of the section showing its experiment

A section builder returns ``[]`` when its stage's metrics are absent::

    def _defenses(collected: dict) -> list[Section]:
        m = collected.get("defenses", {}).get("metrics")
        if not m:
            return []          # no metrics yet: no section
        return [Section("Defenses (C9)", [Paragraph("..."), Table(header, rows)])]

Put any text, including data, in blocks as plain strings: the HTML renderer escapes it. Use
:class:`~advgen.document.Cell` for a coloured cell (``Cell("FAIL", cls="fail", strong=True)``)
and :func:`figure_images` (or :class:`~advgen.document.Image` for a PNG under ``reports/``
that exists: check :func:`files`) for images. Format numbers with :func:`num`, :func:`pct` and
:func:`pct_ci`: they print a placeholder, never ``nan``, for a value that is None or NaN. The
claims table links each claim to the section its part names in ``CLAIM_SECTIONS``, when the
document has a section of that title.

Outputs (:data:`OUTPUTS`, written by :meth:`Report.write`): ``summary.md``, ``index.html``,
``claims.json``, ``figures/`` and ``headline/report.json``, the report's own DVC metrics:
scalars only, and only figures the report itself computes (claim counts and verdicts), never a
copy of another stage's numbers.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from . import plots
from .claims import VERDICTS, Claims, claims_table
from .document import Cell, Image, Paragraph, Section, Table, to_html, to_markdown
from .utils import atomic_dir, atomic_write_json, atomic_write_text, round_floats

TITLE = "advgen report"
#: Folders under ``reports/`` that are not stage outputs (the report's own, the headline
#: metrics files, plot data): never collected.
NOT_COLLECTED = ("figures", "headline", "params", "plots", "screenshots", "sources")
#: What :meth:`Report.write` writes, relative to ``reports/`` (``figures`` is a folder).
OUTPUTS = ("summary.md", "index.html", "claims.json", "figures", "headline/report.json")

SectionBuilder = Callable[[dict], list[Section]]
FigureBuilder = Callable[[Path, dict], dict[str, bytes]]


class ReportPart(Protocol):
    """An area's report module: its section builders and figure builders, in order."""

    SECTIONS: Sequence[SectionBuilder]
    FIGURES: Sequence[FigureBuilder]


def collect(reports: str | Path) -> dict[str, dict]:
    """Map each stage output under ``reports`` to its metrics, cost and other files.

    ``train/cnn/metrics.json`` gives key ``train/cnn``, ``attacks/cnn/pgd.json`` key
    ``attacks/cnn/pgd``; costs come from ``cost/<key>.json`` (``cost/train/cnn.json``).
    Costs are read but are not the report's DVC deps: they change on every run. Every other
    file goes, by name, to its folder's ``files`` list (``train/cnn`` -> ``["curve.tsv"]``,
    ``attacks/cnn`` -> ``["fgsm.png", ...]``). Top-level files (the report's own outputs),
    hidden files and the folders of :data:`NOT_COLLECTED` are skipped.
    """
    reports = Path(reports)
    out: dict[str, dict] = {}
    for path in sorted(reports.rglob("*")):
        rel = path.relative_to(reports)
        if (len(rel.parts) == 1 or rel.parts[0] in NOT_COLLECTED or any(p.startswith(".") for p in rel.parts)
                or not path.is_file()):
            continue
        if path.suffix != ".json":
            if rel.parts[0] != "cost":
                out.setdefault(rel.parent.as_posix(), {}).setdefault("files", []).append(rel.name)
            continue
        if rel.parts[0] == "cost":
            key, kind = rel.with_suffix("").relative_to("cost").as_posix(), "cost"
        elif path.name == "metrics.json":
            key, kind = rel.parent.as_posix(), "metrics"
        else:
            key, kind = rel.with_suffix("").as_posix(), "metrics"
        out.setdefault(key, {})[kind] = json.loads(path.read_text())
    return out


# ---------------------------------------------------------------------------------------------
# Helpers for section and figure builders (the areas' report modules use them)


def files(collected: dict, folder: str) -> list[str]:
    """Names of the non-JSON files collected in ``folder`` (e.g. ``patch`` -> ``["examples.png"]``)."""
    return collected.get(folder, {}).get("files", [])


def models(collected: dict, prefix: str) -> dict[str, dict]:
    """``{model: metrics}`` of the keys ``<prefix>/<model>`` that have metrics."""
    return {k.split("/", 1)[1]: v["metrics"] for k, v in collected.items()
            if k.startswith(prefix + "/") and k.count("/") == 1 and "metrics" in v}


def figure_images(collected: dict, path: str, caption: str) -> list[Image]:
    """An image block for a figure this run made (``figures/<name>.png``), or nothing."""
    return [Image(path, caption)] if path.split("/", 1)[1] in files(collected, "figures") else []


def read_tsv(path: str | Path) -> dict[str, list[float]]:
    """A TSV with a header row as ``{column: values}`` (values that are not numbers become NaN)."""
    lines = [ln for ln in Path(path).read_text().splitlines() if ln.strip()]
    header = lines[0].split("\t")
    cols: dict[str, list[float]] = {h: [] for h in header}
    for line in lines[1:]:
        for h, v in zip(header, line.split("\t")):
            try:
                cols[h].append(float(v))
            except ValueError:
                cols[h].append(math.nan)
    return cols


def figure_name(kind: str, name: str) -> str:
    """``figures/<kind>_<name>.png``, with a file name safe on any file system and in a URL
    (names with other characters than ``[A-Za-z0-9_.-]`` get a short hash to stay unique)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    if safe != name or safe.startswith("."):
        safe = f"{safe.lstrip('.')}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"
    return f"figures/{kind}_{safe}.png"


# ---------------------------------------------------------------------------------------------
# Number formatting: one rule for a value a run did not produce (None or NaN)

#: What :func:`num` prints for a missing value (None or NaN).
MISSING = "—"


def missing(v: object) -> bool:
    """True for None and NaN: a value the report prints as a placeholder, never as ``nan``."""
    return v is None or (isinstance(v, float) and math.isnan(v))


def num(v: float | None, digits: int = 1, *, placeholder: str = MISSING) -> str:
    """``v`` with ``digits`` decimals (``12.3``); ``placeholder`` (``—``) when it is None or NaN."""
    return placeholder if missing(v) else f"{v:.{digits}f}"


def pct(v: float | None, digits: int = 1, *, placeholder: str = "") -> str:
    """A fraction as a percentage (``0.524`` -> ``52.4``); ``placeholder`` when it is None or
    NaN: empty by default, the percentage tables' blank cell for a figure the run did not
    measure (pass ``placeholder=MISSING`` for ``—``)."""
    return placeholder if missing(v) else num(100 * v, digits)


def pct_ci(v: float | None, ci: Sequence[float | None] | None, *, placeholder: str = "") -> str:
    """``52.4 [49.3, 55.5]``: a percentage with its 95% interval (just the percentage when the
    interval is absent or has a missing bound; ``placeholder`` when ``v`` is None or NaN)."""
    if missing(v):
        return placeholder
    if not ci or any(missing(b) for b in ci):
        return pct(v)
    return f"{pct(v)} [{pct(ci[0])}, {pct(ci[1])}]"


def _cost_cells(entry: dict) -> list[str]:
    cost = entry.get("cost", {})
    return [num(cost.get("wall_s")), num(cost.get("cpu_s")), num(cost.get("peak_rss_mb"), 0)]


# ---------------------------------------------------------------------------------------------
# The core's figures and sections (the areas' come from their report modules)


def _training_figure(reports: Path, collected: dict) -> dict[str, bytes]:
    curves = {k.split("/", 1)[1]: read_tsv(reports / k / "curve.tsv") for k, v in collected.items()
              if k.startswith("train/") and k.count("/") == 1 and "curve.tsv" in v.get("files", [])}
    curves = {m: c for m, c in curves.items() if "epoch" in c and "test_acc" in c}
    return {"figures/training.png": plots.training_plot(curves)} if curves else {}


def _data(collected: dict) -> list[Section]:
    ingest = collected.get("ingest", {}).get("metrics")
    if not ingest:
        return []
    return [Section("Data", [Paragraph(
        f"Dataset `{ingest['dataset']}`: {ingest['train_count']} training and {ingest['test_count']} test images "
        f"(checksums and digests in `data/prepared/{ingest['dataset']}/manifest.json`; the URL each file "
        "came from in `reports/ingest/provenance.json`).")])]


def _classifiers(collected: dict) -> list[Section]:
    train = {k: v for k, v in collected.items() if k.startswith("train/") and "metrics" in v}
    if not train:
        return []
    rows = [[m["metrics"]["model"], m["metrics"]["arch"], f"{m['metrics']['params']:,}",
             m["metrics"]["n_train"], m["metrics"]["epochs"],
             pct_ci(m["metrics"]["test_accuracy"], m["metrics"].get("test_accuracy_ci95")),
             num(m["metrics"]["test_loss"], 4), *_cost_cells(m)] for m in train.values()]
    per_class = [[m["metrics"]["model"], *(pct(a) for a in m["metrics"]["per_class_accuracy"])]
                 for m in train.values()]
    k = len(next(iter(train.values()))["metrics"]["per_class_accuracy"])
    return [Section("Classifiers", [
                Table(["model", "arch", "params", "train images", "epochs", "test acc % [95% CI]", "test loss",
                       "wall s", "CPU s", "peak RSS MB"], rows),
                *figure_images(collected, "figures/training.png", "Test accuracy per training epoch")]),
            Section("Per-class test accuracy (%)", [Table(["model", *map(str, range(k))], per_class)], level=3)]


def _cost(collected: dict) -> list[Section]:
    costs = [[key, *_cost_cells(v)] for key, v in collected.items() if "wall_s" in v.get("cost", {})]
    return [Section("Cost of each stage", [
        Paragraph("Wall and CPU seconds and peak RSS of the last run of each stage, from "
                  "`reports/cost/` (these vary from run to run, so the report does not depend on them and may show "
                  "the costs of an earlier run; every other figure is deterministic)."),
        Table(["stage", "wall s", "CPU s", "peak RSS MB"], costs)])]


#: The core's figure builders (the parts' follow).
FIGURES: tuple[FigureBuilder, ...] = (_training_figure,)
#: The core's sections before the parts' (after the claims table), and after them.
HEAD: tuple[SectionBuilder, ...] = (_data, _classifiers)
TAIL: tuple[SectionBuilder, ...] = (_cost,)


def claims_section(claims: list[dict], sections: Sequence[Section], claim_sections: Mapping[str, str]) -> Section:
    """The claims table: each claim's row of ``claims.json`` and a link to the section of
    ``sections`` that shows its experiment (``claim_sections``: claim id -> section title;
    ``—`` when the claim names none or the document has no section of that title)."""
    titles = {s.title for s in sections}

    def shown_in(cid: str) -> object:
        title = claim_sections.get(cid)
        return Cell(title, link=title) if title in titles else MISSING

    return Section("Claims", [
        Paragraph("Criteria are fixed in each area's `src/advgen/<area>/claims.py` before the runs; "
                  "a claim the data does not support is reported as such. A claim replicated over seeds (C9, C10) "
                  "shows its per-seed figures under \"over seeds\", and its verdict is the seed rule's (fixed in "
                  "`src/advgen/claims.py`); the others rest on one run. The last column links to the "
                  "section that shows the claim's experiment."),
        Table(["id", "claim", "experiment", "measured", "criterion", "over seeds", "verdict", "shown in"],
              [[r["id"], r["claim"], r["experiment"], r["measured"], r["criterion"], r.get("seeds") or MISSING,
                Cell(r["verdict"], r["verdict"], strong=True), shown_in(r["id"])] for r in claims], id="claims")])


# ---------------------------------------------------------------------------------------------
# The report


def headline_metrics(collected: dict, claims: list[dict]) -> dict[str, int | str]:
    """``headline/report.json``: the report's own figures, flat scalars (claim counts and
    verdicts); other stages' numbers (failed sanity checks among them) stay in their own
    headline files, so a one-stage change shows up once in ``dvc metrics diff``."""
    out: dict[str, int | str] = {f"claims_{v}": sum(r["verdict"] == v for r in claims) for v in VERDICTS}
    out.update({f"verdict_{r['id']}": r["verdict"] for r in claims})
    return out


@dataclass
class Report:
    """Everything the report stage writes; paths are relative to ``reports/``."""

    markdown: str
    html: str
    claims: list[dict]
    headline: dict
    figures: dict[str, bytes]
    links: dict[str, str] = field(default_factory=dict)  # claim id -> title of a section shown

    def write(self, reports: str | Path) -> None:
        """Write :data:`OUTPUTS` under ``reports``, each atomically (``figures/`` is replaced
        whole, so no figure of an earlier run stays behind; the page is written last)."""
        root = Path(reports)
        with atomic_dir(root / "figures") as tmp:
            tmp.chmod(0o755)  # mkdtemp makes it private
            for rel, data in sorted(self.figures.items()):
                (tmp / Path(rel).relative_to("figures")).write_bytes(data)
        atomic_write_json(root / "claims.json", self.claims)
        atomic_write_json(root / "headline" / "report.json", round_floats(self.headline))
        atomic_write_text(root / "summary.md", self.markdown)
        atomic_write_text(root / "index.html", self.html)


def make_report(reports: str | Path, parts: Sequence[ReportPart], registries: Iterable[Claims]) -> Report:
    """Collect ``reports``, make the figures, build the sections and render them (writes nothing).

    ``parts``: the areas' report modules in report order (``advgen.areas.report_parts()``);
    ``registries``: the claims registries in table order (``advgen.areas.claim_registries()``).
    """
    reports = Path(reports)
    collected = collect(reports)
    figures: dict[str, bytes] = {}
    for fn in (*FIGURES, *(f for p in parts for f in p.FIGURES)):
        figures.update(fn(reports, collected))
    bad = [p for p in figures if not p.startswith("figures/") or p.count("/") != 1]
    if bad:
        raise ValueError(f"figures must be written as figures/<name>.png, found {bad}")
    collected["figures"] = {"files": sorted(p.split("/", 1)[1] for p in figures)}
    claims = claims_table(collected, list(registries))
    builders = (*HEAD, *(fn for p in parts for fn in p.SECTIONS), *TAIL)
    body = [s for fn in builders for s in fn(collected)]
    links = claim_links(parts)
    sections = [claims_section(claims, body, links), *body]
    shown = {s.title for s in body}
    return Report(markdown=to_markdown(TITLE, sections), html=to_html(TITLE, sections), claims=claims,
                  headline=headline_metrics(collected, claims), figures=figures,
                  links={c: t for c, t in links.items() if t in shown})


def claim_links(parts: Sequence[ReportPart]) -> dict[str, str]:
    """Claim id -> title of the section that shows its experiment (the parts' ``CLAIM_SECTIONS``)."""
    return {cid: title for p in parts for cid, title in getattr(p, "CLAIM_SECTIONS", {}).items()}


def build_report(reports: str | Path, parts: Sequence[ReportPart],
                 registries: Iterable[Claims]) -> tuple[str, list[dict], dict]:
    """Return (summary markdown, claims rows, headline metrics) for the folder ``reports``."""
    r = make_report(reports, parts, registries)
    return r.markdown, r.claims, r.headline
