"""The defense claims C9, C9a and C9b and how each is judged (criteria fixed before any run)."""
from __future__ import annotations

from ..claims import SEED_RULE, Claims, Finding, SeedFigure, at, metrics, over_seeds, seed_runs, verdict

CLAIMS = Claims({
    "C9": "Adversarial training (clean + FGSM loss) makes the model more robust",
    "C9a": "Every defense is met by a new attack: a defense counts only once evaluated by an attacker "
           "who knows about it",
    "C9b": "Output layers that hide information (rounded scores, the label alone) make gradients harder to get: "
           "they raise the queries an attack needs but do not stop it",
})


def _defended_by(c: dict, method: str) -> list[str]:
    return sorted(k.split("/", 1)[1] for k, v in c.items() if k.startswith("defend/") and k.count("/") == 1
                  and v.get("metrics", {}).get("defense", {}).get("method") == method)


@CLAIMS.evaluator("C9")
def _c9(c: dict) -> Finding | None:
    eps, gain, alpha = 0.1, 0.10, 0.01  # the training eps
    need = f"eps = {eps:g} in attack.defended.eps_linf (the training eps of the defend stage)"
    lecture = _defended_by(c, "fgsm")
    rob = {n: metrics(c, f"robustness/{n}") for n in lecture}
    rob = {n: m for n, m in rob.items() if m and "vs_base" in m}
    if not rob:
        return None
    name, m = next(iter(rob.items()))
    vs = at(m["vs_base"].get("eps", {}), eps, need)
    base = m["vs_base"]["base"]
    base_clean = metrics(c, f"robustness/{base}") or {}
    others = []
    for method in ("pgd", "trades", "fgsm_rs"):
        for n in _defended_by(c, method):
            r = metrics(c, f"robustness/{n}") or {}
            v = at(r["vs_base"]["eps"], eps, need) if "vs_base" in r else None
            if v:
                others.append(f"{n}: worst case {100 * v['defended_worst_case']:.1f}% (clean "
                              f"{100 * r['clean_accuracy']:.1f}%)")
    ok = vs["defended_worst_case"] - vs["base_pgd"] >= gain and vs["paired"]["p_a_higher"] < alpha
    seeds = seed_runs(c, "replicate/c9")
    judged = None
    if len(seeds) >= 2:  # the seed rule decides (issue 23); the main run's figure stays the detailed one
        judged = over_seeds(list(seeds), [SeedFigure("gain (points)", tuple(r["gain"] for r in seeds.values()), gain,
                                                     unit="")],
                            [r["gain"] >= gain and r["paired"]["p_a_higher"] < alpha for r in seeds.values()])
    return Finding(
        experiment=(f"defend stage: `{name}`, the lecture's recipe (alpha * CE(x) + (1 - alpha) * CE(x_FGSM), "
                    f"trained at eps = 0.1) against the standard `{base}`, on the same n={m['n']} test images; "
                    f"the defended model's cascade worst case (FGSM, PGD, APGD-CE, APGD-T, Square) against "
                    f"`{base}`'s PGD-20 accuracy (an upper bound of its robustness), exact paired test"),
        measured=(f"at eps={eps:g}: worst case {100 * vs['defended_worst_case']:.1f}% vs {base} PGD-20 "
                  f"{100 * vs['base_pgd']:.1f}% (p = {vs['paired']['p_a_higher']:.2g}); clean "
                  f"{100 * m['clean_accuracy']:.1f}% vs {100 * base_clean.get('clean_accuracy', float('nan')):.1f}%; "
                  f"FGSM accuracy {100 * at(m['linf']['fgsm'], eps, need):.1f}%. Other adversarial training: "
                  + ("; ".join(others) or "none")),
        criterion=(f"the lecture's recipe raises the worst-case accuracy at the training eps {eps:g} by >= "
                   f"{100 * gain:.0f} points over {base}'s PGD-20 accuracy on the same images, paired p < {alpha}"
                   + (f"; {SEED_RULE}" if judged else "")),
        verdict=judged.verdict if judged else verdict(ok),
        seeds=(f"{judged.text} (replicate_c9 stages: {base} and {name} retrained per seed, cascade without "
               "transfer)") if judged else "")


