"""The defenses sections of the report (C9, C9a, C9b): defended models' robustness and training
cost, the catastrophic-overfitting monitor, feature squeezing naive against adaptive, randomized
smoothing, and output layers that hide information (label-only and rounded-score APIs).

A part of :func:`advgen.report.make_report` (listed in :mod:`advgen.areas`); helpers come from
the core :mod:`advgen.report`, never the other way round. It imports no torch itself.
"""
from __future__ import annotations

from pathlib import Path

from ..claims import at_or
from ..document import Cell, Paragraph, Section, Table
from ..report import MISSING, figure_images, models, num, pct, pct_ci
from .claims import p_text

DEFENSES = "Defenses (C9)"
SANITIZE = "Feature squeezing: naive against adaptive (C9a)"

HIDING = "Hiding information: label-only and rounded-score APIs (C9b)"

#: The section that shows each claim's experiment.
CLAIM_SECTIONS = {"C9": DEFENSES, "C9a": SANITIZE, "C9b": HIDING}

EPS = (0.05, 0.1)  # the eps the defenses are compared at
TRAINING_EPS = 0.1
COLUMNS = (("fgsm", "FGSM"), ("pgd", "PGD-20"), ("apgd_ce", "APGD-CE"), ("square", "Square"))


def _attack(collected: dict, model: str, attack: str, eps: float) -> str:
    m = collected.get(f"attacks/{model}/{attack}", {}).get("metrics")
    if not m or at_or(m.get("accuracy", {}), eps) is None:
        return MISSING
    return pct_ci(at_or(m["accuracy"], eps), at_or(m.get("accuracy_ci95", {}), eps))


def _flags(rob: dict, dm: dict | None) -> str:
    failed = [c["name"] for c in rob.get("checks", []) if not c["passed"]]
    out = []
    if rob.get("gradient_masking"):
        out.append("GRADIENT MASKING (black box beat white box)")
    if failed:
        out.append(f"{len(failed)} check(s) failed: " + ", ".join(failed))
    if dm and dm.get("catastrophic_overfitting"):
        out.append(f"catastrophic overfitting at epoch {dm['collapse_epoch']}")
    return "; ".join(out) or "ok"


def defended(collected: dict) -> dict[str, dict]:
    """``{model: defend metrics}`` of the defended models."""
    return models(collected, "defend")


