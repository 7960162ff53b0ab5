"""The report: collect every stage's metrics, build one document, render it twice.

:func:`make_report` reads the folder ``reports/`` only:

1. :func:`collect` maps each stage output to its metrics (``metrics``), its cost (``cost``,
   from ``reports/cost/``) and the names of its other files (``files``: PNGs, TSVs). The
   report's own outputs are never collected: top-level files (``summary.md``, ``index.html``,
   ``claims.json``) and the folders of :data:`NOT_COLLECTED` (``figures/``, ``headline/``,
   ``plots/``, ``screenshots/``).
2. The functions of :data:`FIGURES` turn TSVs into PNG plots (``figures/*.png``, bytes made by
   :mod:`advgen.plots`); their names are added to the collected metrics as
   ``collected["figures"]["files"]`` so that sections can show them.
3. The functions of :data:`SECTIONS`, in order, turn the collected metrics into a list of
   :class:`~advgen.document.Section` (title plus blocks: paragraphs, tables, images, bullets).
4. That one document is rendered to Markdown (``summary.md``) and to a static HTML page
   (``index.html``) by :mod:`advgen.document`, which escapes every string in HTML.

Adding a part of the report (defenses, backdoors, GANs, diffusion)
-------------------------------------------------------------------
Write a function ``(collected: dict) -> list[Section]`` in this module (or in a module it
imports, so that the report stage's DVC deps cover it) and register it::

    @section("defenses", before="cost")
    def _defenses(collected: dict) -> list[Section]:
        m = collected.get("defenses", {}).get("metrics")
        if not m:
            return []          # no metrics yet: no section
        return [Section("Defenses (C9)", [Paragraph("..."), Table(header, rows)])]

Return ``[]`` when the stage's metrics are absent. Put any text, including data, in blocks as
plain strings: the HTML renderer escapes it. Use :class:`~advgen.document.Cell` for a coloured
cell (``Cell("FAIL", cls="fail", strong=True)``) and :class:`~advgen.document.Image` for a PNG
under ``reports/`` that exists (check ``collected[folder]["files"]``). ``before`` names a
registered section (``data``, ``leaderboard``, ``classifiers``, ``robustness``, ``sanity``,
``examples``, ``square``, ``transfer``, ``forge``, ``patch``, ``dimension``, ``cost``,
``claims``); without it the section goes last. A figure made from a TSV is a function
``(reports: Path, collected: dict) -> {"figures/<name>.png": png_bytes}`` registered with
``@figure``.

Outputs (:data:`OUTPUTS`, written by :meth:`Report.write`): ``summary.md``, ``index.html``,
``claims.json``, ``figures/`` and ``headline/report.json``, the report's own DVC metrics:
scalars only, and only figures the report itself computes (claim counts and verdicts, failed
sanity checks), never a copy of another stage's numbers.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import plots
from .claims import VERDICTS, claims_table
from .document import Bullets, Cell, Image, Paragraph, Section, Table, to_html, to_markdown
from .utils import atomic_dir, atomic_write_json, atomic_write_text, round_floats

TITLE = "advgen report"
#: Folders under ``reports/`` that are not stage outputs (the report's own, the headline
#: metrics files, plot data): never collected.
NOT_COLLECTED = ("figures", "headline", "plots", "screenshots", "sources")
#: What :meth:`Report.write` writes, relative to ``reports/`` (``figures`` is a folder).
OUTPUTS = ("summary.md", "index.html", "claims.json", "figures", "headline/report.json")


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


def _files(collected: dict, folder: str) -> list[str]:
    return collected.get(folder, {}).get("files", [])


def _models(collected: dict, prefix: str) -> dict[str, dict]:
    """``{model: metrics}`` of the keys ``<prefix>/<model>`` that have metrics."""
    return {k.split("/", 1)[1]: v["metrics"] for k, v in collected.items()
            if k.startswith(prefix + "/") and k.count("/") == 1 and "metrics" in v}


# ---------------------------------------------------------------------------------------------
# Registries


SectionBuilder = Callable[[dict], list[Section]]
#: The report's parts, in order: ``(name, builder)``; see the module docstring.
SECTIONS: list[tuple[str, SectionBuilder]] = []

FigureBuilder = Callable[[Path, dict], dict[str, bytes]]
#: Functions that make PNG plots from TSVs under ``reports/``: ``{"figures/x.png": bytes}``.
FIGURES: list[FigureBuilder] = []


def section(name: str, *, before: str | None = None) -> Callable[[SectionBuilder], SectionBuilder]:
    """Register a section builder under ``name`` (last, or just before section ``before``)."""
    def wrap(fn: SectionBuilder) -> SectionBuilder:
        names = [n for n, _ in SECTIONS]
        if name in names:  # re-registering (a module reload) replaces in place
            SECTIONS[names.index(name)] = (name, fn)
        elif before is None:
            SECTIONS.append((name, fn))
        else:
            if before not in names:
                raise KeyError(f"section {name!r}: no registered section {before!r} to go before")
            SECTIONS.insert(names.index(before), (name, fn))
        return fn
    return wrap


def figure(fn: FigureBuilder) -> FigureBuilder:
    """Register a figure builder."""
    if fn not in FIGURES:
        FIGURES.append(fn)
    return fn


def build_sections(collected: dict) -> list[Section]:
    """Every registered builder's sections, in order."""
    return [s for _, fn in SECTIONS for s in fn(collected)]


