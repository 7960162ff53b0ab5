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
C9B_ALPHA = 0.05


@CLAIMS.evaluator("C9b")
def _c9b(c: dict) -> Finding | None:
    m = metrics(c, "hiding")
    if not m:
        return None
    base = m["base"]
    r = m["models"][base]
    apis, limit, clean = r["apis"], r["budgets"][-1], r["clean_accuracy"]
    need = f"{C9B_BUDGET} in hiding.budgets (the budget C9b compares the APIs at)"
    full = at(apis["scores"]["accuracy"], C9B_BUDGET, need)
    hidden = {api: (at(apis[api]["accuracy"], C9B_BUDGET, need), at(apis[api]["vs_scores"], C9B_BUDGET, need))
              for api in ("rounded", "label")}
    last = {api: at(apis[api]["accuracy"], limit, "") for api in ("scores", "rounded", "label")}
    raises = all(acc > full and test["p_a_higher"] < C9B_ALPHA for acc, test in hidden.values())
    not_stopped = all(last[api] <= clean / 2 for api in ("rounded", "label"))
    hours = r["hours_per_image"]
    label_l2 = next((row["median_l2"] for row in r["rows"] if row["attack"] == "hopskipjump_l2"), {})
    defended = m["models"].get(m["defended"])

    def line(rr: dict) -> str:
        a = rr["apis"]
        return ", ".join(f"{api} {100 * at(a[api]['accuracy'], C9B_BUDGET, need):.1f}% -> "
                         f"{100 * at(a[api]['accuracy'], limit, ''):.1f}%" for api in ("scores", "rounded", "label"))

    return Finding(
        experiment=(f"hiding stage: `{base}` (replicate_c9@{m['seed']}, the main run's recipe) behind three APIs, "
                    f"full scores, scores rounded to {r['decimals']} decimals, the top-1 label, on the first "
                    f"n={r['n']} evaluation images at L-inf eps={r['eps']:g}; each API's worst case over what it "
                    "reveals (Square on its scores, HopSkipJump L-inf on the label); rate limit "
                    f"{r['queries_per_minute']:g} queries/min; `{m['defended']}` beside it"),
        measured=(f"clean {100 * clean:.1f}%; accuracy after {C9B_BUDGET} queries ({hours[str(C9B_BUDGET)]:.1f} h) -> "
                  f"after {limit} ({hours[str(limit)]:.0f} h): {line(r)}; paired vs full scores at {C9B_BUDGET}: "
                  + ", ".join(f"{api} p = {test['p_a_higher']:.2g}" for api, (_, test) in hidden.items())
                  + (f"; label-only HopSkipJump L2 median distance {label_l2.get(str(limit)):.2f} after {limit}"
                     if label_l2.get(str(limit)) is not None else "")
                  + (f"; {m['defended']} (clean {100 * defended['clean_accuracy']:.1f}%): {line(defended)}"
                     if defended else "")),
        criterion=(f"at {C9B_BUDGET} queries per image, each hiding API (rounded, label) leaves more images correct "
                   f"than full scores (exact paired test, p < {C9B_ALPHA}) AND at the largest budget each "
                   "hiding API's worst case is at most half the clean accuracy (the attack is not stopped); "
                   f"judged on `{base}`"),
        verdict=verdict(raises and not_stopped))
