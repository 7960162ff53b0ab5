"""Claims registry and report rendering."""
import ast
import html
import json
import math
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from advgen import areas
from advgen.attacks.claims import c3_worked_example
from advgen.claims import claims_table
from advgen.document import Bullets, Cell, Image, Paragraph, Section, Table, md_anchor, slug, to_html, to_markdown
from advgen.report import MISSING, build_report, collect, make_report, num, pct, pct_ci
from advgen.stats import mcnemar

ROOT = Path(__file__).resolve().parents[1]


def _table(collected: dict) -> list[dict]:
    return claims_table(collected, areas.claim_registries())


def _report(reports, parts=None):
    return make_report(reports, areas.report_parts() if parts is None else parts, areas.claim_registries())


def test_c3_is_the_lecture_example():
    r = c3_worked_example()
    assert r["w_norm2_sq"] == 28 and r["logit_before"] == -4
    assert round(r["before"], 3) == 0.018 and round(r["after_eps_w"], 2) == 0.83
    assert math.isclose(r["after_eps_w"], 1 / (1 + math.exp(-1.6)))


def test_every_claim_has_a_row_and_only_c3_needs_no_data():
    rows = _table({})
    ids = [f"C{i}" for i in range(1, 19)]
    assert [r["id"] for r in rows] == [*ids[:9], "C9a", "C9b", ids[9], "C10a", *ids[10:]] == [
        cid for reg in areas.claim_registries() for cid in reg.statements]
    verdicts = {r["id"]: r["verdict"] for r in rows}
    assert verdicts.pop("C3") == "supported"
    assert set(verdicts.values()) == {"not_measured"}  # no metrics, no verdict
    c3 = next(r for r in rows if r["id"] == "C3")
    assert c3["experiment"].startswith("worked example, not an experiment")
    assert set(rows[0]) == {"id", "claim", "experiment", "measured", "criterion", "seeds", "verdict"}


def _paired(clean_right_only: int, adv_right_only: int) -> dict:
    a = torch.tensor([1] * clean_right_only + [0] * adv_right_only).bool()
    return mcnemar(a, ~a)


def _robustness(fgsm_05: float, flips: tuple[int, int], noise: float | None = 0.88,
                transfer_test: tuple[int, int] | None = (0, 300)) -> dict:
    linf = {"fgsm": {"0.05": fgsm_05, "0.1": 0.1}}
    if noise is not None:
        linf["noise"] = {"0.1": noise}
    paired = {"vs_clean": {"fgsm": {"0.05": _paired(*flips)}}}
    if transfer_test is not None:
        paired["transfer_vs_noise"] = {"cnn_seed1": _paired(*reversed(transfer_test))}
    ci = {"fgsm": {"0.05": [fgsm_05 - 0.03, fgsm_05 + 0.03]}}  # C5 shows the interval: the run must have it
    return {"metrics": {"n": 1000, "clean_accuracy": 0.92, "linf": linf, "linf_ci95": ci, "paired": paired}}


def _transfer(best: float) -> dict:
    return {"metrics": {"eps": 0.1, "steps": 20, "n": 1000, "clean": {"cnn": 0.92},
                        "matrix": {"cnn_seed1": {"cnn": best}, "resnet": {"cnn": 0.8}, "cnn": {"cnn": 0.0}}}}


def _verdicts(collected: dict) -> dict:
    return {r["id"]: r["verdict"] for r in _table(collected)}


@pytest.mark.parametrize("fgsm, flips, verdict", [
    (0.50, (420, 0), "supported"),
    (0.80, (120, 0), "not_supported"),  # significant but a drop of 12 points < 20
    (0.71, (6, 0), "not_supported"),  # a large drop on paper, but 6 flips are not significant (p = 0.016)
])
def test_c5_needs_a_large_and_significant_drop(fgsm, flips, verdict):
    assert _verdicts({"robustness/cnn": _robustness(fgsm, flips)})["C5"] == verdict


