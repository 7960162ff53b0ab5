"""The attacks sections of the report: the leaderboard, robust accuracy per model and the
cascade, the sanity checks, adversarial examples, Square's query budget (C7), the transfer
matrix (C6), forged inputs (C1, C2), the universal patch (C8) and input dimension (C4), with
the robustness figures.

A part of :func:`advgen.report.make_report` (listed in :mod:`advgen.areas`); helpers come from
the core :mod:`advgen.report`, never the other way round. It imports no torch itself.
"""
from __future__ import annotations

from pathlib import Path

from .. import plots
from ..claims import at_or
from ..document import Bullets, Cell, Image, Paragraph, Section, Table
from ..report import MISSING, figure_images, figure_name, files, models, num, pct, pct_ci, read_tsv

ROBUSTNESS = "Robust accuracy (L-inf)"
SQUARE = "Square Attack: success against query budget"
TRANSFER = "Transfer matrix"
FORGE = "Forged inputs (C1, C2)"
PATCH = "Universal patch (C8)"
DIMENSION = "Dimension (C4)"

#: The section that shows each claim's experiment (C3 is a worked example: none).
CLAIM_SECTIONS = {"C1": FORGE, "C2": FORGE, "C4": DIMENSION, "C5": ROBUSTNESS, "C6": TRANSFER, "C7": SQUARE,
                  "C8": PATCH}


# ---------------------------------------------------------------------------------------------
# Figures


def _linf_tables(reports: Path, collected: dict) -> dict[str, dict[str, list[float]]]:
    return {k.split("/", 1)[1]: read_tsv(reports / k / "linf.tsv") for k, v in collected.items()
            if k.startswith("robustness/") and k.count("/") == 1 and "linf.tsv" in v.get("files", [])}


def _robustness_figures(reports: Path, collected: dict) -> dict[str, bytes]:
    tables = _linf_tables(reports, collected)
    out = {figure_name("robustness", m): plots.robustness_plot(m, t) for m, t in tables.items() if "eps" in t}
    if any("eps" in t and "worst_case" in t for t in tables.values()):
        out["figures/worst_case.png"] = plots.worst_case_plot({m: t for m, t in tables.items() if "eps" in t})
    return out


# ---------------------------------------------------------------------------------------------
# Helpers


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


def _leaderboard(collected: dict) -> list[Section]:
    rob = models(collected, "robustness")
    if not rob:
        return []
    # test accuracy on the whole test set: the train stage's, the defend stage's for a defended model,
    # the import_model stage's for one trained outside the pipeline
    tested = {**models(collected, "defend"), **models(collected, "imports"), **models(collected, "train")}
    grids = {n: _eps_sorted(e for e in m["linf"].get("worst_case", {}) if float(e) > 0) for n, m in rob.items()}
    eps = _eps_sorted({e for g in grids.values() for e in g})
    # the eps every model was evaluated at (a model with no worst case at all ranks last, apart)
    common = [e for e in eps if all(e in g for g in grids.values() if g)]

    def mean_worst(m: dict) -> float:
        w = [m["linf"]["worst_case"][e] for e in common if e in m["linf"].get("worst_case", {})]
        return sum(w) / len(w) if w else -1.0

    ranked = sorted(rob, key=lambda n: (-mean_worst(rob[n]), n))
    rows = []
    for rank, name in enumerate(ranked, 1):
        m, t = rob[name], tested.get(name, {})
        worst, ci = m["linf"].get("worst_case", {}), m.get("linf_ci95", {}).get("worst_case", {})
        rows.append([rank, name, m.get("n", MISSING), ", ".join(grids[name]) or MISSING,
                     pct_ci(t.get("test_accuracy"), t.get("test_accuracy_ci95")),
                     pct_ci(m.get("clean_accuracy"), m.get("clean_ci95")),
                     pct(mean_worst(m) if common and grids[name] else None, placeholder=MISSING),
                     *(pct_ci(worst.get(e), ci.get(e)) if e in worst else MISSING for e in eps)])
    rule = (f"their mean worst-case (cascade) accuracy over the eps every model was evaluated at ({', '.join(common)})"
            if common else "name (no eps is shared by every model's evaluation)")
    mixed = len({tuple(g) for g in grids.values()}) > 1 or len({m.get("n") for m in rob.values()}) > 1
    note = ("Models are evaluated on different grids or numbers of images (columns `eps grid` and `n`; the "
            "defend stage's models survive most attacks, so each attack costs several times more on them); "
            "`—` marks an eps a model was not evaluated at. " if mixed else "")
    return [Section("Leaderboard (L-inf worst case)", [
        Paragraph(f"Models ranked by {rule}. {note}Accuracy (%) with its 95% Wilson interval: `test acc` on "
                  "the whole test set (train, defend or import_model stage), `clean` and the worst case on the "
                  "model's `n` robustness evaluation images."),
        Table(["rank", "model", "n", "eps grid", "test acc %", "clean %", "mean worst %",
               *(f"worst @{e}" for e in eps)], rows, id="leaderboard"),
        *figure_images(collected, "figures/worst_case.png", "Worst-case (cascade) robust accuracy against L-inf eps")])]