# ---------------------------------------------------------------------------------------------
# Figures


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


def _linf_tables(reports: Path, collected: dict) -> dict[str, dict[str, list[float]]]:
    return {k.split("/", 1)[1]: read_tsv(reports / k / "linf.tsv") for k, v in collected.items()
            if k.startswith("robustness/") and k.count("/") == 1 and "linf.tsv" in v.get("files", [])}


@figure
def _robustness_figures(reports: Path, collected: dict) -> dict[str, bytes]:
    tables = _linf_tables(reports, collected)
    out = {figure_name("robustness", m): plots.robustness_plot(m, t) for m, t in tables.items() if "eps" in t}
    if any("eps" in t and "worst_case" in t for t in tables.values()):
        out["figures/worst_case.png"] = plots.worst_case_plot({m: t for m, t in tables.items() if "eps" in t})
    return out


@figure
def _training_figure(reports: Path, collected: dict) -> dict[str, bytes]:
    curves = {k.split("/", 1)[1]: read_tsv(reports / k / "curve.tsv") for k, v in collected.items()
              if k.startswith("train/") and k.count("/") == 1 and "curve.tsv" in v.get("files", [])}
    curves = {m: c for m, c in curves.items() if "epoch" in c and "test_acc" in c}
    return {"figures/training.png": plots.training_plot(curves)} if curves else {}


def _figure(collected: dict, path: str, caption: str) -> list[Image]:
    """An image block for a figure this run made, or nothing."""
    return [Image(path, caption)] if path.split("/", 1)[1] in _files(collected, "figures") else []


# ---------------------------------------------------------------------------------------------
# Formatting


def _pct(v: float | None) -> str:
    return "" if v is None else f"{100 * v:.1f}"


def _pct_ci(v: float | None, ci: list[float] | None) -> str:
    """``52.4 [49.3, 55.5]``: a percentage with its 95% interval."""
    if v is None:
        return ""
    return _pct(v) if not ci else f"{_pct(v)} [{_pct(ci[0])}, {_pct(ci[1])}]"


def _cost_cells(entry: dict) -> list[str]:
    cost = entry.get("cost", {})
    return [f"{cost.get('wall_s', float('nan')):.1f}", f"{cost.get('cpu_s', float('nan')):.1f}",
            f"{cost.get('peak_rss_mb', float('nan')):.0f}"]


def _eps_sorted(keys) -> list[str]:
    return sorted(keys, key=float)


CASCADE_COLUMNS = ("clean", "fgsm", "pgd", "apgd_ce", "apgd_t", "transfer", "square")


def _cascade_cells(c: dict) -> list[str]:
    """Images each stage broke, in :data:`CASCADE_COLUMNS` order ("" where a stage did not run)."""
    broke: dict[str, int] = {}
    for r in c["stages"]:
        key = "transfer" if r["stage"].startswith("transfer_from_") else r["stage"]
        broke[key] = broke.get(key, 0) + r["broke"]
    return [str(broke[k]) if k in broke else "" for k in CASCADE_COLUMNS]


# ---------------------------------------------------------------------------------------------
# Sections, in report order


