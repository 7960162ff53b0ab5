"""The attack claims C1-C8 and how each is judged (criteria fixed before any run)."""
from __future__ import annotations

import math

from ..claims import Claims, Finding, MissingRun, at, at_or, metrics, verdict

CLAIMS = Claims({
    "C1": "Gradient descent on the pixels from noise forges an image classified as the target "
          "that does not look like the target",
    "C2": "From a real image, minimising ||softmax(f(x)) - onehot(t)||^2 + lambda ||x - x0||^2 "
          "reaches the target while staying close to x0",
    "C3": "Logistic regression w=(1,3,-1,2,2,3), b=0: x* = x + 0.2 w moves sigma(w.x) from 0.018 to 0.83",
    "C4": "The damage an epsilon-bounded perturbation can do grows with the input dimension",
    "C5": "FGSM, x + eps sign(grad_x J), is a one-shot attack that changes predictions at small eps",
    "C6": "Adversarial examples crafted on a surrogate transfer to a black-box target",
    "C7": "Rate-limiting queries weakens query-based black-box attacks",
    "C8": "A universal patch with printability and smoothness terms fools the model across images",
})


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


# The lecture's slide: w = (1, 3, -1, 2, 2, 3), b = 0 and x = (1, -1, 2, 0, 3, -2), so that
# w.x = -4 and sigma(w.x) = 0.018 (the transcript gives w and the 0.018, not x itself).
C3_W = (1.0, 3.0, -1.0, 2.0, 2.0, 3.0)
C3_X = (1.0, -1.0, 2.0, 0.0, 3.0, -2.0)
C3_EPS = 0.2


def c3_worked_example(w=C3_W, x=C3_X, eps: float = C3_EPS) -> dict[str, float]:
    """Compute the lecture's logistic-regression example, and FGSM's version of it.

    Returns sigma(w.x), sigma(w.(x + eps w)) and sigma(w.(x + eps sign(w))), with
    ||w||^2 and ||w||_1 (the increase of the logit is eps ||w||^2 and eps ||w||_1).
    """
    dot = sum(wi * xi for wi, xi in zip(w, x))
    norm2 = sum(wi * wi for wi in w)
    norm1 = sum(abs(wi) for wi in w)
    return {"before": _sigmoid(dot), "after_eps_w": _sigmoid(dot + eps * norm2),
            "after_eps_sign_w": _sigmoid(dot + eps * norm1), "w_norm2_sq": norm2, "w_norm1": norm1,
            "logit_before": dot}


@CLAIMS.evaluator("C3")
def _c3(_: dict) -> Finding:
    r = c3_worked_example()
    ok = abs(r["before"] - 0.018) < 0.0005 and abs(r["after_eps_w"] - 0.83) < 0.005
    return Finding(
        experiment="worked example, not an experiment: advgen.attacks.claims.c3_worked_example recomputes the "
                   "lecture's arithmetic exactly (it confirms the slide's numbers, not any model's behaviour)",
        measured=(f"sigma(w.x)={r['before']:.4f} -> sigma(w.x*)={r['after_eps_w']:.4f} "
                  f"(||w||^2={r['w_norm2_sq']:.0f}; FGSM step eps*sign(w) gives {r['after_eps_sign_w']:.4f})"),
        criterion="|before - 0.018| < 0.0005 and |after - 0.83| < 0.005",
        verdict="supported" if ok else "not_supported")



@CLAIMS.evaluator("C1")
def _c1(c: dict) -> Finding | None:
    m = metrics(c, "forge")
    if not m:
        return None
    r, real = m["c1"], m["c1"]["realism"]
    ok = r["success_rate"] >= 0.9 and real["fraction_beyond_real_q"] >= 0.5
    return Finding(
        experiment=f"forge stage: Adam on the pixels from uniform noise to each class, model {m['model']}; "
                   f"nearest real training image of the target class in the model's penultimate features",
        measured=(f"success {100 * r['success_rate']:.1f}% of {r['n']}; {100 * real['fraction_beyond_real_q']:.1f}% "
                  f"of forgeries farther from every real target image than {100 * real['q']:.0f}% of real test images; "
                  f"median NN distance forged/real = {real['feature']['ratio']:.2f} (features), "
                  f"{real['pixel']['ratio']:.2f} (pixels)"),
        criterion="success >= 90% and >= 50% of forgeries beyond the real images' 95th-percentile NN distance",
        verdict=verdict(ok))


