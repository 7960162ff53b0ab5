"""The claims registry: every testable claim C1–C18 of the lecture (and C9a, its statement that
every defense is met by a new attack), and how it is judged.

Each claim has an evaluator that reads the collected metrics and returns the experiment,
the measured figure, the criterion (fixed here, before any run) and the verdict. A claim
whose experiment has not landed yet is reported as ``not_measured``. Later issues add
evaluators; they never edit a criterion after seeing a result.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

VERDICTS = ("supported", "not_supported", "not_measured")

CLAIMS: dict[str, str] = {
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
    "C9": "Adversarial training (clean + FGSM loss) makes the model more robust",
    "C9a": "Every defense is met by a new attack: a defense counts only once evaluated by an attacker "
           "who knows about it",
    "C10": "A poisoned trigger patch makes triggered inputs go to the target class while clean "
           "accuracy stays normal",
    "C11": "The saturating generator loss log(1 - D(G(z))) gives tiny gradients when D(G(z)) ~ 0",
    "C12": "When G is stuck, k discriminator steps per generator step helps",
    "C13": "A GAN can mode-collapse: good-looking samples that do not cover the data distribution",
    "C14": "GAN code space is roughly linear: code arithmetic and interpolation give smooth changes",
    "C15": "Diffusion trains more stably and gives more varied samples than a GAN",
    "C16": "Diffusion sampling is expensive: one network call per denoising step",
    "C17": "Latent diffusion is much cheaper than pixel-space diffusion at similar quality",
    "C18": "Conditioning the denoiser on a class guides generation at test time",
}


@dataclass(frozen=True)
class Finding:
    """One evaluated claim; ``measured`` is a short human-readable figure."""

    experiment: str
    measured: str
    criterion: str
    verdict: str

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict {self.verdict!r} is not one of {VERDICTS}")


Evaluator = Callable[[dict], "Finding | None"]
EVALUATORS: dict[str, Evaluator] = {}


def evaluator(claim_id: str) -> Callable[[Evaluator], Evaluator]:
    """Register the evaluator of ``claim_id``."""
    if claim_id not in CLAIMS:
        raise KeyError(f"unknown claim {claim_id!r}")

    def wrap(fn: Evaluator) -> Evaluator:
        EVALUATORS[claim_id] = fn
        return fn
    return wrap


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


@evaluator("C3")
def _c3(_: dict) -> Finding:
    r = c3_worked_example()
    ok = abs(r["before"] - 0.018) < 0.0005 and abs(r["after_eps_w"] - 0.83) < 0.005
    return Finding(
        experiment="worked example, not an experiment: advgen.claims.c3_worked_example recomputes the "
                   "lecture's arithmetic exactly (it confirms the slide's numbers, not any model's behaviour)",
        measured=(f"sigma(w.x)={r['before']:.4f} -> sigma(w.x*)={r['after_eps_w']:.4f} "
                  f"(||w||^2={r['w_norm2_sq']:.0f}; FGSM step eps*sign(w) gives {r['after_eps_sign_w']:.4f})"),
        criterion="|before - 0.018| < 0.0005 and |after - 0.83| < 0.005",
        verdict="supported" if ok else "not_supported")


def _metrics(collected: dict, key: str) -> dict | None:
    return collected.get(key, {}).get("metrics")


def _verdict(ok: bool) -> str:
    return "supported" if ok else "not_supported"


@evaluator("C1")
def _c1(c: dict) -> Finding | None:
    m = _metrics(c, "forge")
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
        verdict=_verdict(ok))


@evaluator("C2")
def _c2(c: dict) -> Finding | None:
    m = _metrics(c, "forge")
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
        verdict=_verdict(ok))


@evaluator("C4")
def _c4(c: dict) -> Finding | None:
    m = _metrics(c, "dimension")
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
        verdict=_verdict(ok))


@evaluator("C5")
def _c5(c: dict) -> Finding | None:
    m = _metrics(c, "robustness/cnn")
    if not m or "0.05" not in m["linf"].get("fgsm", {}):
        return None
    test = m.get("paired", {}).get("vs_clean", {}).get("fgsm", {}).get("0.05")
    if test is None:
        return None
    clean, adv = m["clean_accuracy"], m["linf"]["fgsm"]["0.05"]
    ci = m.get("linf_ci95", {}).get("fgsm", {}).get("0.05", [float("nan")] * 2)
    ok = clean - adv >= 0.20 and test["p_a_higher"] < 0.01
    return Finding(
        experiment=f"attack@cnn (fgsm): one gradient evaluation per image, eps=0.05, n={m['n']}; "
                   "paired exact McNemar test against the clean predictions of the same images",
        measured=(f"accuracy {100 * clean:.1f}% -> {100 * adv:.1f}% [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}] "
                  f"({test['only_a']} images flipped to wrong, {test['only_b']} to right; p = {test['p_a_higher']:.2g}); "
                  f"eps=0.1: {100 * m['linf']['fgsm'].get('0.1', float('nan')):.1f}%"),
        criterion="FGSM at eps=0.05 lowers accuracy by >= 20 points, and the drop is significant "
                  "(exact paired McNemar test, p < 0.01)",
        verdict=_verdict(ok))


@evaluator("C6")
def _c6(c: dict) -> Finding | None:
    m = _metrics(c, "transfer")
    if not m or "cnn" not in m["clean"]:
        return None
    rob = _metrics(c, "robustness/cnn") or {}
    noise = rob.get("linf", {}).get("noise", {}).get(f"{m['eps']:g}")
    tests = rob.get("paired", {}).get("transfer_vs_noise", {})
    if noise is None or not tests:  # a missing baseline makes the claim unmeasured, never a pass
        return None
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
        verdict=_verdict(ok))


@evaluator("C7")
def _c7(c: dict) -> Finding | None:
    m = _metrics(c, "attacks/cnn/square")
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
        verdict=_verdict(ok))


@evaluator("C8")
def _c8(c: dict) -> Finding | None:
    max_area = 0.20  # patches covering more of the image are shown but do not count
    m = _metrics(c, "patch")
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
        verdict=_verdict(bool(passing)))


def _defended_by(c: dict, method: str) -> list[str]:
    return sorted(k.split("/", 1)[1] for k, v in c.items() if k.startswith("defend/") and k.count("/") == 1
                  and v.get("metrics", {}).get("defense", {}).get("method") == method)


@evaluator("C9")
def _c9(c: dict) -> Finding | None:
    eps, gain, alpha = "0.1", 0.10, 0.01
    lecture = _defended_by(c, "fgsm")
    rob = {n: _metrics(c, f"robustness/{n}") for n in lecture}
    rob = {n: m for n, m in rob.items() if m and m.get("vs_base", {}).get("eps", {}).get(eps)}
    if not rob:
        return None
    name, m = next(iter(rob.items()))
    vs = m["vs_base"]["eps"][eps]
    base = m["vs_base"]["base"]
    base_clean = _metrics(c, f"robustness/{base}") or {}
    others = []
    for method in ("pgd", "trades", "fgsm_rs"):
        for n in _defended_by(c, method):
            r = _metrics(c, f"robustness/{n}") or {}
            v = r.get("vs_base", {}).get("eps", {}).get(eps)
            if v:
                others.append(f"{n}: worst case {100 * v['defended_worst_case']:.1f}% (clean "
                              f"{100 * r['clean_accuracy']:.1f}%)")
    ok = vs["defended_worst_case"] - vs["base_pgd"] >= gain and vs["paired"]["p_a_higher"] < alpha
    return Finding(
        experiment=(f"defend stage: `{name}`, the lecture's recipe (alpha * CE(x) + (1 - alpha) * CE(x_FGSM), "
                    f"trained at eps = 0.1) against the standard `{base}`, on the same n={m['n']} test images; "
                    f"the defended model's cascade worst case (FGSM, PGD, APGD-CE, APGD-T, Square) against "
                    f"`{base}`'s PGD-20 accuracy (an upper bound of its robustness), exact paired test"),
        measured=(f"at eps={eps}: worst case {100 * vs['defended_worst_case']:.1f}% vs {base} PGD-20 "
                  f"{100 * vs['base_pgd']:.1f}% (p = {vs['paired']['p_a_higher']:.2g}); clean "
                  f"{100 * m['clean_accuracy']:.1f}% vs {100 * base_clean.get('clean_accuracy', float('nan')):.1f}%; "
                  f"FGSM accuracy {100 * m['linf']['fgsm'].get(eps, float('nan')):.1f}%. Other adversarial training: "
                  + ("; ".join(others) or "none")),
        criterion=(f"the lecture's recipe raises the worst-case accuracy at the training eps {eps} by >= "
                   f"{100 * gain:.0f} points over {base}'s PGD-20 accuracy on the same images, paired p < {alpha}"),
        verdict=_verdict(ok))


@evaluator("C9a")
def _c9a(c: dict) -> Finding | None:
    drop, alpha = 0.20, 0.01
    m = _metrics(c, "sanitize")
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
        verdict=_verdict(ok_acc and ok_det))


@evaluator("C10")
def _c10(c: dict) -> Finding | None:
    asr_min, drop_max = 0.90, 0.01
    bd = {k.split("/", 1)[1]: v["metrics"] for k, v in c.items()
          if k.startswith("backdoor/") and k.count("/") == 1 and "metrics" in v}
    # The lecture's scenario (a patch, source class -> target, some target images triggered too)
    # and the strongest all-to-one BadNets of the sweep.
    lecture = [n for n, m in bd.items() if m["poison"]["attack"] == "badnets" and "source" in m["poison"]]
    all_to_one = [n for n, m in bd.items() if m["poison"]["attack"] == "badnets" and "source" not in m["poison"]]
    judged = lecture[:1] + sorted(all_to_one, key=lambda n: bd[n]["poison"]["rate"])[-1:]
    if not judged:
        return None
    ref = bd[judged[0]]["reference"]
    parts, ok = [], True
    for n in judged:
        m = bd[n]
        asr, drop = m["undefended"]["asr"], m["ca_drop"][ref]
        ok &= asr["value"] >= asr_min and drop["value"] <= drop_max
        parts.append(f"{n}: ASR {100 * asr['value']:.1f}% [{100 * asr['ci95'][0]:.1f}, {100 * asr['ci95'][1]:.1f}], "
                     f"CA {100 * m['undefended']['ca']['value']:.1f}% (drop {100 * drop['value']:+.2f} points vs {ref})")
    sweep = "; ".join(f"{n} {100 * m['undefended']['asr']['value']:.0f}%" for n, m in bd.items() if n not in judged)
    return Finding(
        experiment=(f"poison + train + backdoor_defense stages: `cnn` trained on poisoned copies of the training set "
                    f"({', '.join(judged)}; 3x3 checkerboard trigger), scored on the clean test set and its triggered "
                    f"copy against `{ref}`, the same recipe on clean data"),
        measured="; ".join(parts) + (f". Rest of the sweep (ASR): {sweep}" if sweep else ""),
        criterion=(f"for the lecture's source-specific BadNets and the largest all-to-one BadNets rate: ASR >= "
                   f"{100 * asr_min:.0f}% and clean-accuracy drop <= {100 * drop_max:.0f} point against the clean twin"),
        verdict=_verdict(ok))


def claims_table(collected: dict) -> list[dict]:
    """One row per claim (C1–C18 and C9a): ``{id, claim, experiment, measured, criterion, verdict}``."""
    rows = []
    for cid, text in CLAIMS.items():
        found = EVALUATORS[cid](collected) if cid in EVALUATORS else None
        if found is None:
            found = Finding(experiment="(not implemented yet)", measured="", criterion="", verdict="not_measured")
        rows.append({"id": cid, "claim": text, "experiment": found.experiment, "measured": found.measured,
                     "criterion": found.criterion, "verdict": found.verdict})
    return rows


def _gan_runs(c: dict) -> dict[str, dict]:
    return {k.split("/", 1)[1]: v["metrics"] for k, v in c.items()
            if k.startswith("gan/") and k.count("/") == 1 and "metrics" in v}


def _scored(c: dict) -> dict[str, dict]:
    return (c.get("generative", {}).get("metrics") or {}).get("models", {})


def _by_loss(runs: dict[str, dict], loss: str, d_steps: int = 1) -> str | None:
    """The single-channel GAN of ``loss`` with ``d_steps`` (first by name), or None."""
    names = sorted(n for n, m in runs.items() if m["loss"] == loss and m["d_steps"] == d_steps and not m["stacked"])
    return names[0] if names else None


def _fid_text(name: str, r: dict) -> str:
    lo, hi = r["fid_ci95"]
    return f"{name} FID {r['fid']:.1f} [{lo:.1f}, {hi:.1f}]"


def _at_equal_g_steps(runs: dict[str, dict], scored: dict[str, dict], a: str, b: str) -> tuple[dict, dict, str]:
    """FID of GANs a and b at an equal number of generator updates: the evaluate_generative
    scores when both trained the same number (the same budget, neither stopped early), else
    their FID curves' points at the last G iteration both reached (a curve stops once it has
    flattened). Returns (a's, b's) as {fid, fid_ci95} and a note of where they were taken."""
    if runs[a]["g_iters"] == runs[b]["g_iters"]:
        return scored[a], scored[b], f"both after {runs[a]['g_iters']} G updates, N = {scored[a].get('n', 'N')}"
    curves = [{p["g_iter"]: p for p in runs[n].get("fid_curve", [])} for n in (a, b)]
    common = sorted(set(curves[0]) & set(curves[1]))
    if not common:
        raise KeyError(f"the FID curves of {a} and {b} share no G iteration")
    pa, pb = curves[0][common[-1]], curves[1][common[-1]]
    as_score = lambda p: {"fid": p["fid"], "fid_ci95": [p["fid_lo"], p["fid_hi"]]}  # noqa: E731
    return as_score(pa), as_score(pb), (f"FID curves at G update {common[-1]} (n = {runs[a]['n_fid']}; "
                                        f"{a} ran {runs[a]['g_iters']}, {b} {runs[b]['g_iters']})")


def _budget_note(runs: dict[str, dict], names: list[str]) -> str:
    """Which of the GANs stopped because their FID curve flattened and which ran out of budget."""
    parts = [f"{n}: " + (f"curve flat at G update {runs[n]['converged_at']}" if runs[n].get("converged_at")
                         else f"budget of {runs[n].get('g_steps', runs[n]['g_iters'])} G updates ended first")
             for n in names if n in runs]
    return "; ".join(parts)


def _diffusion_budget_note(c: dict, names: list[str]) -> str:
    """As :func:`_budget_note` for diffusion configs (rows named ``<config>_uncond`` count as their config)."""
    parts = []
    for n in dict.fromkeys(n.removesuffix("_uncond") for n in names):
        m = (c.get(f"diffusion/{n}") or {}).get("metrics")
        if m and m.get("stopped_by"):
            parts.append(f"{n}: " + (f"curve flat at epoch {m['converged_at']}" if m["stopped_by"] == "convergence"
                                     else f"budget of {m['epochs']} epochs ended first"))
    return "; ".join(parts)


def _stops(note: str) -> str:
    return f". Training: {note}" if note else ""


@evaluator("C11")
def _c11(c: dict) -> Finding | None:
    ratio_min = 10.0
    runs, scored = _gan_runs(c), _scored(c)
    mm, ns = _by_loss(runs, "minimax"), _by_loss(runs, "non_saturating")
    if mm is None or ns is None or not runs[mm].get("probe") or mm not in scored or ns not in scored:
        return None
    probe = runs[mm]["probe"]
    a, b, where = _at_equal_g_steps(runs, scored, mm, ns)
    faster = b["fid_ci95"][1] < a["fid_ci95"][0]
    ok = probe["ratio_end"] >= ratio_min and faster
    trace = scored[mm].get("gradient_trace")
    during = (f"; in training (first {trace['iters']} G iterations of `{mm}`, mean D(G(z)) {trace['d_fake']:.2f}): "
              f"median same-state ratio {trace['median_ratio']:.2f}" if trace else "")
    early = runs[mm].get("early_d_fake")
    wins = (f"; D wins early in `{mm}`: mean D(G(z)) {early['mean']:.3f} over its first {early['iters']} G updates, "
            f"minimum {early['min']:.3f}, below 0.1 " + (f"from G update {early['first_below_0.1']}"
                                                          if early["first_below_0.1"] is not None else "never")
            if early else "")
    return Finding(
        experiment=(f"gan stage, `{mm}` and `{ns}` from one seed and one budget in G updates; probe: G frozen at "
                    f"initialisation, D trained {probe['d_steps']} steps against it, the norm of the gradient reaching "
                    "G under both losses at one state; FID at equal G updates (curves in the GAN section). "
                    "The criterion is unchanged; since issue 19, D has BatchNorm (the DCGAN recipe), so D can win "
                    "early, and both GANs are compared at equal generator updates"),
        measured=(f"gradient-norm ratio non-sat / minimax {probe['ratio_start']:.2f} with D untrained, "
                  f"{probe['ratio_end']:.0f} once D(G(z)) = {probe['d_fake_end']:.4f}{during}{wins}; after training "
                  f"({where}): {_fid_text(ns, b)} vs {_fid_text(mm, a)}; {_budget_note(runs, [mm, ns])}"),
        criterion=(f"ratio >= {ratio_min:g} once D rejects G's initial samples (end of the probe) AND the "
                   "non-saturating GAN's FID interval lies below the minimax GAN's"),
        verdict=_verdict(ok))


@evaluator("C12")
def _c12(c: dict) -> Finding | None:
    runs, scored = _gan_runs(c), _scored(c)
    k1 = _by_loss(runs, "non_saturating", 1)
    k2s = sorted(n for n, m in runs.items() if m["loss"] == "non_saturating" and m["d_steps"] > 1 and not m["stacked"])
    if k1 is None or not k2s or k1 not in scored or k2s[0] not in scored:
        return None
    k2 = k2s[0]
    a, b, where = _at_equal_g_steps(runs, scored, k1, k2)
    ok = b["fid_ci95"][1] < a["fid_ci95"][0]
    return Finding(
        experiment=(f"gan stage: `{k2}` (d_steps = {runs[k2]['d_steps']}) against `{k1}` (d_steps = 1), same seed and "
                    "loss, compared at equal generator updates (so k = 2 means more D training, not fewer G steps; "
                    "changed in issue 19 from an equal count of D steps, before the rerun)"),
        measured=(f"{where}: {_fid_text(k2, b)} vs {_fid_text(k1, a)}; end of training D(G(z)) "
                  f"{runs[k2]['final']['d_fake']:.3f} vs {runs[k1]['final']['d_fake']:.3f}; {_budget_note(runs, [k1, k2])}"),
        criterion=f"`{k2}`'s FID interval lies below `{k1}`'s",
        verdict=_verdict(ok))


@evaluator("C13")
def _c13(c: dict) -> Finding | None:
    precision_slack, recall_gap = 0.1, 0.2
    m = c.get("generative", {}).get("metrics")
    if not m:
        return None
    fl, models = m["floor"], m["models"]
    st = [(n, r["stacked"]) for n, r in models.items() if "stacked" in r]
    single = {n: r for n, r in models.items() if "stacked" not in r and r.get("kind", "gan") == "gan"}
    parts = [f"{n}: {r['coverage']['classes_covered']}/10 classes, KL {r['coverage']['kl_uniform']:.3f}, precision "
             f"{r['precision']:.2f}, recall {r['recall']:.2f}" for n, r in single.items()]
    # Collapse as the lecture means it: samples as precise as real images (within the slack of the
    # real-vs-real floor) that miss part of the data (recall well below the floor's, or classes missing).
    collapsed = [n for n, r in single.items() if r["precision"] >= fl["precision"] - precision_slack
                 and (r["recall"] <= fl["recall"] - recall_gap or r["coverage"]["classes_covered"] < 10)]
    if st and "stacked" in fl:
        ref = fl["stacked"]
        for n, s in st:
            parts.append(f"{n}: {s['modes_covered']}/1000 stacked modes, KL {s['kl_uniform']:.2f} (real stacked images: "
                         f"{ref['modes_covered']}, KL {ref['kl_uniform']:.2f}, n = {ref['n']})")
            if s["modes_covered"] < 0.9 * ref["modes_covered"]:
                collapsed.append(n)
    best = min(single, key=lambda n: single[n]["fid"]) if single else None
    target = (f". Target: the best-FID GAN ({best}) covers all 10 classes with KL <= 0.1: "
              f"{'met' if single[best]['coverage']['classes_covered'] == 10 and single[best]['coverage']['kl_uniform'] <= 0.1 else 'not met'}"
              if best else "")
    return Finding(
        experiment=("evaluate_generative stage: N samples per GAN labelled by the feature network's classifier, "
                    "precision/recall against the real-vs-real floor; Stacked Fashion-MNIST: each channel of the "
                    "3-channel GAN's samples labelled, 1,000 modes"),
        measured=("; ".join(parts) + f"; floor precision {fl['precision']:.2f}, recall {fl['recall']:.2f}" + target
                  + _stops(_budget_note(_gan_runs(c), sorted(models)))),
        criterion=(f"some GAN's samples are as precise as real ones (precision >= floor - {precision_slack:g}) yet miss "
                   f"part of the data (recall <= floor - {recall_gap:g}, or fewer than 10 classes with >= 1% of the "
                   "samples), or the stacked GAN covers < 90% of the modes real stacked images cover at the same n"),
        verdict=_verdict(bool(collapsed)))


@evaluator("C14")
def _c14(c: dict) -> Finding | None:
    mono_min, lift_min = 0.5, 3.0
    scored = {n: r for n, r in _scored(c).items() if r.get("codes")}
    if not scored:
        return None
    best = min(scored, key=lambda n: scored[n]["fid"])
    i, a = scored[best]["codes"]["interpolation"], scored[best]["codes"]["arithmetic"]
    if i["monotone_fraction"] is None or a["success_rate"] is None:
        return Finding(experiment="evaluate_generative stage", measured=f"{best}: no path or no class mean",
                       criterion="", verdict="not_supported")
    ok = i["monotone_fraction"] >= mono_min and a["success_rate"] >= lift_min * a["chance"]
    return Finding(
        experiment=(f"evaluate_generative stage on the best-FID single-channel GAN ({best}): {i['n_paths']} linear "
                    f"interpolations between codes of two classes; {a['n_tests']} codes moved by z - z̄(a) + z̄(c)"),
        measured=(f"{100 * i['monotone_fraction']:.1f}% of paths monotone (tolerance {i['tolerance']:g}); arithmetic "
                  f"classified as c {100 * a['success_rate']:.1f}% vs chance {100 * a['chance']:.1f}%"
                  + _stops(_budget_note(_gan_runs(c), [best]))),
        criterion=(f">= {100 * mono_min:.0f}% of paths monotone AND arithmetic success >= {lift_min:g}x chance"),
        verdict=_verdict(ok))


# ---------------------------------------------------------------------------------------------
# Diffusion (C15-C18). Scores from evaluate_generative; timings from the cost records.


def _generative(c: dict) -> dict:
    return c.get("generative", {}).get("metrics") or {}


def _diffusion_sets(c: dict, role: str) -> list[tuple[str, str, dict]]:
    return [(name, k, r) for name, sets in (_generative(c).get("diffusion") or {}).items()
            for k, r in sets.items() if r.get("role") == role]


def _sampling_seconds(c: dict, config: str, set_name: str) -> float | None:
    return (c.get(f"diffusion/{config}", {}).get("cost") or {}).get("sampling_seconds_per_1000", {}).get(set_name)


def _coverage_text(name: str, r: dict) -> str:
    return (f"{name}: FID {r['fid']:.1f}, recall {r['recall']:.3f}, {r['coverage']['classes_covered']} classes, "
            f"KL {r['coverage']['kl_uniform']:.3f}")


@evaluator("C15")
def _c15(c: dict) -> Finding | None:
    models = _generative(c).get("models", {})
    gans = {n: r for n, r in models.items() if r.get("kind") == "gan" and "stacked" not in r}
    # The GANs are unconditional, so a diffusion model competes with its unconditional samples
    # (a class-balanced conditional set would cover the classes by construction).
    diff = {n: r for n, r in models.items() if r.get("kind") == "diffusion" and r.get("mode", "unconditional") == "unconditional"}
    snaps = _diffusion_sets(c, "snapshot")
    if not gans or not diff or not snaps:
        return None
    g = min(gans, key=lambda n: gans[n]["fid"])
    d = min(diff, key=lambda n: diff[n]["fid"])
    top_recall = max(r["recall"] for r in gans.values())
    s_cfg, s_set, s = snaps[0]
    s_secs = (c.get(f"diffusion/{s_cfg}", {}).get("cost") or {}).get("snapshot_seconds")
    g_secs = (c.get(f"gan/{g}", {}).get("cost") or {}).get("wall_s")
    if s_secs is None or g_secs is None:
        return None

    def better(r: dict) -> bool:
        return (r["recall"] > top_recall and r["coverage"]["classes_covered"] >= gans[g]["coverage"]["classes_covered"]
                and r["coverage"]["kl_uniform"] <= gans[g]["coverage"]["kl_uniform"])
    ok = better(diff[d]) and better(s) and s_secs <= g_secs
    winner = d if diff[d]["fid"] < gans[g]["fid"] else g
    every = {n: r for n, r in models.items() if r.get("kind") == "diffusion"}
    best_any = min(every, key=lambda n: every[n]["fid"])
    target = (f". Target FID <= 60 (best GAN {gans[g]['fid']:.1f}: {'met' if gans[g]['fid'] <= 60 else 'not met'}; "
              f"best diffusion set, {best_any}, {every[best_any]['fid']:.1f}: "
              f"{'met' if every[best_any]['fid'] <= 60 else 'not met'})")
    return Finding(
        experiment=("evaluate_generative at the common N: the best diffusion model by FID (unconditional sets: a "
                    "conditional model's null-label samples) "
                    f"and `{s_cfg}`'s EMA snapshot ({s_set}, its training stopped at about a GAN's wall time) against "
                    "the best single-channel GAN by FID and the GANs' best recall"),
        measured=(f"{_coverage_text(d, diff[d])}; snapshot after {s_secs:.0f} s of training: {_coverage_text(s_set, s)}; "
                  f"GAN after {g_secs:.0f} s (whole stage): {_coverage_text(g, gans[g])}; best GAN recall "
                  f"{top_recall:.3f}. Lower FID on this CPU budget: {winner}{target}"
                  + _stops("; ".join(filter(None, [_budget_note(_gan_runs(c), [g]), _diffusion_budget_note(c, [d, s_cfg])])))),
        criterion=("the best diffusion model AND the snapshot (trained no longer than the best GAN's stage took) each "
                   "have higher recall than every GAN, no fewer classes covered and no larger KL to uniform than the "
                   "best GAN"),
        verdict=_verdict(ok))


@evaluator("C16")
def _c16(c: dict) -> Finding | None:
    speed_min, gan_ratio_min, kid_slack = 15.0, 100.0, 1.2  # the slack is a target reported, not the criterion
    sweep = _diffusion_sets(c, "sweep")
    ddpm = [(n, k, r) for n, k, r in sweep if r["sampler"] == "ddpm"]
    if not ddpm:
        return None
    cfg, k_ddpm, r_ddpm = ddpm[0]
    ddim50 = [(k, r) for n, k, r in sweep if n == cfg and r["sampler"] == "ddim" and r["steps"] == 50 and r["eta"] == 0]
    gan_cost = [v["seconds_per_1000"] for v in (c.get("generative_sampling", {}).get("cost") or {}).values()]
    t_ddpm = _sampling_seconds(c, cfg, k_ddpm)
    if not ddim50 or t_ddpm is None or not gan_cost:
        return Finding(experiment=f"diffusion stage, `{cfg}`: sampler sweep", verdict="not_measured",
                       measured="the sweep lacks DDIM-50 (eta = 0), or a timing is missing from the cost records",
                       criterion=f"DDPM >= {gan_ratio_min:g}x a GAN's cost per sample AND >= {speed_min:g}x DDIM-50's")
    k50, r50 = ddim50[0]
    t50, t_gan = _sampling_seconds(c, cfg, k50), min(gan_cost)
    speed, vs_gan = t_ddpm / t50, t_ddpm / t_gan
    kid_ok = r50["kid"] <= kid_slack * max(r_ddpm["kid"], 0.0)
    ok = speed >= speed_min and vs_gan >= gan_ratio_min
    by_steps = {r["steps"]: r for n, k, r in sweep if n == cfg and r["sampler"] == "ddim" and r["eta"] == 0}
    drift = ""
    if 25 in by_steps and 250 in by_steps:  # the DDIM clipping bug made more steps worse (issue 19)
        a, b = by_steps[25], by_steps[250]
        drift = (f". Target DDIM-250 FID no worse than DDIM-25's (intervals): {_fid_text('DDIM-250', b)} vs "
                 f"{_fid_text('DDIM-25', a)}: {'met' if b['fid_ci95'][0] <= a['fid_ci95'][1] else 'not met'}")
    return Finding(
        experiment=(f"diffusion stage, `{cfg}`: the same model sampled by ancestral DDPM ({r_ddpm['steps']} steps) and "
                    f"DDIM at several step counts, N = {r_ddpm['n']} each; wall time per 1,000 samples; "
                    "evaluate_generative: KID (primary at this N) and FID"),
        measured=(f"DDPM-{r_ddpm['steps']} {t_ddpm:.0f} s / 1000 samples, DDIM-50 {t50:.1f} s ({speed:.1f}x faster), "
                  f"the fastest GAN {t_gan:.2f} s ({vs_gan:.0f}x faster than DDPM); KID DDPM {r_ddpm['kid']:.3f} ± "
                  f"{r_ddpm['kid_std']:.3f}, DDIM-50 {r50['kid']:.3f} ± {r50['kid_std']:.3f} (FID {r_ddpm['fid']:.1f} "
                  f"vs {r50['fid']:.1f}). Target DDIM-50 KID within {kid_slack:g}x of DDPM's: "
                  f"{'met' if kid_ok else 'not met'}{drift}" + _stops(_diffusion_budget_note(c, [cfg]))),
        criterion=(f"DDPM's full reverse process costs >= {gan_ratio_min:g}x a GAN's one call per sample AND >= "
                   f"{speed_min:g}x DDIM-50 (the cost follows the number of network calls)"),
        verdict=_verdict(ok))


@evaluator("C17")
def _c17(c: dict) -> Finding | None:
    speed_min, fid_slack = 3.0, 1.5
    models = _generative(c).get("models", {})
    diff = {n: r for n, r in models.items() if r.get("kind") == "diffusion" and r.get("role", "main") == "main"}
    latent = sorted(n for n, r in diff.items() if r.get("space") == "latent")
    if not latent:
        return None
    lat = latent[0]
    pixels = sorted(n for n, r in diff.items() if r.get("space") == "pixel" and r.get("schedule") == diff[lat]["schedule"])
    if not pixels:
        return None
    pix = pixels[0]

    def epoch(name: str) -> float | None:
        secs = (c.get(f"diffusion/{name}", {}).get("cost") or {}).get("train_seconds_per_epoch")
        return sum(secs) / len(secs) if secs else None

    def total(name: str) -> float:
        return sum((c.get(f"diffusion/{name}", {}).get("cost") or {}).get("train_seconds_per_epoch") or [0.0])

    e_pix, e_lat = epoch(pix), epoch(lat)
    s_pix, s_lat = _sampling_seconds(c, pix, diff[pix]["set"]), _sampling_seconds(c, lat, diff[lat]["set"])
    if None in (e_pix, e_lat, s_pix, s_lat) or diff[pix]["set"] != diff[lat]["set"]:
        return None
    train_x, sample_x = e_pix / e_lat, s_pix / s_lat
    ceiling = _generative(c).get("autoencoder")
    ok = train_x >= speed_min and sample_x >= speed_min and diff[lat]["fid"] <= fid_slack * diff[pix]["fid"]
    return Finding(
        experiment=(f"diffusion stage: `{lat}` (denoiser on the autoencoder's latents) against `{pix}` (pixels), same "
                    f"schedule and sampler ({diff[lat]['set']}), each trained until its FID curve flattened or its "
                    "epoch budget ended (the latent budget is larger: its epochs cost less); evaluate_generative FID "
                    "at the common N"),
        measured=(f"training {e_pix:.3g} vs {e_lat:.3g} s / epoch ({train_x:.1f}x; whole training {total(pix):.0f} vs "
                  f"{total(lat):.0f} s), sampling {s_pix:.3g} vs {s_lat:.3g} "
                  f"s / 1000 ({sample_x:.1f}x, decoding included); FID {diff[pix]['fid']:.1f} vs {diff[lat]['fid']:.1f}"
                  + (f"; the autoencoder's reconstructions score FID {ceiling['fid']:.1f} (the ceiling)" if ceiling else "")
                  + _stops(_diffusion_budget_note(c, [pix, lat]))),
        criterion=(f"latent diffusion >= {speed_min:g}x cheaper per training epoch AND per sample, AND its FID <= "
                   f"{fid_slack:g}x the pixel model's"),
        verdict=_verdict(ok))


@evaluator("C18")
def _c18(c: dict) -> Finding | None:
    acc_min, lift_min, scale_at = 0.9, 0.5, 3.0
    g = _diffusion_sets(c, "guidance")
    by_scale = {r["scale"]: (n, r) for n, _, r in g}
    if scale_at not in by_scale or 0.0 not in by_scale:
        return None
    cfg, r3 = by_scale[scale_at]
    r0 = by_scale[0.0][1]
    ok = r3["conditional_accuracy"] >= acc_min and r3["conditional_accuracy"] - r0["conditional_accuracy"] >= lift_min
    parts = [f"s = {s:g}: accuracy {100 * r['conditional_accuracy']:.1f}%, recall {r['recall']:.3f}, FID {r['fid']:.1f}"
             for s, (_, r) in sorted(by_scale.items())]
    return Finding(
        experiment=(f"diffusion stage, `{cfg}` (class embedding, labels dropped in training): classifier-free guidance "
                    f"at scales {sorted(by_scale)}, N = {r3['n']} requested evenly over the classes; the pipeline's "
                    "classifier labels the samples"),
        measured="; ".join(parts) + _stops(_diffusion_budget_note(c, [cfg])),
        criterion=(f"conditional accuracy >= {100 * acc_min:.0f}% at s = {scale_at:g} AND >= {100 * lift_min:.0f} "
                   "points above the unconditional model's (s = 0)"),
        verdict=_verdict(ok))