@section("data")
def _data(collected: dict) -> list[Section]:
    ingest = collected.get("ingest", {}).get("metrics")
    if not ingest:
        return []
    return [Section("Data", [Paragraph(
        f"Dataset `{ingest['dataset']}`: {ingest['train_count']} training and {ingest['test_count']} test images "
        f"(checksums and digests in `data/prepared/{ingest['dataset']}/manifest.json`; the URL each file "
        "came from in `reports/ingest/provenance.json`).")])]


@section("leaderboard")
def _leaderboard(collected: dict) -> list[Section]:
    rob = _models(collected, "robustness")
    if not rob:
        return []
    train = _models(collected, "train")
    eps = _eps_sorted({e for m in rob.values() for e in m["linf"].get("worst_case", {}) if float(e) > 0})

    def mean_worst(m: dict) -> float:
        w = [v for e, v in m["linf"].get("worst_case", {}).items() if float(e) > 0]
        return sum(w) / len(w) if w else -1.0

    ranked = sorted(rob, key=lambda n: (-mean_worst(rob[n]), n))
    rows = []
    for rank, name in enumerate(ranked, 1):
        m, t = rob[name], train.get(name, {})
        worst, ci = m["linf"].get("worst_case", {}), m.get("linf_ci95", {}).get("worst_case", {})
        rows.append([rank, name, _pct_ci(t.get("test_accuracy"), t.get("test_accuracy_ci95")),
                     _pct_ci(m.get("clean_accuracy"), m.get("clean_ci95")),
                     *(_pct_ci(worst.get(e), ci.get(e)) for e in eps)])
    return [Section("Leaderboard (L-inf worst case)", [
        Paragraph("Models ranked by their mean worst-case (cascade) accuracy over eps > 0. Accuracy (%) with its "
                  "95% Wilson interval: `test acc` on the whole test set (train stage), `clean` and the worst "
                  "case on the robustness evaluation images."),
        Table(["rank", "model", "test acc %", "clean %", *(f"worst @{e}" for e in eps)], rows, id="leaderboard"),
        *_figure(collected, "figures/worst_case.png", "Worst-case (cascade) robust accuracy against L-inf eps")])]


@section("classifiers")
def _classifiers(collected: dict) -> list[Section]:
    train = {k: v for k, v in collected.items() if k.startswith("train/") and "metrics" in v}
    if not train:
        return []
    rows = [[m["metrics"]["model"], m["metrics"]["arch"], f"{m['metrics']['params']:,}",
             m["metrics"]["n_train"], m["metrics"]["epochs"],
             _pct_ci(m["metrics"]["test_accuracy"], m["metrics"].get("test_accuracy_ci95")),
             f"{m['metrics']['test_loss']:.4f}", *_cost_cells(m)] for m in train.values()]
    per_class = [[m["metrics"]["model"], *(f"{100 * a:.1f}" for a in m["metrics"]["per_class_accuracy"])]
                 for m in train.values()]
    k = len(next(iter(train.values()))["metrics"]["per_class_accuracy"])
    return [Section("Classifiers", [
                Table(["model", "arch", "params", "train images", "epochs", "test acc % [95% CI]", "test loss",
                       "wall s", "CPU s", "peak RSS MB"], rows),
                *_figure(collected, "figures/training.png", "Test accuracy per training epoch")]),
            Section("Per-class test accuracy (%)", [Table(["model", *map(str, range(k))], per_class)], level=3)]