@CLAIMS.evaluator("C2")
def _c2(c: dict) -> Finding | None:
    m = metrics(c, "forge")
    if not m:
        return None
    r, ce = m["c2"]["mse"], m["c2"]["ce"]
    ok = r["success_rate"] >= 0.9 and r["fraction_closer_to_x0_than_any_real_target"] >= 0.9
    return Finding(
        experiment=f"forge stage: ||softmax(f(x)) - onehot(t)||^2 + lambda ||x - x0||^2 from real test images, model {m['model']}",
        measured=(f"success {100 * r['success_rate']:.1f}%; median L2 {r['median_l2']:.2f}, Linf {r['median_linf']:.2f} "
                  f"(x0 to nearest real target image: L2 {r['median_l2_x0_to_nearest_real_target']:.2f}); "
                  f"{100 * r['fraction_closer_to_x0_than_any_real_target']:.0f}% stay closer to x0; "
                  f"CE variant: success {100 * ce['success_rate']:.1f}%, median L2 {ce['median_l2']:.2f}"),
        criterion="success >= 90% and >= 90% of successes closer (L2) to x0 than x0 is to any real image of the target",
        verdict=verdict(ok))


@CLAIMS.evaluator("C4")
def _c4(c: dict) -> Finding | None:
    m = metrics(c, "dimension")
    if not m:
        return None
    rows = sorted(m["models"].values(), key=lambda r: r["dim"])
    drops = [r["accuracy_drop"] for r in rows]
    margins = [r["mean_margin_drop"] for r in rows]
    ok = all(a < b for a, b in zip(drops, drops[1:])) and all(a < b for a, b in zip(margins, margins[1:]))
    return Finding(
        experiment=f"dimension stage: FGSM eps={m['eps']:g} on logreg trained at "
                   + ", ".join(f"d={r['dim']}" for r in rows),
        measured="; ".join(f"d={r['dim']}: acc {100 * r['clean_accuracy']:.1f}->{100 * r['fgsm_accuracy']:.1f}%, "
                           f"margin drop {r['mean_margin_drop']:.2f} vs eps||w_y-w_j||_1 {r['mean_eps_l1_bound']:.2f}"
                           for r in rows),
        criterion="accuracy drop and mean margin drop both increase strictly with d",
        verdict=verdict(ok))


@CLAIMS.evaluator("C5")
def _c5(c: dict) -> Finding | None:
    eps = 0.05
    m = metrics(c, "robustness/cnn")
    if not m:
        return None
    need = f"eps = {eps:g} in attack.eps_linf"
    adv = at(m["linf"].get("fgsm", {}), eps, need)
    test = at(m.get("paired", {}).get("vs_clean", {}).get("fgsm", {}), eps, need)
    clean = m["clean_accuracy"]
    try:
        ci = at(m.get("linf_ci95", {}).get("fgsm", {}), eps, need)
    except MissingRun:  # an older metrics file without intervals: shown as nan
        ci = [float("nan")] * 2
    at_01 = at_or(m["linf"]["fgsm"], 0.1, float("nan"))  # shown beside it when run
    ok = clean - adv >= 0.20 and test["p_a_higher"] < 0.01
    return Finding(
        experiment=f"attack@cnn (fgsm): one gradient evaluation per image, eps={eps:g}, n={m['n']}; "
                   "paired exact McNemar test against the clean predictions of the same images",
        measured=(f"accuracy {100 * clean:.1f}% -> {100 * adv:.1f}% [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}] "
                  f"({test['only_a']} images flipped to wrong, {test['only_b']} to right; p = {test['p_a_higher']:.2g}); "
                  f"eps=0.1: {100 * at_01:.1f}%"),
        criterion=f"FGSM at eps={eps:g} lowers accuracy by >= 20 points, and the drop is significant "
                  "(exact paired McNemar test, p < 0.01)",
        verdict=verdict(ok))