def _robustness(collected: dict) -> list[Section]:
    rob = models(collected, "robustness")
    if not rob:
        return []
    out = [Section(ROBUSTNESS, [Paragraph(
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
                 *(pct_ci(m["linf"][a].get(e), ci.get(a, {}).get(e)) for e in eps_all)] for a in m["linf"]]
        blocks: list = [Table(["attack", *(f"eps={e}" for e in eps_all)], rows)]
        if m["l2_pgd"]:
            blocks.append(Table(["PGD L2", *(f"eps={e}" for e in m["l2_pgd"])],
                                [["pgd_l2", *(pct_ci(v, m.get("l2_pgd_ci95", {}).get(e))
                                              for e, v in m["l2_pgd"].items())]]))
        blocks += figure_images(collected, figure_name("robustness", name), f"Robust accuracy of {name} against L-inf eps")
        if m.get("cascade"):
            blocks += [Paragraph(
                f"Cascade of {name}: images each stage broke (the first to fool them), and what is left; "
                "`transfer` sums the transfer attacks (run at their eps only), and the last column counts "
                "images a black-box attack broke after every white-box attack missed them."),
                Table(["eps", *CASCADE_COLUMNS, "robust", "black box after white box"],
                      [[f"{c['eps']:g}", *_cascade_cells(c), round(c["robust"]["accuracy"] * c["n"]),
                        c["masking_points"]] for c in m["cascade"]])]
        if m.get("convergence"):
            rows = [[e, r["budget"], pct_ci(r["accuracy"], r["ci95"]),
                     "" if "standalone_vs_headline_apgd_ce" not in r else
                     f"{r['standalone_vs_headline_apgd_ce']['only_b']} / {r['standalone_vs_headline_apgd_ce']['only_a']}"]
                    for e, rs in m["convergence"].items() for r in rs]
            blocks += [Paragraph(
                f"Convergence of {name}: the worst case with stronger budgets added (re-attacking "
                "every image the headline APGD-CE saw); last column: images the stronger budget fools "
                "that the headline APGD-CE did not / the reverse."),
                Table(["eps", "budget", "worst case %", "new / lost"], rows)]
        out.append(Section(f"{name} (clean {pct_ci(m['clean_accuracy'], m.get('clean_ci95'))}%, n={m['n']})",
                           blocks, level=3))
    show = (0.025, 0.05, 0.1)
    out.append(Section("Headline (L-inf)", [Table(
        ["model", "clean", *(f"{a} @{e:g}" for e in show for a in ("FGSM", "PGD-20", "worst (cascade)"))],
        [[n, pct(m["clean_accuracy"]), *(pct_ci(at_or(m["linf"].get(a, {}), e), at_or(m.get("linf_ci95", {}).get(a, {}), e))
                                       for e in show for a in ("fgsm", "pgd", "worst_case"))]
         for n, m in rob.items()])], level=3))
    return out


def _checks(collected: dict) -> list[tuple[str, dict]]:
    return [(n, c) for n, m in models(collected, "robustness").items() for c in m.get("checks", [])]


def _sanity(collected: dict) -> list[Section]:
    rob = models(collected, "robustness")
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


def _examples(collected: dict) -> list[Section]:
    images = [Image(f"{k}/{f}", f"{k.split('/', 1)[1]}: {f.rsplit('.', 1)[0]}")
              for k, v in collected.items() if k.startswith("attacks/") and k.count("/") == 1
              for f in v.get("files", []) if f.endswith(".png")]
    if not images:
        return []
    return [Section("Adversarial examples", [Paragraph(
        "The examples each attack stage draws (`reports/attacks/<model>/<attack>.png`): clean images, "
        "their adversarial versions and the perturbations."), *images])]


def _square(collected: dict) -> list[Section]:
    sq = {k.split("/")[1]: v["metrics"]["square"] for k, v in collected.items()
          if k.startswith("attacks/") and k.endswith("/square") and "square" in v.get("metrics", {})}
    if not sq:
        return []
    budgets = sorted(next(iter(sq.values()))["success_at_budget"], key=int)
    first = next(iter(sq.values()))
    return [Section(SQUARE, [
        Paragraph(f"L-inf eps={first['eps']:g}, success (%) among the initially correct images with its 95% interval "
                  f"(C7's standalone experiment); hours assume a rate limit of {first['queries_per_minute']:g} "
                  "queries per minute."),
        Table(["model", *(f"{b} q ({num(first['hours_at_rate_limit'][b])} h)" for b in budgets)],
              [[n, *(pct_ci(s["success_at_budget"][b], s.get("success_ci95", {}).get(b)) for b in budgets)]
               for n, s in sq.items()])])]


def _transfer(collected: dict) -> list[Section]:
    tr = collected.get("transfer", {}).get("metrics")
    if not tr:
        return []
    targets = list(tr["clean"])
    return [Section(TRANSFER, [
        Paragraph(f"Accuracy (%) of each target (columns) on PGD-{tr['steps']} examples "
                  f"crafted on each source (rows), eps={tr['eps']:g}; the diagonal is white box."),
        Table(["source \\ target", *targets],
              [["clean", *(pct_ci(tr["clean"][t], tr.get("clean_ci95", {}).get(t)) for t in targets)]] +
              [[s, *(pct_ci(r[t], tr.get("matrix_ci95", {}).get(s, {}).get(t)) for t in targets)]
               for s, r in tr["matrix"].items()])])]


def _forge(collected: dict) -> list[Section]:
    fg = collected.get("forge", {}).get("metrics")
    images = [Image(f"forge/{f}", caption) for f, caption in
              (("c1.png", "C1: forged from noise"), ("c2.png", "C2: forged from a real image"))
              if f in files(collected, "forge")]
    if not fg and not images:
        return []
    blocks: list = []
    if fg:
        c1, c2 = fg["c1"], fg["c2"]
        blocks.append(Table(
            ["experiment", "success %", "detail"],
            [["C1 from noise", pct_ci(c1["success_rate"], c1.get("success_ci95")),
              (f"median steps {num(c1['median_steps'], 0)}, mean target confidence "
               f"{num(c1['mean_target_confidence'], 3)}, feature NN ratio forged/real "
               f"{num(c1['realism']['feature']['ratio'], 2)}")]] +
            [[f"C2 from image ({k})", pct_ci(v["success_rate"], v.get("success_ci95")),
              f"median L2 {num(v['median_l2'], 3)}, Linf {num(v['median_linf'], 3)}"] for k, v in c2.items()]))
    return [Section(FORGE, blocks + images)]


def _patch(collected: dict) -> list[Section]:
    pt = collected.get("patch", {}).get("metrics")
    if not (pt and pt.get("sizes")):
        return []
    s = patch_section(pt)
    if "examples.png" in files(collected, "patch"):
        s.blocks.append(Image("patch/examples.png", "Universal patch: the patches and patched images"))
    return [s]


def patch_section(pt: dict) -> Section:
    """The universal patch (C8): success against patch size, and the NPS/TV weight ablation."""
    def rate(r: dict) -> str:
        return pct_ci(r["success_rate"], r.get("ci95"))

    curve = sorted(pt["sizes"].values(), key=lambda e: e["size"])
    n = curve[0]["patches"]["with_terms"]["n"]
    target = pt.get("target_name") or pt.get("target")
    rows = [[e["size"], pct(e["area_fraction"]), *(rate(e["patches"][v]) for v in
             ("with_terms", "without_terms", "random_baseline", "grey_baseline")),
             *(f"{num(e['patches']['with_terms'][t], 3)} / {num(e['patches']['without_terms'][t], 3)}"
               for t in ("nps", "tv"))]
            for e in curve]
    ab = pt["ablation"]
    ab_rows = [[f"{s['scale']:g}", f"{s['w_nps']:g}", f"{s['w_tv']:g}", rate(s), num(s["nps"], 3),
                num(s["tv"], 3)] for s in sorted(ab["scales"].values(), key=lambda s: s["scale"])]
    return Section(PATCH, [
        Paragraph(f"Targeted success (% [95% Wilson interval]) of one universal k x k patch pasted at random locations "
                  f"on n={n} held-out images not of the target class ({target}), with the NPS and TV terms (per-pixel "
                  f"weights w_nps={ab['w_nps']:g}, w_tv={ab['w_tv']:g}) and without them; the last two columns give "
                  "the NPS and TV of those two patches."),
        Table(["k", "area %", "with NPS+TV", "without", "random patch", "grey patch", "NPS with / without",
               "TV with / without"], rows),
        Paragraph(f"Weight ablation at {ab['size']}x{ab['size']} ({pct(ab['area_fraction'])}% of the image): "
                  "both weights scaled together; scale 0 is the patch without the terms."),
        Table(["scale", "w_nps", "w_tv", "success %", "NPS", "TV"], ab_rows)])


def _dimension(collected: dict) -> list[Section]:
    dm = collected.get("dimension", {}).get("metrics")
    if not dm:
        return []
    return [Section(DIMENSION, [Table(
        ["model", "d", "clean %", f"FGSM eps={dm['eps']:g} %", "margin drop", "eps*||w_y - w_j||_1"],
        [[k, r["dim"], pct_ci(r["clean_accuracy"], r.get("clean_ci95")),
          pct_ci(r["fgsm_accuracy"], r.get("fgsm_ci95")),
          num(r["mean_margin_drop"], 3), num(r["mean_eps_l1_bound"], 3)] for k, r in dm["models"].items()])])]


SECTIONS = (_leaderboard, _robustness, _sanity, _examples, _square, _transfer, _forge, _patch, _dimension)
FIGURES = (_robustness_figures,)