def test_a_claim_says_which_eps_the_run_lacks():
    """Dropping 0.05 from attack.eps_linf once turned C5 into a silent not_measured."""
    rob = _robustness(0.5, (420, 0))
    for table in (rob["metrics"]["linf"]["fgsm"], rob["metrics"]["paired"]["vs_clean"]["fgsm"]):
        table["0.025"] = table.pop("0.05")
    row = {r["id"]: r for r in _table({"robustness/cnn": rob})}["C5"]
    assert row["verdict"] == "not_measured"
    assert row["measured"] == "C5 needs eps = 0.05 in attack.eps_linf (this run has 0.025, 0.1)"
    # keys are read as numbers: "5e-2" is eps 0.05
    rob = _robustness(0.5, (420, 0))
    rob["metrics"]["linf"]["fgsm"]["5e-2"] = rob["metrics"]["linf"]["fgsm"].pop("0.05")
    assert _verdicts({"robustness/cnn": rob})["C5"] == "supported"


def test_c6_missing_noise_figure_is_not_measured():
    """A missing baseline once counted as a zero drop and let C6 pass quietly."""
    assert _verdicts({"transfer": _transfer(0.4), "robustness/cnn": _robustness(0.5, (420, 0))})["C6"] == "supported"
    assert _verdicts({"transfer": _transfer(0.4),
                      "robustness/cnn": _robustness(0.5, (420, 0), noise=None)})["C6"] == "not_measured"
    assert _verdicts({"transfer": _transfer(0.4),
                      "robustness/cnn": _robustness(0.5, (420, 0), transfer_test=None)})["C6"] == "not_measured"
    assert _verdicts({"transfer": _transfer(0.4)})["C6"] == "not_measured"
    # a big drop that is not 3x the noise drop
    assert _verdicts({"transfer": _transfer(0.6),
                      "robustness/cnn": _robustness(0.5, (420, 0), noise=0.75)})["C6"] == "not_supported"


def test_report_collects_stage_metrics_and_costs(tmp_path):
    (tmp_path / "train" / "cnn").mkdir(parents=True)
    (tmp_path / "cost" / "train").mkdir(parents=True)
    (tmp_path / "train" / "cnn" / "metrics.json").write_text(json.dumps({
        "model": "cnn", "arch": "cnn", "params": 10, "n_train": 5, "epochs": 1, "test_accuracy": 0.9,
        "test_accuracy_ci95": [0.85, 0.93], "test_loss": 0.3, "per_class_accuracy": [0.9, 0.9]}))
    (tmp_path / "cost" / "train" / "cnn.json").write_text(json.dumps({"wall_s": 1.5, "cpu_s": 2.0,
                                                                     "peak_rss_mb": 100.0}))
    (tmp_path / "metrics.json").write_text("{}")  # the report's own output is never collected
    summary, claims, headline = build_report(tmp_path, areas.report_parts(), areas.claim_registries())
    assert headline == {"claims_supported": 1, "claims_not_supported": 0, "claims_not_measured": 20,
                        **{f"verdict_{r['id']}": r["verdict"] for r in claims}}
    assert headline["verdict_C3"] == "supported" and headline["verdict_C1"] == "not_measured"
    assert "| cnn | cnn | 10 | 5 | 1 | 90.0 [85.0, 93.0] | 0.3000 | 1.5 | 2.0 | 100 |" in summary
    assert "| train/cnn | 1.5 | 2.0 | 100 |" in summary
    assert "| C3 |" in summary


EVIL = "<script>alert(1)</script>"
QUOTE = "\"quote'&amp"


def _rob_metrics(checks: list[dict]) -> dict:
    return {"n": 100, "clean_accuracy": 0.9, "clean_ci95": [0.83, 0.94], "l2_pgd": {},
            "linf": {"fgsm": {"0": 0.9, "0.05": 0.5}, "worst_case": {"0": 0.9, "0.05": 0.3}},
            "linf_ci95": {"worst_case": {"0": [0.83, 0.94], "0.05": [0.22, 0.4]}},
            "checks": checks, "observations": ["FGSM is not monotone"]}


def _train_metrics(model: str) -> dict:
    return {"model": model, "arch": "cnn", "params": 10, "n_train": 5, "epochs": 1, "test_accuracy": 0.9,
            "test_accuracy_ci95": [0.85, 0.93], "test_loss": 0.3, "per_class_accuracy": [0.9, 0.9]}


