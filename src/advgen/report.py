"""The report: collect every stage's metrics and cost, render tables and the claims table."""
from __future__ import annotations

import json
from pathlib import Path

from .claims import claims_table


def collect(reports: str | Path) -> dict[str, dict]:
    """Map each stage output under ``reports`` to its metrics and cost.

    ``train/cnn/metrics.json`` gives key ``train/cnn``, ``attacks/cnn/pgd.json`` key
    ``attacks/cnn/pgd``; costs come from ``cost/<key>.json`` (``cost/train/cnn.json``).
    Costs are read but are not the report's DVC deps: they change on every run.
    """
    reports = Path(reports)
    out: dict[str, dict] = {}
    for path in sorted(reports.rglob("*.json")):
        rel = path.relative_to(reports)
        if len(rel.parts) == 1:  # the report's own outputs
            continue
        if rel.parts[0] == "cost":
            key, kind = rel.with_suffix("").relative_to("cost").as_posix(), "cost"
        elif path.name == "metrics.json":
            key, kind = rel.parent.as_posix(), "metrics"
        else:
            key, kind = rel.with_suffix("").as_posix(), "metrics"
        out.setdefault(key, {})[kind] = json.loads(path.read_text())
    return out


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(str(h).replace("|", "\\|") for h in header) + " |", "|" + "---|" * len(header)]
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
    robust = {k.split("/", 1)[1]: {"worst_case": v["metrics"]["linf"]["worst_case"],
                                   "checks_failed": v["metrics"]["checks_failed"]}
              for k, v in collected.items() if k.startswith("robustness/") and "metrics" in v}
    return {"test_accuracy": train, "claims": verdicts, "robustness": robust}


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
                 m["metrics"]["n_train"], m["metrics"]["epochs"],
                 _pct_ci(m["metrics"]["test_accuracy"], m["metrics"].get("test_accuracy_ci95")),
                 f"{m['metrics']['test_loss']:.4f}", *_cost_cells(m)] for m in train.values()]
        parts += ["## Classifiers", "",
                  _table(["model", "arch", "params", "train images", "epochs", "test acc % [95% CI]", "test loss",
                          "wall s", "CPU s", "peak RSS MB"], rows), ""]
        per_class = [[m["metrics"]["model"], *(f"{100 * a:.1f}" for a in m["metrics"]["per_class_accuracy"])]
                     for m in train.values()]
        k = len(next(iter(train.values()))["metrics"]["per_class_accuracy"])
        parts += ["### Per-class test accuracy (%)", "", _table(["model", *map(str, range(k))], per_class), ""]
    parts += _robustness_sections(collected)
    costs = [[key, *_cost_cells(v)] for key, v in collected.items() if "cost" in v]
    parts += ["## Cost of each stage", "", "Wall and CPU seconds and peak RSS of the last run of each stage, from "
              "`reports/cost/` (these vary from run to run, so the report does not depend on them and may show "
              "the costs of an earlier run; every other figure is deterministic).", "",
              _table(["stage", "wall s", "CPU s", "peak RSS MB"], costs), ""]
    parts += ["## Claims", "", "Criteria are fixed in `src/advgen/claims.py` before the runs; "
              "a claim the data does not support is reported as such.", "",
              _table(["id", "claim", "experiment", "measured", "criterion", "verdict"],
                     [[r["id"], r["claim"], r["experiment"], r["measured"], r["criterion"], f"**{r['verdict']}**"]
                      for r in claims]), ""]
    return "\n".join(parts)


def _pct(v: float | None) -> str:
    return "" if v is None else f"{100 * v:.1f}"


def _pct_ci(v: float | None, ci: list[float] | None) -> str:
    """``52.4 [49.3, 55.5]``: a percentage with its 95% interval."""
    if v is None:
        return ""
    return _pct(v) if not ci else f"{_pct(v)} [{_pct(ci[0])}, {_pct(ci[1])}]"


CASCADE_COLUMNS = ("clean", "fgsm", "pgd", "apgd_ce", "apgd_t", "transfer", "square")


def _cascade_cells(c: dict) -> list[str]:
    """Images each stage broke, in :data:`CASCADE_COLUMNS` order ("" where a stage did not run)."""
    broke: dict[str, int] = {}
    for r in c["stages"]:
        key = "transfer" if r["stage"].startswith("transfer_from_") else r["stage"]
        broke[key] = broke.get(key, 0) + r["broke"]
    return [str(broke[k]) if k in broke else "" for k in CASCADE_COLUMNS]