def _defenses(collected: dict) -> list[Section]:
    dm = defended(collected)
    if not dm:
        return []
    rob = models(collected, "robustness")
    base = next(iter(dm.values()))["defense"].get("base", "cnn")
    names = [n for n in [base, *dm] if n in rob]
    rows = []
    for n in names:
        m = rob[n]
        for e in EPS:
            rows.append([n if e == EPS[0] else "", f"{e:g}", pct_ci(m["clean_accuracy"], m.get("clean_ci95")) if e == EPS[0] else "",
                         *(pct_ci(at_or(m["linf"][a], e), at_or(m["linf_ci95"].get(a, {}), e)) if a in m["linf"]
                           and at_or(m["linf"][a], e) is not None else _attack(collected, n, a, e) for a, _ in COLUMNS),
                         pct_ci(at_or(m["linf"]["worst_case"], e), at_or(m["linf_ci95"]["worst_case"], e)),
                         m["n"] if e == EPS[0] else ""])
    blocks: list = [
        Paragraph(f"Every defended model has the architecture of `{base}` and is trained from scratch by the train "
                  "stage's loop with its defense's per-batch loss (`src/advgen/defenses/`), then evaluated by the "
                  "same attack and robustness stages as every model: FGSM, PGD-20, APGD-CE and Square (5,000 "
                  "queries, on the first `n_square` images) as standalone attacks, and the worst case as the "
                  "cascade (clean, FGSM, PGD, APGD-CE, APGD-T, Square). Accuracy in % with 95% Wilson intervals; "
                  f"defended models on their evaluation subset (`attack.defended_sizes`), `{base}` on its own "
                  "(a superset; see the paired test below)."),
        Table(["model", "eps", "clean", *(c for _, c in COLUMNS), "worst case (cascade)", "n"], rows)]
    cost_rows = []
    base_cost = collected.get(f"train/{base}", {})
    base_epochs = base_cost.get("metrics", {}).get("epochs")
    for n, d in dm.items():
        cost = collected.get(f"defend/{n}", {}).get("cost", {})
        vs = at_or(rob.get(n, {}).get("vs_base", {}).get("eps", {}), TRAINING_EPS)
        paired = "" if not vs else (f"{pct(vs['defended_worst_case'])} vs {pct(vs['base_pgd'])} "
                                    f"(p = {vs['paired']['p_a_higher']:.2g})")
        config = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in d["defense"].items() if k not in ("method", "base", "source_weights_sha256"))
        cost_rows.append([n, d["defense"]["method"], config, f"{d['epochs_run']}/{d['epochs']}",
                          num(cost.get("wall_s"), 0), f"{d['training_grad_evals'] / 1e6:.2f}",
                          paired, Cell(_flags(rob.get(n, {}), d), "pass" if _flags(rob.get(n, {}), d) == "ok" else "fail")])
    blocks += [
        Paragraph(f"Training cost: wall seconds of the stage (from `reports/cost/defend/`, this run's machine) and "
                  "per-example gradient evaluations (parameter updates, inner-attack input gradients and, for "
                  f"augment, crafting), against `{base}`'s {base_epochs} epochs of standard training for scale. "
                  f"`worst vs {base} PGD @0.1`: the defended model's cascade worst case against `{base}`'s PGD-20 "
                  "accuracy on the same images, with the exact paired test's p-value (that the defended model is "
                  "not more robust). Flags: failed sanity checks of the robustness stage, gradient masking (a "
                  "black-box attack broke images every white-box attack missed), catastrophic overfitting."),
        Table(["model", "method", "config", "epochs", "wall s", "grad evals (M)", f"worst vs {base} PGD @0.1",
               "flags"], cost_rows)]
    monitor_rows = [[n, ", ".join(pct(v) for v in d["monitor"]["pgd_acc"]),
                     ", ".join(pct(v) for v in d["monitor"]["fgsm_acc"]),
                     "yes" if d["catastrophic_overfitting"] else "no"]
                    for n, d in dm.items() if d.get("monitor")]
    if monitor_rows:
        mon = next(d["monitor"] for d in dm.values() if d.get("monitor"))
        blocks += [Paragraph(
            f"Catastrophic-overfitting monitor (Wong et al. 2020): after every epoch, PGD-{mon['steps']} and FGSM at "
            f"the training eps on {mon['n']} fixed training images; a collapse is a PGD accuracy "
            f"{100 * mon['drop']:.0f} points below its best so far. Per epoch, %:"),
            Table(["model", "monitor PGD", "monitor FGSM", "collapse"], monitor_rows)]
    return [Section(DEFENSES, blocks)]


def _acc(entry: dict | None) -> str:
    return MISSING if not entry else pct_ci(entry.get("accuracy"), entry.get("ci95"))


def _rate(v: float | None, ci: list[float] | None = None) -> str:
    return pct_ci(v, ci, placeholder=MISSING)