@section("robustness")
def _robustness(collected: dict) -> list[Section]:
    rob = _models(collected, "robustness")
    if not rob:
        return []
    out = [Section("Robust accuracy (L-inf)", [Paragraph(
        "Accuracy (%) with its 95% Wilson interval, on the same evaluation images. FGSM, PGD and noise "
        "are **per-attack curves**: each attack runs on every image at every eps. `worst case` is a "
        "**cascade figure** (AutoAttack's convention): an image counts as robust only if it is classified "
        "correctly clean and survives, in order, FGSM, PGD, APGD-CE, APGD-T (targeted DLR), the transfer "
        "attacks (at their eps) and Square (on the survivors among the first `n_square` images of the "
        "evaluation set: 200 in the default profile); each attack runs only on "
        "the images every earlier one left robust, and stops on an image once it is fooled.")])]
    for name, m in rob.items():
        eps_all = list(m["linf"]["worst_case"])
        ci = m.get("linf_ci95", {})
        rows = [[("worst case (cascade)" if a == "worst_case" else a),
                 *(_pct_ci(m["linf"][a].get(e), ci.get(a, {}).get(e)) for e in eps_all)] for a in m["linf"]]
        blocks: list = [Table(["attack", *(f"eps={e}" for e in eps_all)], rows)]
        if m["l2_pgd"]:
            blocks.append(Table(["PGD L2", *(f"eps={e}" for e in m["l2_pgd"])],
                                [["pgd_l2", *(_pct_ci(v, m.get("l2_pgd_ci95", {}).get(e))
                                              for e, v in m["l2_pgd"].items())]]))
        blocks += _figure(collected, figure_name("robustness", name), f"Robust accuracy of {name} against L-inf eps")
        if m.get("cascade"):
            blocks += [Paragraph(
                f"Cascade of {name}: images each stage broke (the first to fool them), and what is left; "
                "`transfer` sums the transfer attacks (run at their eps only), and the last column counts "
                "images a black-box attack broke after every white-box attack missed them."),
                Table(["eps", *CASCADE_COLUMNS, "robust", "black box after white box"],
                      [[f"{c['eps']:g}", *_cascade_cells(c), int(round(c["robust"]["accuracy"] * c["n"])),
                        c["masking_points"]] for c in m["cascade"]])]
        if m.get("convergence"):
            rows = [[e, r["budget"], _pct_ci(r["accuracy"], r["ci95"]),
                     "" if "standalone_vs_headline_apgd_ce" not in r else
                     f"{r['standalone_vs_headline_apgd_ce']['only_b']} / {r['standalone_vs_headline_apgd_ce']['only_a']}"]
                    for e, rs in m["convergence"].items() for r in rs]
            blocks += [Paragraph(
                f"Convergence of {name}: the worst case with stronger budgets added (re-attacking "
                "every image the headline APGD-CE saw); last column: images the stronger budget fools "
                "that the headline APGD-CE did not / the reverse."),
                Table(["eps", "budget", "worst case %", "new / lost"], rows)]
        out.append(Section(f"{name} (clean {_pct_ci(m['clean_accuracy'], m.get('clean_ci95'))}%, n={m['n']})",
                           blocks, level=3))
    show = ["0.025", "0.05", "0.1"]
    out.append(Section("Headline (L-inf)", [Table(
        ["model", "clean", *(f"{a} @{e}" for e in show for a in ("FGSM", "PGD-20", "worst (cascade)"))],
        [[n, _pct(m["clean_accuracy"]), *(_pct_ci(m["linf"].get(a, {}).get(e), m.get("linf_ci95", {}).get(a, {}).get(e))
                                        for e in show for a in ("fgsm", "pgd", "worst_case"))]
         for n, m in rob.items()])], level=3))
    return out


def _checks(collected: dict) -> list[tuple[str, dict]]:
    return [(n, c) for n, m in _models(collected, "robustness").items() for c in m.get("checks", [])]


@section("sanity")
def _sanity(collected: dict) -> list[Section]:
    rob = _models(collected, "robustness")
    if not rob:
        return []
    checks = _checks(collected)
    failed = sum(not c["passed"] for _, c in checks)
    rows = []
    for n, c in checks:
        cls = None if c["passed"] else "fail"
        rows.append([Cell(n, cls), Cell(c["name"], cls),
                     Cell("pass", "pass") if c["passed"] else Cell("FAIL", "fail", strong=True),
                     Cell(c["detail"], cls)])
    blocks: list = [
        Paragraph("Run automatically on every model's results; failures are also printed "
                  "by the robustness stage. Comparisons of two figures on the same images use an exact paired "
                  "(McNemar sign) test at p < 0.01. Facts that hold by construction (eps = 0 equals clean; the "
                  "worst case never exceeds clean) are asserted, not counted as checks."),
        Paragraph(f"{len(checks)} checks on {len(rob)} models: "
                  + (f"**{failed} failed**." if failed else "none failed.")),
        Table(["model", "check", "result", "detail"], rows, id="sanity")]
    notes = [f"{n}: {o}" for n, m in rob.items() for o in m.get("observations", [])]
    if notes:
        blocks += [Paragraph("Observations (expected behaviour, not failures):"), Bullets(notes)]
    return [Section("Sanity checks", blocks)]


