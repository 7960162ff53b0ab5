"""The report: collect every stage's metrics and cost, render tables and the claims table."""
from __future__ import annotations

import json
from pathlib import Path

from .claims import claims_table


def collect(reports: str | Path) -> dict[str, dict]:
    """Map each stage output under ``reports`` to its metrics and cost.

    ``train/cnn/metrics.json`` and ``train/cnn/cost.json`` give key ``train/cnn``;
    ``attacks/cnn/pgd.json`` and ``attacks/cnn/pgd.cost.json`` give key ``attacks/cnn/pgd``.
    """
    reports = Path(reports)
    out: dict[str, dict] = {}
    for path in sorted(reports.rglob("*.json")):
        if path.parent == reports:
            continue
        folder = path.parent.relative_to(reports).as_posix()
        name = path.name[: -len(".json")]
        if name in ("metrics", "cost"):
            key, kind = folder, name
        elif name.endswith(".cost"):
            key, kind = f"{folder}/{name[: -len('.cost')]}", "cost"
        else:
            key, kind = f"{folder}/{name}", "metrics"
        out.setdefault(key, {})[kind] = json.loads(path.read_text())
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
                 m["metrics"]["n_train"], m["metrics"]["epochs"], f"{100 * m['metrics']['test_accuracy']:.2f}",
                 f"{m['metrics']['test_loss']:.4f}", *_cost_cells(m)] for m in train.values()]
        parts += ["## Classifiers", "",
                  _table(["model", "arch", "params", "train images", "epochs", "test acc %", "test loss",
                          "wall s", "CPU s", "peak RSS MB"], rows), ""]
        per_class = [[m["metrics"]["model"], *(f"{100 * a:.1f}" for a in m["metrics"]["per_class_accuracy"])]
                     for m in train.values()]
        k = len(next(iter(train.values()))["metrics"]["per_class_accuracy"])
        parts += ["### Per-class test accuracy (%)", "", _table(["model", *map(str, range(k))], per_class), ""]
    parts += _robustness_sections(collected)
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


def _pct(v: float | None) -> str:
    return "" if v is None else f"{100 * v:.1f}"


def _robustness_sections(collected: dict) -> list[str]:
    parts: list[str] = []
    rob = {k.split("/", 1)[1]: v["metrics"] for k, v in collected.items()
           if k.startswith("robustness/") and "metrics" in v}
    if rob:
        show = ["0.05", "0.1", "0.2"]
        parts += ["## Robust accuracy (L-inf)", "",
                  "Accuracy (%) under each attack, on the same evaluation images; `worst_case` counts an image "
                  "as robust only if it is classified correctly clean and under every attack run at that eps "
                  "(including Square and transfer where they ran).", ""]
        for name, m in rob.items():
            attacks = list(m["linf"])
            eps_all = list(next(iter(m["linf"].values())))
            rows = [[a, *(_pct(m["linf"][a].get(e)) for e in eps_all)] for a in attacks]
            parts += [f"### {name} (clean {_pct(m['clean_accuracy'])}%, n={m['n']})", "",
                      _table(["attack", *(f"eps={e}" for e in eps_all)], rows), ""]
            if m["l2_pgd"]:
                parts += [_table(["PGD L2", *(f"eps={e}" for e in m["l2_pgd"])],
                                 [["pgd_l2", *(_pct(v) for v in m["l2_pgd"].values())]]), ""]
        parts += ["### Headline (L-inf)", "", _table(
            ["model", "clean", *(f"{a} @{e}" for e in show for a in ("FGSM", "PGD-20", "APGD-CE", "APGD-DLR", "worst"))],
            [[n, _pct(m["clean_accuracy"]), *(_pct(m["linf"].get(a, {}).get(e)) for e in show
                                            for a in ("fgsm", "pgd", "apgd_ce", "apgd_dlr", "worst_case"))]
             for n, m in rob.items()]), ""]
        parts += ["## Sanity checks", "", "Run automatically on every model's results; failures are also printed "
                  "by the robustness stage.", ""]
        rows = []
        for n, m in rob.items():
            rows += [[n, c["name"], "pass" if c["passed"] else "**FAIL**", c["detail"]] for c in m["checks"]]
        parts += [_table(["model", "check", "result", "detail"], rows), ""]
    sq = {k.split("/")[1]: v["metrics"]["square"] for k, v in collected.items()
          if k.startswith("attacks/") and k.endswith("/square") and "square" in v.get("metrics", {})}
    if sq:
        budgets = sorted(next(iter(sq.values()))["success_at_budget"], key=int)
        first = next(iter(sq.values()))
        parts += ["## Square Attack: success against query budget", "",
                  f"L-inf eps={first['eps']:g}; hours assume a rate limit of {first['queries_per_minute']:g} queries "
                  "per minute.", "",
                  _table(["model", *(f"{b} q ({first['hours_at_rate_limit'][b]:.1f} h)" for b in budgets)],
                         [[n, *(_pct(s["success_at_budget"][b]) for b in budgets)] for n, s in sq.items()]), ""]
    tr = collected.get("transfer", {}).get("metrics")
    if tr:
        targets = list(tr["clean"])
        parts += ["## Transfer matrix", "", f"Accuracy (%) of each target (columns) on PGD-{tr['steps']} examples "
                  f"crafted on each source (rows), eps={tr['eps']:g}; the diagonal is white box.", "",
                  _table(["source \\ target", *targets],
                         [["clean", *(_pct(tr["clean"][t]) for t in targets)]] +
                         [[s, *(_pct(r[t]) for t in targets)] for s, r in tr["matrix"].items()]), ""]
    fg = collected.get("forge", {}).get("metrics")
    if fg:
        c1, c2 = fg["c1"], fg["c2"]
        parts += ["## Forged inputs (C1, C2)", "", _table(
            ["experiment", "success %", "detail"],
            [["C1 from noise", _pct(c1["success_rate"]),
              f"median steps {c1['median_steps']:.0f}, mean target confidence {c1['mean_target_confidence']:.3f}, "
              f"feature NN ratio forged/real {c1['realism']['feature']['ratio']:.2f}"]] +
            [[f"C2 from image ({k})", _pct(v["success_rate"]),
              f"median L2 {v['median_l2']:.3f}, Linf {v['median_linf']:.3f}"] for k, v in c2.items()]), ""]
    pt = collected.get("patch", {}).get("metrics")
    if pt:
        parts += ["## Universal patch (C8)", "", _table(
            ["patch", "success %", "NPS", "TV"],
            [[k, _pct(v["success_rate"]), f"{v['nps']:.3f}", f"{v['tv']:.3f}"] for k, v in pt["patches"].items()]), ""]
    dm = collected.get("dimension", {}).get("metrics")
    if dm:
        parts += ["## Dimension (C4)", "", _table(
            ["model", "d", "clean %", f"FGSM eps={dm['eps']:g} %", "margin drop", "eps*||w_y - w_j||_1"],
            [[k, r["dim"], _pct(r["clean_accuracy"]), _pct(r["fgsm_accuracy"]), f"{r['mean_margin_drop']:.3f}",
              f"{r['mean_eps_l1_bound']:.3f}"] for k, r in dm["models"].items()]), ""]
    return parts


def build_report(reports: str | Path) -> tuple[str, list[dict], dict]:
    """Return (summary markdown, claims rows, headline metrics) for the folder ``reports``."""
    collected = collect(reports)
    claims = claims_table(collected)
    return render(collected, claims), claims, summary_metrics(collected, claims)