@CLAIMS.evaluator("C9a")
def _c9a(c: dict) -> Finding | None:
    drop, alpha = 0.20, 0.01
    m = metrics(c, "sanitize")
    if not m:
        return None
    both = m["preprocessing"]["both"]
    det = m["detector"]["attacks"]
    naive_acc, bpda_acc = both["pgd_naive"]["accuracy"], both["pgd_bpda"]["accuracy"]
    test = both["pgd_naive_vs_bpda"]
    tpr_naive, tpr_aware = det["pgd"]["detection"]["tpr"], det["detector_aware_pgd"]["detection"]["tpr"]
    sn_naive = det["pgd"]["safety_net"]["adversarial"]["accuracy"]
    sn_aware = det["detector_aware_pgd"]["safety_net"]["adversarial"]["accuracy"]
    ok_acc = naive_acc - bpda_acc >= drop and test["p_a_higher"] < alpha
    ok_det = tpr_naive is not None and tpr_aware is not None and tpr_naive - tpr_aware >= drop
    return Finding(
        experiment=(f"sanitize stage: feature squeezing (bit depth {m['bit_depth']} + {m['median']}x{m['median']} "
                    f"median) on n={m['n_eval']} test images at L-inf eps={m['eps']:g}; naive = PGD-{m['pgd_steps']} "
                    "crafted on the raw model; adaptive = BPDA-PGD through the squeezer (preprocessing) and "
                    "detector-aware PGD (detector)"),
        measured=(f"squeezed model under PGD: naive {100 * naive_acc:.1f}% -> adaptive {100 * bpda_acc:.1f}% "
                  f"(paired p = {test['p_a_higher']:.2g}); detection rate of successful PGD examples: naive "
                  f"{'n/a' if tpr_naive is None else f'{100 * tpr_naive:.1f}%'} -> detector-aware "
                  f"{'n/a' if tpr_aware is None else f'{100 * tpr_aware:.1f}%'}; safety net on adversarial images "
                  f"{100 * sn_naive:.1f}% -> {100 * sn_aware:.1f}%"),
        criterion=(f"the adaptive attack lowers the squeezed model's accuracy by >= {100 * drop:.0f} points against "
                   f"the naive one (paired p < {alpha}) AND lowers the detection rate by >= {100 * drop:.0f} points"),
        verdict=verdict(ok_acc and ok_det))


#: C9b's criterion, fixed before the hiding stage's first run (issue 24).
C9B_BUDGET = 1000  # queries per image the APIs are compared at (5.6 h at the lecture's 3 a minute)
C9B_LIMIT = 10000  # queries per image at which the attack must not be stopped (56 h)
C9B_ALPHA = 0.05
HIDING_APIS = ("rounded", "label")


def p_text(p: float) -> str:
    """A p-value as the report prints it; metrics keep 6 decimals, so 0 means below 1e-6."""
    return "p < 1e-6" if p == 0 else f"p = {p:.2g}"


def _c9b_judge(r: dict) -> tuple[bool, bool]:
    """(raises the queries, does not stop the attack) for one model's hiding metrics."""
    need = f"{C9B_BUDGET} and {C9B_LIMIT} in hiding.budgets (the budgets C9b judges at)"
    apis = r["apis"]
    full = at(apis["scores"]["accuracy"], C9B_BUDGET, need)
    raises = all(at(apis[a]["accuracy"], C9B_BUDGET, need) > full
                 and at(apis[a]["vs_scores"], C9B_BUDGET, need)["p_a_higher"] < C9B_ALPHA for a in HIDING_APIS)
    not_stopped = all(at(apis[a]["accuracy"], C9B_LIMIT, need) <= r["clean_accuracy"] / 2 for a in HIDING_APIS)
    return raises, not_stopped