@section("examples")
def _examples(collected: dict) -> list[Section]:
    images = [Image(f"{k}/{f}", f"{k.split('/', 1)[1]}: {f.rsplit('.', 1)[0]}")
              for k, v in collected.items() if k.startswith("attacks/") and k.count("/") == 1
              for f in v.get("files", []) if f.endswith(".png")]
    if not images:
        return []
    return [Section("Adversarial examples", [Paragraph(
        "The examples each attack stage draws (`reports/attacks/<model>/<attack>.png`): clean images, "
        "their adversarial versions and the perturbations."), *images])]


@section("square")
def _square(collected: dict) -> list[Section]:
    sq = {k.split("/")[1]: v["metrics"]["square"] for k, v in collected.items()
          if k.startswith("attacks/") and k.endswith("/square") and "square" in v.get("metrics", {})}
    if not sq:
        return []
    budgets = sorted(next(iter(sq.values()))["success_at_budget"], key=int)
    first = next(iter(sq.values()))
    return [Section("Square Attack: success against query budget", [
        Paragraph(f"L-inf eps={first['eps']:g}, success (%) among the initially correct images with its 95% interval "
                  f"(C7's standalone experiment); hours assume a rate limit of {first['queries_per_minute']:g} "
                  "queries per minute."),
        Table(["model", *(f"{b} q ({first['hours_at_rate_limit'][b]:.1f} h)" for b in budgets)],
              [[n, *(_pct_ci(s["success_at_budget"][b], s.get("success_ci95", {}).get(b)) for b in budgets)]
               for n, s in sq.items()])])]


@section("transfer")
def _transfer(collected: dict) -> list[Section]:
    tr = collected.get("transfer", {}).get("metrics")
    if not tr:
        return []
    targets = list(tr["clean"])
    return [Section("Transfer matrix", [
        Paragraph(f"Accuracy (%) of each target (columns) on PGD-{tr['steps']} examples "
                  f"crafted on each source (rows), eps={tr['eps']:g}; the diagonal is white box."),
        Table(["source \\ target", *targets],
              [["clean", *(_pct_ci(tr["clean"][t], tr.get("clean_ci95", {}).get(t)) for t in targets)]] +
              [[s, *(_pct_ci(r[t], tr.get("matrix_ci95", {}).get(s, {}).get(t)) for t in targets)]
               for s, r in tr["matrix"].items()])])]


@section("forge")
def _forge(collected: dict) -> list[Section]:
    fg = collected.get("forge", {}).get("metrics")
    images = [Image(f"forge/{f}", caption) for f, caption in
              (("c1.png", "C1: forged from noise"), ("c2.png", "C2: forged from a real image"))
              if f in _files(collected, "forge")]
    if not fg and not images:
        return []
    blocks: list = []
    if fg:
        c1, c2 = fg["c1"], fg["c2"]
        blocks.append(Table(
            ["experiment", "success %", "detail"],
            [["C1 from noise", _pct_ci(c1["success_rate"], c1.get("success_ci95")),
              f"median steps {c1['median_steps']:.0f}, mean target confidence {c1['mean_target_confidence']:.3f}, "
              f"feature NN ratio forged/real {c1['realism']['feature']['ratio']:.2f}"]] +
            [[f"C2 from image ({k})", _pct_ci(v["success_rate"], v.get("success_ci95")),
              f"median L2 {v['median_l2']:.3f}, Linf {v['median_linf']:.3f}"] for k, v in c2.items()]))
    return [Section("Forged inputs (C1, C2)", blocks + images)]


@section("patch")
def _patch(collected: dict) -> list[Section]:
    pt = collected.get("patch", {}).get("metrics")
    if not (pt and pt.get("sizes")):
        return []
    s = _patch_section(pt)
    if "examples.png" in _files(collected, "patch"):
        s.blocks.append(Image("patch/examples.png", "Universal patch: the patches and patched images"))
    return [s]