def _sanitize(collected: dict) -> list[Section]:
    m = collected.get("sanitize", {}).get("metrics")
    if not m:
        return []
    pre, det, th = m["preprocessing"], m["detector"]["attacks"], m["threshold"]
    squeezers = ["none", *m["squeezers"]]
    pre_rows = [[s, _acc(pre[s]["clean"]), _acc(pre[s]["fgsm_naive"]), _acc(pre[s]["pgd_naive"]),
                 _acc(pre[s].get("pgd_bpda")), _acc(pre[s]["square"])] for s in squeezers]
    det_rows = []
    for name, d in det.items():
        dm, sn = d["detection"], d["safety_net"]
        det_rows.append([name, d["kind"], num(dm["auroc"], 3),
                         _rate(dm["tpr"], dm.get("tpr_ci95")), str(dm["n_adv"]), _acc(d["raw_accuracy"]),
                         _acc(sn["adversarial"]), _acc(sn["mean"])])
    return [Section(SANITIZE, [
        Paragraph(f"Xu et al. (2018) on `{collected.get('sanitize', {}).get('metrics', {}).get('model', 'cnn')}`: "
                  f"squeezers bit depth {m['bit_depth']}, {m['median']}x{m['median']} median, and both, at L-inf "
                  f"eps = {m['eps']:g} on n = {m['n_eval']} test images. **Naive** attacks are crafted on the raw "
                  "model, blind to the squeezer; **adaptive** ones know it: BPDA-PGD (identity gradient through the "
                  "squeezer, Athalye et al. 2018), Square against the squeezed model (it needs no gradient), and a "
                  "detector-aware PGD whose loss also pushes the raw/squeezed distance under the threshold. The "
                  "squeezers are deterministic, so EOT has nothing to average here."),
        Paragraph(f"As **preprocessing**: accuracy (%) of the squeezed model (`none` = the raw model). PGD-{m['pgd_steps']}, "
                  f"Square {m['square_queries']} queries."),
        Table(["squeezer", "clean", "FGSM naive", "PGD naive", "PGD adaptive (BPDA)", "Square (adaptive)"], pre_rows),
        Paragraph(f"As a **detector** (max over the squeezers of the L1 distance between the raw and squeezed "
                  f"softmax): threshold {th['value']:.4f}, fixed at a {100 * th['fpr_target']:.0f}% false-positive "
                  f"rate on {m['n_val']} clean validation images held out of the evaluation set (measured there: "
                  f"{_rate(th['fpr_val']['rate'], th['fpr_val']['ci95'])}%; on the clean evaluation images: "
                  f"{_rate(th['fpr_eval']['rate'], th['fpr_eval']['ci95'])}%). AUROC and true-positive rate over the "
                  "successful adversarial examples; safety net (the lecture's view): a rejected adversarial image "
                  "counts as defended, a rejected clean image as an error (`mean` averages clean and adversarial)."),
        Table(["attack", "kind", "AUROC", "TPR at threshold", "n successful", "raw model accuracy",
               "safety net (adversarial)", "safety net (mean)"], det_rows)])]


def _certify(collected: dict) -> list[Section]:
    certified = models(collected, "certify")
    if not certified:
        return []
    out = []
    for name, m in certified.items():
        radii = [r for r in m["certified_accuracy"] if float(r) > 0]
        rows = [[r, pct_ci(m["certified_accuracy"][r], m["certified_ci95"].get(r)),
                 pct_ci(m["empirical_accuracy"].get(r), m["empirical_ci95"].get(r)) if r in m["empirical_accuracy"] else MISSING]
                for r in ["0", *radii]]
        checks = [Cell(("pass" if c["passed"] else "FAIL") + f" {c['name']}: {c['detail']}",
                       "pass" if c["passed"] else "fail", strong=not c["passed"]) for c in m["checks"]]
        out.append(Section(f"Randomized smoothing: {name} (sigma = {m['sigma']:g})", [
            Paragraph(f"Cohen et al. (2019): the base classifier `{name}` was trained on Gaussian noise (sigma = "
                      f"{m['sigma']:g}); CERTIFY with n0 = {m['n0']}, n = {m['n']}, alpha = {m['alpha']:g} on "
                      f"n = {m['n_eval']} test images gives a certified L2 radius per image (at n = {m['n']} no radius "
                      f"above {m['max_certifiable_radius']:.2f} can be certified). Beside it, the empirical accuracy "
                      f"of the smoothed classifier under PGD-L2 ({m['pgd_steps']} steps, EOT over {m['eot']} noise "
                      f"draws per gradient, Monte-Carlo prediction with {m['n_predict']} draws, abstain = wrong). "
                      "Certified accuracy above the empirical one at the same radius is impossible: it is checked "
                      f"(exact paired test, p < 0.01). Abstained: {pct(m['abstain_rate'])}%. Base classifier without "
                      f"noise: {_acc(m['base']['clean'])}%, with one noise draw: {_acc(m['base']['noisy'])}%."),
            Table(["L2 radius", "certified accuracy %", "empirical (PGD-L2 + EOT) %"], rows),
            Table(["sanity check"], [[c] for c in checks])], level=2))
    return out


API_NAMES = {"scores": "full scores", "rounded": "rounded scores", "label": "label only"}