def _c9b_paired(r: dict) -> str:
    """Each hiding API's one-sided p against full scores at C9B_BUDGET."""
    return ", ".join(f"{a} {p_text(at(r['apis'][a]['vs_scores'], C9B_BUDGET, '')['p_a_higher'])}" for a in HIDING_APIS)


def _c9b_line(r: dict) -> str:
    """Each API's worst-case accuracy after C9B_BUDGET and C9B_LIMIT queries."""
    a = r["apis"]
    return ", ".join(f"{api} {100 * at(a[api]['accuracy'], C9B_BUDGET, ''):.1f}% -> "
                     f"{100 * at(a[api]['accuracy'], C9B_LIMIT, ''):.1f}%" for api in ("scores", *HIDING_APIS))


@CLAIMS.evaluator("C9b")
def _c9b(c: dict) -> Finding | None:
    m = metrics(c, "hiding")
    if not m:
        return None
    base, r = m["base"], m["models"][m["base"]]
    raises, not_stopped = _c9b_judge(r)  # raises MissingRun (not measured) without the budgets
    hours = r["hours_per_image"]
    rows = {row["attack"] if row["api"] == "label" else f"square_{row['api']}": row for row in r["rows"]}
    square_rounded = at(rows["square_rounded"]["accuracy"], C9B_LIMIT, "")
    l2 = rows.get("hopskipjump_l2", {}).get("median_l2", {}).get(str(C9B_LIMIT))
    defended, d_text = m["models"].get(m["defended"]), ""
    if defended:
        d_raises, d_not_stopped = _c9b_judge(defended)
        d_text = (f"; `{m['defended']}` (clean {100 * defended['clean_accuracy']:.1f}%): {_c9b_line(defended)}; "
                  f"paired {_c9b_paired(defended)}; the criterion {'holds' if d_raises and d_not_stopped else 'fails'} "
                  f"on it (queries raised: {'yes' if d_raises else 'no'}, attack not stopped: "
                  f"{'yes' if d_not_stopped else 'no'})")
    return Finding(
        experiment=(f"hiding stage: `{base}` (replicate_c9@{m['seed']}, the main run's recipe) behind three APIs, "
                    f"full scores, scores rounded to {r['decimals']} decimals, the top-1 label, on the first "
                    f"n={r['n']} evaluation images at L-inf eps={r['eps']:g}; each API's worst case over what it "
                    "reveals (Square on its scores, HopSkipJump L-inf on the label, which every API reveals); rate "
                    f"limit {r['queries_per_minute']:g} queries/min; `{m['defended']}` beside it"),
        measured=(f"clean {100 * r['clean_accuracy']:.1f}%; worst case after {C9B_BUDGET} queries ({hours[str(C9B_BUDGET)]:.1f} h) "
                  f"-> after {C9B_LIMIT} ({hours[str(C9B_LIMIT)]:.0f} h): {_c9b_line(r)}; paired vs full scores at "
                  f"{C9B_BUDGET}: {_c9b_paired(r)}"
                  + f"; Square alone on rounded scores: {100 * square_rounded:.1f}% after {C9B_LIMIT} (the rounded "
                  "API's worst case below it is the label attack's)"
                  + (f"; label-only HopSkipJump L2 median distance {l2:.2f} after {C9B_LIMIT}" if l2 is not None else "")
                  + d_text),
        criterion=(f"at {C9B_BUDGET} queries per image, each hiding API (rounded, label) leaves more images correct "
                   f"than full scores (exact paired test, p < {C9B_ALPHA}) AND at {C9B_LIMIT} queries each hiding "
                   "API's worst case is at most half the clean accuracy (the attack is not stopped); judged on "
                   f"`{base}`, the undefended model"),
        verdict=verdict(raises and not_stopped))