def _patch_section(pt: dict) -> Section:
    """The universal patch (C8): success against patch size, and the NPS/TV weight ablation."""
    def rate(r: dict) -> str:
        return _pct_ci(r["success_rate"], r.get("ci95"))

    curve = sorted(pt["sizes"].values(), key=lambda e: e["size"])
    n = curve[0]["patches"]["with_terms"]["n"]
    target = pt.get("target_name") or pt.get("target")
    rows = [[e["size"], f"{100 * e['area_fraction']:.1f}", *(rate(e["patches"][v]) for v in
             ("with_terms", "without_terms", "random_baseline", "grey_baseline")),
             *(f"{e['patches']['with_terms'][t]:.3f} / {e['patches']['without_terms'][t]:.3f}" for t in ("nps", "tv"))]
            for e in curve]
    ab = pt["ablation"]
    ab_rows = [[f"{s['scale']:g}", f"{s['w_nps']:g}", f"{s['w_tv']:g}", rate(s), f"{s['nps']:.3f}",
                f"{s['tv']:.3f}"] for s in sorted(ab["scales"].values(), key=lambda s: s["scale"])]
    return Section("Universal patch (C8)", [
        Paragraph(f"Targeted success (% [95% Wilson interval]) of one universal k x k patch pasted at random locations "
                  f"on n={n} held-out images not of the target class ({target}), with the NPS and TV terms (per-pixel "
                  f"weights w_nps={ab['w_nps']:g}, w_tv={ab['w_tv']:g}) and without them; the last two columns give "
                  "the NPS and TV of those two patches."),
        Table(["k", "area %", "with NPS+TV", "without", "random patch", "grey patch", "NPS with / without",
               "TV with / without"], rows),
        Paragraph(f"Weight ablation at {ab['size']}x{ab['size']} ({100 * ab['area_fraction']:.1f}% of the image): "
                  "both weights scaled together; scale 0 is the patch without the terms."),
        Table(["scale", "w_nps", "w_tv", "success %", "NPS", "TV"], ab_rows)])


@section("dimension")
def _dimension(collected: dict) -> list[Section]:
    dm = collected.get("dimension", {}).get("metrics")
    if not dm:
        return []
    return [Section("Dimension (C4)", [Table(
        ["model", "d", "clean %", f"FGSM eps={dm['eps']:g} %", "margin drop", "eps*||w_y - w_j||_1"],
        [[k, r["dim"], _pct_ci(r["clean_accuracy"], r.get("clean_ci95")),
          _pct_ci(r["fgsm_accuracy"], r.get("fgsm_ci95")),
          f"{r['mean_margin_drop']:.3f}", f"{r['mean_eps_l1_bound']:.3f}"] for k, r in dm["models"].items()])])]


@section("cost")
def _cost(collected: dict) -> list[Section]:
    costs = [[key, *_cost_cells(v)] for key, v in collected.items() if "wall_s" in v.get("cost", {})]
    return [Section("Cost of each stage", [
        Paragraph("Wall and CPU seconds and peak RSS of the last run of each stage, from "
                  "`reports/cost/` (these vary from run to run, so the report does not depend on them and may show "
                  "the costs of an earlier run; every other figure is deterministic)."),
        Table(["stage", "wall s", "CPU s", "peak RSS MB"], costs)])]


@section("claims")
def _claims(collected: dict) -> list[Section]:
    return [Section("Claims", [
        Paragraph("Criteria are fixed in `src/advgen/claims.py` before the runs; "
                  "a claim the data does not support is reported as such."),
        Table(["id", "claim", "experiment", "measured", "criterion", "verdict"],
              [[r["id"], r["claim"], r["experiment"], r["measured"], r["criterion"],
                Cell(r["verdict"], r["verdict"], strong=True)] for r in claims_table(collected)], id="claims")])]


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


def make_report(reports: str | Path) -> Report:
    """Collect ``reports``, make the figures, build the sections and render them (writes nothing)."""
    reports = Path(reports)
    collected = collect(reports)
    figures: dict[str, bytes] = {}
    for fn in FIGURES:
        figures.update(fn(reports, collected))
    bad = [p for p in figures if not p.startswith("figures/") or p.count("/") != 1]
    if bad:
        raise ValueError(f"figures must be written as figures/<name>.png, found {bad}")
    collected["figures"] = {"files": sorted(p.split("/", 1)[1] for p in figures)}
    claims = claims_table(collected)
    sections = build_sections(collected)
    return Report(markdown=to_markdown(TITLE, sections), html=to_html(TITLE, sections), claims=claims,
                  headline=headline_metrics(collected, claims), figures=figures)


def build_report(reports: str | Path) -> tuple[str, list[dict], dict]:
    """Return (summary markdown, claims rows, headline metrics) for the folder ``reports``."""
    r = make_report(reports)
    return r.markdown, r.claims, r.headline


# Sections of later areas, registered on import (kept in their own modules).
# in this order: each module registers its sections before the cost section, so the order of
# import is the order in the report (the diffusion sections follow the GAN ones)
from . import report_backdoors, report_defenses, report_generative, report_diffusion  # noqa: F401, I001