def _write(path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def test_markdown_summary_keeps_claims_and_sanity_checks(tmp_path):
    _write(tmp_path / "train" / "cnn" / "metrics.json", _train_metrics("cnn"))
    _write(tmp_path / "robustness" / "cnn" / "metrics.json", _rob_metrics([
        {"name": "pgd_le_fgsm", "passed": True, "detail": "never above FGSM"},
        {"name": "converged[apgd_ce]@0.05", "passed": False, "detail": "stronger budget drops 2.0 points"}]))
    r = _report(tmp_path)
    md = r.markdown
    assert md.startswith("# advgen report\n")
    assert "## Claims" in md and "| id | claim | experiment | measured | criterion | over seeds | verdict | shown in |" in md
    assert "| C3 | Logistic regression" in md and "| **supported** |" in md and "| **not_measured** |" in md
    assert "## Sanity checks" in md and "2 checks on 1 models: **1 failed**." in md
    assert "| cnn | pgd_le_fgsm | pass | never above FGSM |" in md
    assert "| cnn | converged[apgd_ce]@0.05 | **FAIL** | stronger budget drops 2.0 points |" in md
    assert "- cnn: FGSM is not monotone" in md
    assert "| 1 | cnn | 100 | 0.05 | 90.0 [85.0, 93.0] | 90.0 [83.0, 94.0] | 30.0 | 30.0 [22.0, 40.0] |" in md  # the leaderboard
    assert "sanity_checks_failed" not in r.headline  # robustness's headline has it
    assert not r.figures and "figures/" not in md  # no TSVs, no plots
    # the same document in HTML: the failure is highlighted, verdicts coloured, the claims table has its id
    assert '<td class="fail"><strong>FAIL</strong></td>' in r.html and '<td class="pass">pass</td>' in r.html
    assert '<table id="claims">' in r.html and '<td class="supported"><strong>supported</strong></td>' in r.html
    assert r.html.count("<tr>") - r.html.count("<thead><tr>") >= 18


def test_leaderboard_ranks_on_the_grid_every_model_shares_and_labels_each_row(tmp_path):
    """A defended model evaluated on fewer eps and images is ranked on the eps both grids hold,
    its row names its grid and n, its test accuracy comes from the defend stage, and an eps it
    was not evaluated at shows as missing, not as an empty (or zero) cell."""
    base = _rob_metrics([])
    base["linf"]["worst_case"] = {"0": 0.9, "0.05": 0.3, "0.1": 0.0, "0.2": 0.0}
    base["linf_ci95"]["worst_case"] = {e: [0.0, 1.0] for e in base["linf"]["worst_case"]}
    defended = {**_rob_metrics([]), "n": 50}
    defended["linf"]["worst_case"] = {"0": 0.8, "0.05": 0.6, "0.1": 0.4}
    defended["linf_ci95"]["worst_case"] = {e: [0.0, 1.0] for e in defended["linf"]["worst_case"]}
    _write(tmp_path / "train" / "cnn" / "metrics.json", _train_metrics("cnn"))
    _write(tmp_path / "robustness" / "cnn" / "metrics.json", base)
    _write(tmp_path / "robustness" / "cnn_pgd_at" / "metrics.json", defended)
    defend = json.loads((ROOT / "reports/defend/cnn_pgd_at/metrics.json").read_text())  # the committed run's
    _write(tmp_path / "defend" / "cnn_pgd_at" / "metrics.json",
           {**defend, "test_accuracy": 0.8, "test_accuracy_ci95": [0.79, 0.81]})
    md = _report(tmp_path).markdown
    table = md[md.index("| rank | model |"):].split("\n\n")[0]
    assert table.splitlines()[0] == ("| rank | model | n | eps grid | test acc % | clean % | mean worst % | worst @0.05 "
                                     "| worst @0.1 | worst @0.2 |")
    assert "| 1 | cnn_pgd_at | 50 | 0.05, 0.1 | 80.0 [79.0, 81.0] | 90.0 [83.0, 94.0] | 50.0 | 60.0 [0.0, 100.0] " \
           "| 40.0 [0.0, 100.0] | — |" in table
    assert "| 2 | cnn | 100 | 0.05, 0.1, 0.2 | 90.0 [85.0, 93.0] | 90.0 [83.0, 94.0] | 15.0 |" in table
    assert "over the eps every model was evaluated at (0.05, 0.1)" in md


def test_html_table_cells_render_inline_code(tmp_path):
    page = to_html("t", [Section("s", [Table(["a"], [["defend stage: `cnn_fgsm_at` <b>"]])])])
    assert "<td>defend stage: <code>cnn_fgsm_at</code> &lt;b&gt;</td>" in page and "`" not in page


def test_html_escapes_every_string_from_data(tmp_path):
    _write(tmp_path / "train" / "evil" / "metrics.json", _train_metrics(EVIL))
    _write(tmp_path / "robustness" / QUOTE / "metrics.json", _rob_metrics([
        {"name": EVIL, "passed": False, "detail": QUOTE + EVIL}]))
    _write(tmp_path / "ingest" / "metrics.json", {"dataset": EVIL, "train_count": 1, "test_count": 1})
    (tmp_path / "attacks" / QUOTE).mkdir(parents=True)
    (tmp_path / "attacks" / QUOTE / "fgsm.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    page = _report(tmp_path).html
    for raw in (EVIL, QUOTE, "<img src=x"):
        assert raw not in page
    assert html.escape(EVIL) in page and html.escape(QUOTE) in page
    assert "<script" not in page.lower()
    assert 'src="attacks/%22quote%27%26amp/fgsm.png"' in page  # a path is URL-quoted, then escaped
    # the renderer escapes by default: titles, paragraphs, bullets, cells, classes, ids, captions
    sections = [Section(EVIL, [Paragraph(f"`{EVIL}` **{QUOTE}**"), Bullets([EVIL]),
                               Table([EVIL], [[EVIL, Cell(QUOTE, cls='x" onclick="alert(1)', strong=True)]],
                                     id='t" onclick="alert(1)'),
                               Image('a"b.png', EVIL)], level=3)]
    page = to_html(EVIL, sections)
    assert EVIL not in page and QUOTE not in page and "onclick=" not in page and "<script" not in page
    assert f"<code>{html.escape(EVIL)}</code> <strong>{html.escape(QUOTE)}</strong>" in page
    assert to_markdown("t", sections).count(EVIL) == 6  # Markdown keeps the text as it is


def test_collect_skips_the_reports_own_outputs(tmp_path):
    _write(tmp_path / "train" / "cnn" / "metrics.json", _train_metrics("cnn"))
    (tmp_path / "train" / "cnn" / "curve.tsv").write_text("epoch\ttest_acc\n1\t0.5\n")
    _write(tmp_path / "cost" / "train" / "cnn.json", {"wall_s": 1.0})
    for own in ("headline/report.json", "headline/train.json", "figures/old.json", "metrics.json", "claims.json",
                "params/train@cnn.json"):
        _write(tmp_path / own, {"x": 1})
    for own in ("figures/worst_case.png", "plots/training.tsv", "summary.md", "index.html", "params.ok",
                "train/cnn/.curve.tsv.123.tmp"):
        (tmp_path / own).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / own).write_text("x")
    assert collect(tmp_path) == {"train/cnn": {"metrics": _train_metrics("cnn"), "files": ["curve.tsv"],
                                               "cost": {"wall_s": 1.0}}}


def test_a_part_s_sections_go_between_the_core_s_and_cost(tmp_path):
    """A part (an area's report module) is a SECTIONS tuple and a FIGURES tuple: its sections
    follow the core's data and classifiers sections and the parts before it, and precede cost."""
    def _defenses(collected):
        m = collected.get("defenses", {}).get("metrics")
        return [Section("Defenses", [Table(["model", "robust"], [[m["model"], m["robust"]]])])] if m else []

    part = SimpleNamespace(SECTIONS=(_defenses,), FIGURES=())
    parts = [*areas.report_parts(), part]
    assert "## Defenses\n" not in _report(tmp_path, parts).markdown
    _write(tmp_path / "defenses" / "metrics.json", {"model": EVIL, "robust": 0.5})
    _write(tmp_path / "train" / "cnn" / "metrics.json", _train_metrics("cnn"))
    r = _report(tmp_path, parts)
    titles = [ln for ln in r.markdown.splitlines() if ln.startswith("## ")]
    assert titles == ["## Claims", "## Classifiers", "## Defenses", "## Cost of each stage"]
    assert f"<td>{html.escape(EVIL)}</td>" in r.html and EVIL not in r.html
    assert "## Defenses\n" not in _report(tmp_path).markdown  # nothing global: the part was passed, not registered


def _section_titles(r) -> tuple[list[str], list[str]]:
    md = [ln.split(" ", 1)[1] for ln in r.markdown.splitlines() if re.match(r"#{2,3} ", ln)]
    page = [html.unescape(t) for t in re.findall(r'<section id="[^"]+">\n<h\d>(.*?)</h\d>', r.html)]
    return md, page


def _claim_links(page: str) -> dict[str, str]:
    """``{claim id: href}`` of the claims table's links."""
    table = page.split('<table id="claims">', 1)[1].split("</table>", 1)[0]
    return dict(re.findall(r'<tr><td[^>]*>([^<]+)</td>.*?<a href="([^"]+)">', table))


def test_the_claims_table_comes_first_and_links_to_the_experiments(tmp_path):
    _write(tmp_path / "train" / "cnn" / "metrics.json", _train_metrics("cnn"))
    _write(tmp_path / "robustness" / "cnn" / "metrics.json", _rob_metrics([]))
    r = _report(tmp_path)
    md, page = _section_titles(r)
    assert md[0] == page[0] == "Claims" and md == page
    assert '<nav><ul>\n<li><a href="#sec-claims">Claims</a></li>' in r.html
    # C5's experiment (FGSM on cnn) is shown in the robustness section, here present; the others' are not
    links = _claim_links(r.html)
    assert links == {"C5": "#" + slug("Robust accuracy (L-inf)")}
    ids = set(re.findall(r'<section id="([^"]+)">', r.html))
    assert all(href[1:] in ids for href in links.values())
    assert "| [Robust accuracy (L-inf)](#robust-accuracy-l-inf) |" in r.markdown
    c3 = next(ln for ln in r.markdown.splitlines() if ln.startswith("| C3 |"))
    assert c3.endswith(f"| **supported** | {MISSING} |")  # a worked example: no section to link to
    # claims.json keeps its six columns, no link
    assert set(r.claims[0]) == {"id", "claim", "experiment", "measured", "criterion", "seeds", "verdict"}


def test_every_claim_but_the_worked_example_names_its_section():
    ids = [c for reg in areas.claim_registries() for c in reg.statements]
    named = {cid: title for part in areas.report_parts() for cid, title in getattr(part, "CLAIM_SECTIONS", {}).items()}
    assert sorted(named) == sorted(set(ids) - {"C3"})
    assert all(isinstance(t, str) and t for t in named.values())


def test_links_render_in_both_formats():
    sections = [Section("Claims", [Table(["id", "shown in"], [["C1", Cell("Forged inputs (C1, C2)", link="Forged "
                                                                                                  "inputs (C1, C2)")]])]),
                Section("Forged inputs (C1, C2)", []), Section("Diffusion models (C15–C18)", [])]
    assert "| C1 | [Forged inputs (C1, C2)](#forged-inputs-c1-c2) |" in to_markdown("t", sections)
    page = to_html("t", sections)
    assert '<td><a href="#sec-forged-inputs-c1-c2">Forged inputs (C1, C2)</a></td>' in page
    assert '<section id="sec-forged-inputs-c1-c2">' in page
    assert md_anchor("Diffusion models (C15–C18)") == "diffusion-models-c15c18"  # GitHub drops the en dash
    assert md_anchor("Randomized smoothing: cnn_gaussian (sigma = 0.25)") == \
        "randomized-smoothing-cnn_gaussian-sigma--025"
    evil = to_html("t", [Section("s", [Table(["x"], [[Cell(EVIL, link=EVIL)]])])])
    assert EVIL not in evil and "<script" not in evil


def test_one_number_format_for_missing_values():
    nan = float("nan")
    assert num(1.25, 1) == "1.2" and num(3, 2) == "3.00" and num(None) == num(nan) == MISSING == "—"
    assert pct(0.524) == "52.4" and pct(0.5, 2) == "50.00" and pct(None) == pct(nan) == ""
    assert pct(None, placeholder=MISSING) == pct(nan, placeholder=MISSING) == MISSING
    assert pct_ci(0.524, [0.493, 0.555]) == "52.4 [49.3, 55.5]" and pct_ci(0.524, None) == "52.4"
    assert pct_ci(nan, [0.4, 0.6]) == "" and pct_ci(0.5, [nan, 0.6]) == "50.0"
    from advgen.generative.report import fid_ci, memorised
    assert fid_ci({"fid": 108.26, "fid_ci95": [97.5, 120.54]}) == "108.3 [97.5, 120.5]"
    assert fid_ci({"fid": nan, "fid_ci95": [1.0, 2.0]}) == fid_ci({"fid": None}) == MISSING
    assert fid_ci({"fid": 5.0, "fid_ci95": [nan, nan]}) == "5.0"
    assert memorised({"memorised": 0.0123}) == "1.23" and memorised({"memorised": nan}) == memorised(None) == MISSING


def _imports(path: Path) -> set[str]:
    """Modules a source file imports (relative imports resolved against ``advgen`` and its subpackage)."""
    package = ".".join(path.relative_to(ROOT / "src").with_suffix("").parts[:-1])
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            out |= {mod} | {f"{mod}.{a.name}" for a in node.names}
    return out


def test_the_core_report_imports_no_area_and_the_areas_import_the_core():
    area_names = [a.name for a in areas.AREAS]
    core = _imports(ROOT / "src" / "advgen" / "report.py")
    assert not [m for m in core if m == "advgen.areas" or m.split(".")[:2] in (["advgen", a] for a in area_names)], core
    assert sorted(p.name for p in (ROOT / "src" / "advgen").glob("report_*.py")) == []
    for a, part in zip(areas.AREAS, areas.report_parts()):
        mods = _imports(ROOT / "src" / "advgen" / a.name / "report.py")
        assert "advgen.report" in mods, a.name
        assert not any(m == "torch" or m.startswith("torch.") for m in mods), a.name  # no torch of its own
        assert part.__name__ == f"advgen.{a.name}.report", a.name
        assert part.SECTIONS and all(callable(f) for f in (*part.SECTIONS, *part.FIGURES)), a.name


def _gan_collected(probe_end: float, fids: dict[str, tuple[float, float, float]], precision: float = 0.9,
                   recall: float = 0.8, classes: int = 10) -> dict:
    """Synthetic collected metrics for the GAN claims: ``fids`` maps config -> (fid, lo, hi)."""
    runs = {"minimax": ("minimax", 1), "nonsat": ("non_saturating", 1), "nonsat_k2": ("non_saturating", 2)}
    c = {f"gan/{n}": {"metrics": {"loss": loss, "d_steps": k, "stacked": False, "final": {"d_fake": 0.4},
                                  "g_iters": 2500, "g_steps": 2500, "n_fid": 2000, "converged_at": None,
                                  "probe": {"d_steps": 200, "ratio_start": 1.0, "ratio_end": probe_end,
                                            "d_fake_end": 0.002}}}
         for n, (loss, k) in runs.items()}
    models = {n: {"fid": f, "fid_ci95": [lo, hi], "precision": precision, "recall": recall,
                  "coverage": {"classes_covered": classes, "kl_uniform": 0.05},
                  "codes": {"interpolation": {"n_paths": 200, "monotone_fraction": 0.6, "tolerance": 0.02},
                            "arithmetic": {"n_tests": 900, "success_rate": 0.5, "chance": 0.1}}}
              for n, (f, lo, hi) in fids.items()}
    floor = {"precision": 0.85, "recall": 0.85, "coverage": {"classes_covered": 10, "kl_uniform": 0.01}}
    c["generative"] = {"metrics": {"floor": floor, "models": models}}
    return c


@pytest.mark.parametrize("probe_end, ns_fid, verdict", [
    (400.0, (50, 45, 55), "supported"),  # large ratio and NS clearly better
    (5.0, (50, 45, 55), "not_supported"),  # ratio below 10
    (400.0, (58, 52, 64), "not_supported"),  # intervals overlap
])
def test_c11_needs_the_ratio_and_a_lower_fid(probe_end, ns_fid, verdict):
    c = _gan_collected(probe_end, {"minimax": (70, 60, 80), "nonsat": ns_fid, "nonsat_k2": (80, 75, 85)})
    row = {r["id"]: r for r in _table(c)}["C11"]
    assert row["verdict"] == verdict and "ratio non-sat / minimax 1.00 with D untrained" in row["measured"]


def test_gan_claims_compare_at_equal_generator_updates():
    """A GAN whose curve flattened early is compared with the other at their last common G update."""
    c = _gan_collected(400.0, {"minimax": (70, 60, 80), "nonsat": (50, 45, 55), "nonsat_k2": (40, 35, 44)})
    curve = lambda *pts: [{"g_iter": i, "fid": f, "fid_lo": f - 5, "fid_hi": f + 5} for i, f in pts]  # noqa: E731
    c["gan/nonsat"]["metrics"].update(g_iters=1500, converged_at=1500, fid_curve=curve((500, 90), (1000, 80), (1500, 79)))
    c["gan/nonsat_k2"]["metrics"]["fid_curve"] = curve((500, 95), (1000, 60), (1500, 50), (2000, 45), (2500, 44))
    c["gan/minimax"]["metrics"]["fid_curve"] = curve((500, 60), (1000, 70), (1500, 95), (2000, 99), (2500, 99))
    rows = {r["id"]: r for r in _table(c)}
    assert "FID curves at G update 1500" in rows["C12"]["measured"] and rows["C12"]["verdict"] == "supported"
    assert "nonsat: curve flat at G update 1500" in rows["C12"]["measured"]
    assert "nonsat_k2: budget of 2500 G updates ended first" in rows["C12"]["measured"]
    assert "FID curves at G update 1500" in rows["C11"]["measured"] and rows["C11"]["verdict"] == "supported"
    c["gan/nonsat_k2"]["metrics"]["fid_curve"][2]["fid_hi"] = 80  # now overlaps nonsat's [74, 84] at 1500
    assert {r["id"]: r for r in _table(c)}["C12"]["verdict"] == "not_supported"


def test_c12_c13_c14_follow_their_criteria():
    c = _gan_collected(400.0, {"minimax": (70, 60, 80), "nonsat": (50, 45, 55), "nonsat_k2": (40, 35, 44)})
    rows = {r["id"]: r for r in _table(c)}
    assert rows["C12"]["verdict"] == "supported"
    assert rows["C13"]["verdict"] == "not_supported"  # precise and covering: no collapse
    assert "Target: the best-FID GAN (nonsat_k2) covers all 10 classes with KL <= 0.1: met" in rows["C13"]["measured"]
    assert rows["C14"]["verdict"] == "supported" and "(nonsat_k2)" in rows["C14"]["experiment"]
    collapsed = _gan_collected(400.0, {"minimax": (70, 60, 80), "nonsat": (50, 45, 55), "nonsat_k2": (90, 85, 95)},
                               precision=0.8, recall=0.3)
    rows = {r["id"]: r for r in _table(collapsed)}
    assert rows["C12"]["verdict"] == "not_supported" and rows["C13"]["verdict"] == "supported"
    imprecise = _gan_collected(400.0, {"minimax": (70, 60, 80), "nonsat": (50, 45, 55)}, precision=0.5, recall=0.3)
    rows = {r["id"]: r for r in _table(imprecise)}
    assert rows["C13"]["verdict"] == "not_supported"  # poor samples are not collapse
    assert rows["C12"]["verdict"] == "not_measured"  # no k = 2 run
    for chance, verdict in ((0.2, "not_supported"), (0.1, "supported")):
        c["generative"]["metrics"]["models"]["nonsat_k2"]["codes"]["arithmetic"]["chance"] = chance
        assert {r["id"]: r for r in _table(c)}["C14"]["verdict"] == verdict


def _diffusion_collected(*, recall: float = 0.5, snap_recall: float = 0.4, acc3: float = 0.95, acc0: float = 0.1,
                         ddpm_s: float = 300.0, ddim50_s: float = 15.0, lat_epoch: float = 20.0,
                         lat_sample: float = 1.0, lat_fid: float = 60.0, snap_s: float = 350.0) -> dict:
    """Synthetic metrics and costs for C15-C18: a GAN (recall 0.2, 10 classes, KL 0.1) and three
    diffusion configs."""
    def row(fid, recall, classes=10, kl=0.05, **kw):
        return {"fid": fid, "fid_ci95": [fid - 5, fid + 5], "kid": fid / 100, "kid_std": 0.01, "precision": 0.7,
                "recall": recall, "n": 200, "coverage": {"classes_covered": classes, "kl_uniform": kl}, **kw}
    models = {"minimax": {**row(100, 0.2, kl=0.1), "kind": "gan"},
              "linear": {**row(50, recall), "kind": "diffusion", "space": "pixel", "schedule": "linear", "set": "ddim50_eta0"},
              "latent": {**row(lat_fid, recall), "kind": "diffusion", "space": "latent", "schedule": "linear",
                         "set": "ddim50_eta0"}}
    sets = {"snapshot_ddim50_eta0": {**row(70, snap_recall), "role": "snapshot"},
            "sweep_ddpm1000": {**row(40, recall), "role": "sweep", "sampler": "ddpm", "steps": 1000, "eta": 0.0},
            "sweep_ddim50_eta0": {**row(45, recall), "role": "sweep", "sampler": "ddim", "steps": 50, "eta": 0.0},
            "guidance_s0": {**row(50, recall), "role": "guidance", "scale": 0.0, "conditional_accuracy": acc0},
            "guidance_s3": {**row(60, 0.3), "role": "guidance", "scale": 3.0, "conditional_accuracy": acc3}}
    return {"generative": {"metrics": {"floor": {"precision": 0.85, "recall": 0.85}, "models": models,
                                       "diffusion": {"linear": sets}}},
            "generative_sampling": {"cost": {"minimax": {"seconds_per_1000": 0.2}}},
            "gan/minimax": {"cost": {"wall_s": 400.0}},
            "diffusion/linear": {"cost": {"train_seconds_per_epoch": [100.0, 100.0], "snapshot_seconds": snap_s,
                                          "sampling_seconds_per_1000": {
                "ddim50_eta0": 20.0, "sweep_ddpm1000": ddpm_s, "sweep_ddim50_eta0": ddim50_s}}},
            "diffusion/latent": {"cost": {"train_seconds_per_epoch": [lat_epoch], "sampling_seconds_per_1000": {
                "ddim50_eta0": lat_sample}}}}


def test_diffusion_claims_follow_their_criteria():
    rows = {r["id"]: r for r in _table(_diffusion_collected())}
    assert [rows[c]["verdict"] for c in ("C15", "C16", "C17", "C18")] == ["supported"] * 4
    assert "Lower FID on this CPU budget: linear" in rows["C15"]["measured"]
    assert "20.0x faster" in rows["C16"]["measured"] and "Target DDIM-50 KID within 1.2x of DDPM's: met" in rows["C16"]["measured"]
    assert "(5.0x; whole training 200 vs 20 s)" in rows["C17"]["measured"]
    for kw, cid in ((dict(snap_recall=0.1), "C15"), (dict(recall=0.15), "C15"), (dict(snap_s=450.0), "C15"),
                    (dict(ddim50_s=30.0), "C16"),
                    (dict(ddpm_s=15.0, ddim50_s=0.5), "C16"), (dict(lat_epoch=50.0), "C17"), (dict(lat_sample=10.0), "C17"),
                    (dict(lat_fid=80.0), "C17"), (dict(acc3=0.85), "C18"), (dict(acc0=0.5), "C18")):
        row = {r["id"]: r for r in _table(_diffusion_collected(**kw))}[cid]
        assert row["verdict"] == "not_supported", (kw, cid)
    c = _diffusion_collected()
    del c["generative"]["metrics"]["diffusion"]["linear"]["sweep_ddim50_eta0"]
    row = {r["id"]: r for r in _table(c)}["C16"]
    assert row["verdict"] == "not_measured" and "lacks DDIM-50" in row["measured"]


def test_leaderboard_on_one_grid_says_nothing_of_grids_and_ranks_an_empty_model_last(tmp_path):
    a, b = _rob_metrics([]), _rob_metrics([])
    b["linf"]["worst_case"] = {"0": 0.9}  # evaluated at no eps > 0
    _write(tmp_path / "robustness" / "aa" / "metrics.json", b)
    _write(tmp_path / "robustness" / "zz" / "metrics.json", a)
    md = _report(tmp_path).markdown
    assert "over the eps every model was evaluated at (0.05)" in md  # the empty model does not empty it
    assert "different grids" in md  # the two grids differ
    assert md.index("| 1 | zz |") < md.index("| 2 | aa | 100 | — |")
    _write(tmp_path / "robustness" / "aa" / "metrics.json", a)
    assert "different grids" not in _report(tmp_path).markdown