def _robustness_sections(collected: dict) -> list[str]:
    parts: list[str] = []
    rob = {k.split("/", 1)[1]: v["metrics"] for k, v in collected.items()
           if k.startswith("robustness/") and "metrics" in v}
    if rob:
        parts += ["## Robust accuracy (L-inf)", "",
                  "Accuracy (%) with its 95% Wilson interval, on the same evaluation images. FGSM, PGD and noise "
                  "are **per-attack curves**: each attack runs on every image at every eps. `worst case` is a "
                  "**cascade figure** (AutoAttack's convention): an image counts as robust only if it is classified "
                  "correctly clean and survives, in order, FGSM, PGD, APGD-CE, APGD-T (targeted DLR), the transfer "
                  "attacks (at their eps) and Square (on the survivors among the first `n_square` images of the "
                  "evaluation set: 200 in the default profile); each attack runs only on "
                  "the images every earlier one left robust, and stops on an image once it is fooled.", ""]
        for name, m in rob.items():
            eps_all = list(m["linf"]["worst_case"])
            ci = m.get("linf_ci95", {})
            rows = [[("worst case (cascade)" if a == "worst_case" else a),
                     *(_pct_ci(m["linf"][a].get(e), ci.get(a, {}).get(e)) for e in eps_all)] for a in m["linf"]]
            parts += [f"### {name} (clean {_pct_ci(m['clean_accuracy'], m.get('clean_ci95'))}%, n={m['n']})", "",
                      _table(["attack", *(f"eps={e}" for e in eps_all)], rows), ""]
            if m["l2_pgd"]:
                parts += [_table(["PGD L2", *(f"eps={e}" for e in m["l2_pgd"])],
                                 [["pgd_l2", *(_pct_ci(v, m.get("l2_pgd_ci95", {}).get(e))
                                               for e, v in m["l2_pgd"].items())]]), ""]
            if m.get("cascade"):
                parts += [f"Cascade of {name}: images each stage broke (the first to fool them), and what is left; "
                          "`transfer` sums the transfer attacks (run at their eps only), and the last column counts "
                          "images a black-box attack broke after every white-box attack missed them.", "",
                          _table(["eps", *CASCADE_COLUMNS, "robust", "black box after white box"],
                                 [[f"{c['eps']:g}", *_cascade_cells(c), int(round(c["robust"]["accuracy"] * c["n"])),
                                   c["masking_points"]] for c in m["cascade"]]), ""]
            if m.get("convergence"):
                rows = [[e, r["budget"], _pct_ci(r["accuracy"], r["ci95"]),
                         "" if "standalone_vs_headline_apgd_ce" not in r else
                         f"{r['standalone_vs_headline_apgd_ce']['only_b']} / {r['standalone_vs_headline_apgd_ce']['only_a']}"]
                        for e, rs in m["convergence"].items() for r in rs]
                parts += [f"Convergence of {name}: the worst case with stronger budgets added (re-attacking "
                          "every image the headline APGD-CE saw); last column: images the stronger budget fools "
                          "that the headline APGD-CE did not / the reverse.", "",
                          _table(["eps", "budget", "worst case %", "new / lost"], rows), ""]
        show = ["0.025", "0.05", "0.1"]
        parts += ["### Headline (L-inf)", "", _table(
            ["model", "clean", *(f"{a} @{e}" for e in show for a in ("FGSM", "PGD-20", "worst (cascade)"))],
            [[n, _pct(m["clean_accuracy"]), *(_pct_ci(m["linf"].get(a, {}).get(e), m.get("linf_ci95", {}).get(a, {}).get(e))
                                            for e in show for a in ("fgsm", "pgd", "worst_case"))]
             for n, m in rob.items()]), ""]
        parts += ["## Sanity checks", "", "Run automatically on every model's results; failures are also printed "
                  "by the robustness stage. Comparisons of two figures on the same images use an exact paired "
                  "(McNemar sign) test at p < 0.01. Facts that hold by construction (eps = 0 equals clean; the "
                  "worst case never exceeds clean) are asserted, not counted as checks.", ""]
        rows = []
        for n, m in rob.items():
            rows += [[n, c["name"], "pass" if c["passed"] else "**FAIL**", c["detail"]] for c in m["checks"]]
        parts += [_table(["model", "check", "result", "detail"], rows), ""]
        notes = [f"- {n}: {o}" for n, m in rob.items() for o in m.get("observations", [])]
        if notes:
            parts += ["Observations (expected behaviour, not failures):", "", *notes, ""]
    sq = {k.split("/")[1]: v["metrics"]["square"] for k, v in collected.items()
          if k.startswith("attacks/") and k.endswith("/square") and "square" in v.get("metrics", {})}
    if sq:
        budgets = sorted(next(iter(sq.values()))["success_at_budget"], key=int)
        first = next(iter(sq.values()))
        parts += ["## Square Attack: success against query budget", "",
                  f"L-inf eps={first['eps']:g}, success (%) among the initially correct images with its 95% interval "
                  f"(C7's standalone experiment); hours assume a rate limit of {first['queries_per_minute']:g} "
                  "queries per minute.", "",
                  _table(["model", *(f"{b} q ({first['hours_at_rate_limit'][b]:.1f} h)" for b in budgets)],
                         [[n, *(_pct_ci(s["success_at_budget"][b], s.get("success_ci95", {}).get(b)) for b in budgets)]
                          for n, s in sq.items()]), ""]
    tr = collected.get("transfer", {}).get("metrics")
    if tr:
        targets = list(tr["clean"])
        parts += ["## Transfer matrix", "", f"Accuracy (%) of each target (columns) on PGD-{tr['steps']} examples "
                  f"crafted on each source (rows), eps={tr['eps']:g}; the diagonal is white box.", "",
                  _table(["source \\ target", *targets],
                         [["clean", *(_pct_ci(tr["clean"][t], tr.get("clean_ci95", {}).get(t)) for t in targets)]] +
                         [[s, *(_pct_ci(r[t], tr.get("matrix_ci95", {}).get(s, {}).get(t)) for t in targets)]
                          for s, r in tr["matrix"].items()]), ""]
    fg = collected.get("forge", {}).get("metrics")
    if fg:
        c1, c2 = fg["c1"], fg["c2"]
        parts += ["## Forged inputs (C1, C2)", "", _table(
            ["experiment", "success %", "detail"],
            [["C1 from noise", _pct_ci(c1["success_rate"], c1.get("success_ci95")),
              f"median steps {c1['median_steps']:.0f}, mean target confidence {c1['mean_target_confidence']:.3f}, "
              f"feature NN ratio forged/real {c1['realism']['feature']['ratio']:.2f}"]] +
            [[f"C2 from image ({k})", _pct_ci(v["success_rate"], v.get("success_ci95")),
              f"median L2 {v['median_l2']:.3f}, Linf {v['median_linf']:.3f}"] for k, v in c2.items()]), ""]
    pt = collected.get("patch", {}).get("metrics")
    if pt and pt.get("sizes"):
        parts += _patch_section(pt)
    dm = collected.get("dimension", {}).get("metrics")
    if dm:
        parts += ["## Dimension (C4)", "", _table(
            ["model", "d", "clean %", f"FGSM eps={dm['eps']:g} %", "margin drop", "eps*||w_y - w_j||_1"],
            [[k, r["dim"], _pct_ci(r["clean_accuracy"], r.get("clean_ci95")), _pct_ci(r["fgsm_accuracy"], r.get("fgsm_ci95")),
              f"{r['mean_margin_drop']:.3f}",
              f"{r['mean_eps_l1_bound']:.3f}"] for k, r in dm["models"].items()]), ""]
    return parts


def _patch_section(pt: dict) -> list[str]:
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
    return ["## Universal patch (C8)", "",
            f"Targeted success (% [95% Wilson interval]) of one universal k x k patch pasted at random locations "
            f"on n={n} held-out images not of the target class ({target}), with the NPS and TV terms (per-pixel "
            f"weights w_nps={ab['w_nps']:g}, w_tv={ab['w_tv']:g}) and without them; the last two columns give "
            "the NPS and TV of those two patches.", "",
            _table(["k", "area %", "with NPS+TV", "without", "random patch", "grey patch", "NPS with / without",
                    "TV with / without"], rows), "",
            f"Weight ablation at {ab['size']}x{ab['size']} ({100 * ab['area_fraction']:.1f}% of the image): "
            "both weights scaled together; scale 0 is the patch without the terms.", "",
            _table(["scale", "w_nps", "w_tv", "success %", "NPS", "TV"], ab_rows), ""]


def build_report(reports: str | Path) -> tuple[str, list[dict], dict]:
    """Return (summary markdown, claims rows, headline metrics) for the folder ``reports``."""
    collected = collect(reports)
    claims = claims_table(collected)
    return render(collected, claims), claims, summary_metrics(collected, claims)