def _hiding(collected: dict) -> list[Section]:
    m = collected.get("hiding", {}).get("metrics")
    if not m:
        return []
    first = next(iter(m["models"].values()))
    budgets = [str(b) for b in first["budgets"]]
    hours = first["hours_per_image"]
    head = ["model", "API", "attack", *(f"{int(b):,} q ({num(hours[b], 2 if hours[b] < 1 else 1)} h)" for b in budgets), "wall s"]
    seconds = collected["hiding"].get("cost", {}).get("attack_seconds", {})  # this run's machine, if recorded
    rows, l2 = [], []
    for name, r in m["models"].items():
        for api, w in ((a, r["apis"][a]) for a in API_NAMES):
            rows.append([name, API_NAMES[api], "worst case: " + " + ".join(w["attacks"]),
                         *(Cell(pct_ci(w["accuracy"][b], w["accuracy_ci95"][b]), strong=True) for b in budgets), ""])
        for row in r["rows"]:
            if "accuracy" in row:
                rows.append(["", API_NAMES[row["api"]], row["attack"],
                             *(pct_ci(row["accuracy"][b], row["accuracy_ci95"][b]) for b in budgets),
                             num(seconds.get(f"{name}/{row['api']}/{row['attack']}"), 0)])
            else:
                l2.append([name, row["attack"], *(num(row["median_l2"][b], 2) for b in budgets),
                           num(seconds.get(f"{name}/{row['api']}/{row['attack']}"), 0)])
    paired = [[name, API_NAMES[api], *(f"{t['only_a']} / {t['only_b']}, {p_text(t['p_a_higher'])}"
                                       for t in (r["apis"][api]["vs_scores"][b] for b in budgets))]
              for name, r in m["models"].items() for api in ("rounded", "label")]
    clean = ", ".join(f"`{n}` {pct(r['clean_accuracy'])}%" for n, r in m["models"].items())
    return [Section(HIDING, [
        Paragraph(f"The lecture's \"output layers that hide information, so that gradients are harder to get\", "
                  "measured by the threat model each creates. The same model stands behind three APIs: full "
                  f"scores (softmax probabilities), scores rounded to {first['decimals']} decimals, and the top-1 "
                  "label alone (`PredictionAPI`, which counts every image asked about as a query). Each is attacked "
                  "with what it reveals: Square (Andriushchenko et al. 2020) on its scores, HopSkipJump (Chen et al. "
                  "2020, L-inf and L2) and the Boundary Attack (Brendel et al. 2018, L2) on the label; every API "
                  "reveals the label, so an API's worst case (bold) is over Square on its own scores and "
                  f"HopSkipJump L-inf. Accuracy at L-inf eps = {first['eps']:g} after each budget of queries per "
                  f"image, with its 95% Wilson interval, on the first n = {first['n']} evaluation images; the "
                  f"hours are that budget at the lecture's rate limit of {first['queries_per_minute']:g} queries a "
                  f"minute (C7). Clean accuracy: {clean}. The models are `replicate_c9@{m['seed']}`'s "
                  f"(`{m['folder']}`): the main run's `{m['base']}` and `{m['defended']}` recipes trained from that "
                  "seed. Wall seconds per attack come from `reports/cost/hiding.json` (this run's machine)."),
        Table(head, rows),
        *figure_images(collected, "figures/hiding.png", "Each API's worst-case accuracy against queries per image"),
        Paragraph("Decision-based attacks in L2: the median L2 distance of the adversarial each has found after "
                  "each budget, over the images the model classifies correctly (— : fewer than half have one yet)."),
        Table(["model", "attack", *(f"{int(b):,} q" for b in budgets), "wall s"], l2),
        Paragraph("Image by image against full scores (exact paired test): images the hiding API keeps correct "
                  "that full scores lose / the reverse, and the one-sided p that the hiding API keeps more."),
        Table(["model", "API", *(f"{int(b):,} q" for b in budgets)], paired)])]


def _hiding_figure(reports: Path, collected: dict) -> dict[str, bytes]:
    m = collected.get("hiding", {}).get("metrics")
    if not m:
        return {}
    from ..plots import line_plot
    series = {f"{name}, {API_NAMES[api]}": (r["budgets"], [r["apis"][api]["accuracy"][str(b)] for b in r["budgets"]])
              for name, r in m["models"].items() for api in API_NAMES}  # the JSON's keys sort as text
    first = next(iter(m["models"].values()))
    rate = first["queries_per_minute"]
    return {"figures/hiding.png": line_plot(series, title="Hiding information (C9b)", xlabel="queries per image",
                                            ylabel=f"worst-case accuracy at L-inf eps {first['eps']:g}", xscale="log",
                                            top_axis=(f"hours per image at {rate:g} queries a minute", 1 / (60 * rate)))}


SECTIONS = (_defenses, _sanitize, _certify, _hiding)
FIGURES: tuple = (_hiding_figure,)