@CLAIMS.evaluator("C6")
def _c6(c: dict) -> Finding | None:
    m = metrics(c, "transfer")
    if not m or "cnn" not in m["clean"]:
        return None
    rob = metrics(c, "robustness/cnn") or {}
    tests = rob.get("paired", {}).get("transfer_vs_noise", {})
    if not rob or not tests:  # a missing baseline makes the claim unmeasured, never a pass
        return None
    noise = at(rob["linf"].get("noise", {}), m["eps"], f"the noise baseline at transfer.eps = {m['eps']:g}")
    clean = m["clean"]["cnn"]
    sources = {s: r["cnn"] for s, r in m["matrix"].items() if s != "cnn"}
    best = min(sources, key=sources.get)
    test = tests.get(best)
    if test is None:
        return None
    drop, noise_drop = clean - sources[best], clean - noise
    ok = drop >= 0.20 and drop >= 3 * noise_drop and test["p_a_higher"] < 0.01
    return Finding(
        experiment=f"transfer stage: PGD-{m['steps']} eps={m['eps']:g} crafted on each surrogate, evaluated on cnn "
                   f"(n={m['n']}); paired exact McNemar test of the best surrogate against uniform noise of the "
                   "same eps on the same images",
        measured=f"cnn clean {100 * clean:.1f}%; " + ", ".join(f"from {s}: {100 * a:.1f}%" for s, a in sources.items())
                 + f"; noise {100 * noise:.1f}%; best surrogate {best}: {test['only_a']} images right under noise "
                   f"only, {test['only_b']} under transfer only (p = {test['p_a_higher']:.2g})",
        criterion="the best surrogate lowers cnn accuracy by >= 20 points and >= 3x the uniform-noise drop, "
                  "and its accuracy is below noise's on the same images (exact paired McNemar test, p < 0.01)",
        verdict=verdict(ok))


@CLAIMS.evaluator("C7")
def _c7(c: dict) -> Finding | None:
    m = metrics(c, "attacks/cnn/square")
    if not m or "square" not in m:
        return None
    sq = m["square"]
    succ = sq["success_at_budget"]
    full, window = str(max(int(b) for b in succ)), str(sq["window_budget"])
    ok = succ[window] <= succ[full] - 0.10
    return Finding(
        experiment=f"attack@cnn (square): Square Attack eps={sq['eps']:g}, scores only; budget -> time at "
                   f"{sq['queries_per_minute']:g} queries/min",
        measured="; ".join(f"{b} queries ({sq['hours_at_rate_limit'][b]:.1f} h): {100 * succ[b]:.1f}%"
                           for b in sorted(succ, key=int)),
        criterion=f"success within a {sq['window_minutes']:g}-minute window ({window} queries) is >= 10 points "
                  f"below success at {full} queries",
        verdict=verdict(ok))


@CLAIMS.evaluator("C8")
def _c8(c: dict) -> Finding | None:
    max_area = 0.20  # patches covering more of the image are shown but do not count
    m = metrics(c, "patch")
    if not m or not m.get("sizes"):
        return None
    curve = sorted(m["sizes"].values(), key=lambda e: e["size"])

    def passes(e: dict) -> bool:
        w, r = e["patches"]["with_terms"], e["patches"]["random_baseline"]
        return (e["area_fraction"] <= max_area and w["ci95"][0] >= 0.5
                and w["ci95"][0] >= r["success_rate"] + 0.3)

    def cell(e: dict) -> str:
        w = e["patches"]["with_terms"]
        return (f"{e['size']}x{e['size']} ({100 * e['area_fraction']:.0f}%): {100 * w['success_rate']:.1f}% "
                f"[{100 * w['ci95'][0]:.1f}, {100 * w['ci95'][1]:.1f}]")

    passing = [e for e in curve if passes(e)]
    counted = [e for e in curve if e["area_fraction"] <= max_area]
    ref = passing[0] if passing else (counted[-1] if counted else curve[0])
    rp = ref["patches"]
    return Finding(
        experiment=(f"patch stage: universal k x k patches, k in {[e['size'] for e in curve]}, target class "
                    f"{m.get('target_name') or m['target']}, trained on {m.get('n_train', '?')} images at random "
                    f"locations, with and without the NPS+TV terms (per-pixel weights {m['ablation']['w_nps']:g}, "
                    f"{m['ablation']['w_tv']:g}); success on n={rp['with_terms']['n']} held-out images not of the "
                    "target class, 95% Wilson intervals; random and grey patches of each size as baselines"),
        measured=("with NPS+TV: " + "; ".join(cell(e) for e in curve)
                  + f". At {ref['size']}x{ref['size']}: without the terms {100 * rp['without_terms']['success_rate']:.1f}%, "
                    f"random patch {100 * rp['random_baseline']['success_rate']:.1f}%, "
                    f"grey patch {100 * rp['grey_baseline']['success_rate']:.1f}%"),
        criterion=("at some patch size covering <= 20% of the image (larger patches are shown but do not count), "
                   "the success with the printability terms, lower end of its 95% interval, is >= 50% and "
                   ">= the random patch's success + 30 points"),
        verdict=verdict(bool(passing)))
