"""Headline figures: the few scalars per stage that DVC declares as ``metrics``.

Each stage writes its detailed JSON (per-class arrays, intervals, per-check rows, tables) as a
plain output that the report reads, and one small headline file under
``reports/headline/<stage>.json`` that ``dvc metrics show/diff`` and ``advgen compare`` show.
Headline files hold scalars only (numbers, bools, strings, nested at most one level under a
named group), no timings, and no figure another stage already reports; ``tests/test_headline.py``
checks the budget (about 250 values for the stages up to the report and their models; a later
area at most ~50 for its own stages plus ~17 per model it adds to the attack stages).

Every function here maps a stage's detailed metrics dict to its headline dict.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .io import atomic_write_json

ROOT = Path("reports/headline")
Scalar = bool | int | float | str


def _eps(values: dict[str, float]) -> dict[str, float]:
    """``{"0": .., "0.025": ..}`` -> ``{"eps=0.025": ..}``, dropping eps = 0 (that is clean accuracy)."""
    return {f"eps={e}": v for e, v in values.items() if float(e) != 0}


def ingest(m: dict[str, Any]) -> dict[str, Scalar]:
    return {"train_count": m["train_count"], "test_count": m["test_count"]}


def train(m: dict[str, Any]) -> dict[str, Scalar]:
    return {"test_accuracy": m["test_accuracy"], "test_loss": m["test_loss"]}


def attack(m: dict[str, Any], only_eps: float | None = None) -> dict[str, Any]:
    """Accuracy at each eps > 0 (clean accuracy is in the robustness headline); for Square, its
    success against the query budget instead (C7). With ``only_eps`` (defended models, whose
    worst case per eps is in their robustness headline): the accuracy at that eps alone."""
    if only_eps is not None:
        return {"accuracy": {f"eps={only_eps:g}": m["accuracy"].get(f"{only_eps:g}")}}
    if "square" in m:
        sq = m["square"]
        return {"success_at_queries": {f"q={b}": v for b, v in sorted(sq["success_at_budget"].items(),
                                                                         key=lambda kv: int(kv[0]))},
                "median_queries_to_success": sq["median_queries_to_success"]}
    return {"accuracy": _eps(m["accuracy"])}


def attacks(per_attack: dict[str, dict[str, Any]], only_eps: float | None = None) -> dict[str, Any]:
    """One model's attack headline: :func:`attack` of each attack, its groups prefixed by the
    attack's name (``{"pgd": {"eps=0.1": ..}, "square_success_at_queries": {..}, ...}``).
    ``only_eps`` applies to the L-inf attacks (PGD-L2's eps are L2 radii)."""
    out: dict[str, Any] = {}
    for name, m in per_attack.items():
        one = attack(m, only_eps if m.get("norm") == "Linf" else None)
        for key, value in one.items():
            out[name if key == "accuracy" else f"{name}_{key}"] = value
    return out


def robustness(m: dict[str, Any]) -> dict[str, Any]:
    return {"clean_accuracy": m["clean_accuracy"], "worst_case": _eps(m["linf"]["worst_case"]),
            "checks_failed": m["checks_failed"], "gradient_masking": m["gradient_masking"],
            "masking_points": sum(c["masking_points"] for c in m.get("cascade", []))}


def transfer(m: dict[str, Any]) -> dict[str, Any]:
    """Accuracy of each target on PGD crafted on another model (the diagonal is white box)."""
    return {"accuracy": {f"{s}->{t}": v for s, row in m["matrix"].items() for t, v in row.items() if s != t}}


def forge(m: dict[str, Any]) -> dict[str, Any]:
    c1, c2 = m["c1"], m["c2"]
    return {"c1": {"success_rate": c1["success_rate"], "median_steps": c1["median_steps"],
                   "feature_nn_ratio": c1["realism"]["feature"]["ratio"]},
            **{f"c2_{k}": {"success_rate": v["success_rate"], "median_l2": v["median_l2"]} for k, v in c2.items()}}


def patch(m: dict[str, Any]) -> dict[str, Any]:
    sizes = sorted(m["sizes"].values(), key=lambda e: e["size"])
    scales = sorted(m["ablation"]["scales"].values(), key=lambda s: s["scale"])
    return {"with_terms": {f"k={e['size']}": e["patches"]["with_terms"]["success_rate"] for e in sizes},
            "without_terms": {f"k={e['size']}": e["patches"]["without_terms"]["success_rate"] for e in sizes},
            "tv_with_terms": {f"k={e['size']}": e["patches"]["with_terms"]["tv"] for e in sizes},
            "nps_with_terms": {f"k={e['size']}": e["patches"]["with_terms"]["nps"] for e in sizes},
            "ablation": {f"scale={s['scale']:g}": s["success_rate"] for s in scales}}


def dimension(m: dict[str, Any]) -> dict[str, Any]:
    return {name: {"fgsm_accuracy": r["fgsm_accuracy"], "accuracy_drop": r["accuracy_drop"]}
            for name, r in m["models"].items()}


def defend(m: dict[str, Any]) -> dict[str, Scalar]:
    """A defended model's clean accuracy, its training cost in gradients, and the overfitting flag
    (its robust accuracy is in its robustness headline)."""
    return {"test_accuracy": m["test_accuracy"], "training_grad_evals": m["training_grad_evals"],
            "catastrophic_overfitting": m["catastrophic_overfitting"]}


def check(obj: dict[str, Any], where: str = "headline") -> int:
    """Raise ValueError unless ``obj`` holds scalars (at most one level of groups); return the count."""
    count = 0
    for key, value in obj.items():
        if isinstance(value, dict):
            bad = {k: v for k, v in value.items() if not isinstance(v, Scalar)}
            if bad:
                raise ValueError(f"{where}: '{key}' must hold scalars only, found {sorted(bad)}")
            count += len(value)
        elif isinstance(value, Scalar):
            count += 1
        else:
            raise ValueError(f"{where}: '{key}' must be a scalar or a group of scalars, found {type(value).__name__}")
    return count


def write(stage_path: str, obj: dict[str, Any], root: str | Path = ROOT) -> Path:
    """Check and write ``reports/headline/<stage_path>.json`` (e.g. ``train/cnn``)."""
    path = Path(root) / f"{stage_path}.json"
    check(obj, str(path))
    atomic_write_json(path, obj)
    return path


def backdoor(m: dict[str, Any]) -> dict[str, Any]:
    """A poisoned model's CA, ASR, RA and CA drop against the clean reference; each defense's
    ASR after it and DER."""
    u = m["undefended"]
    out: dict[str, Any] = {"ca": u["ca"]["value"], "asr": u["asr"]["value"], "ra": u["ra"]["value"],
                           "ca_drop": m["ca_drop"][m["reference"]]["value"]}
    for name, d in m.get("defenses", {}).items():
        out[name] = {"asr": d["asr"]["value"], "der": d["der"]}
    return out


def gan(m: dict[str, Any]) -> dict[str, Any]:
    """A GAN's end of training: the last FID of its curve (n_fid samples, so not the
    evaluate_generative score), mean D(x) and D(G(z)), and the C11 probe's gradient ratio."""
    out: dict[str, Any] = {"fid_curve_final": m["fid_curve_final"], "d_real": m["final"]["d_real"],
                           "d_fake": m["final"]["d_fake"], "g_iters": m["g_iters"]}
    if m.get("probe"):
        out["probe_ratio_end"] = m["probe"]["ratio_end"]
    return out


def generative(m: dict[str, Any]) -> dict[str, Any]:
    """Per generative model, at the common N: FID, KID, precision, recall and coverage (classes,
    or modes for Stacked Fashion-MNIST); the real-vs-real FID floor; the feature network's hash
    prefix (scores under another hash are not comparable, and ``dvc metrics diff`` shows it change);
    per diffusion config, the conditional accuracy at each guidance scale, and the KID of DDPM and of
    the main sampler in the sweep (the whole sweep is in the metrics file)."""
    out: dict[str, Any] = {"feature_network": m["feature_sha256"][:12], "floor_fid": m["floor"]["fid"]}
    for name, r in m["models"].items():
        if r.get("role") == "unconditional":  # a conditional model's null-label row: in the metrics file only
            continue
        row = {"fid": r["fid"], "kid": r["kid"], "precision": r["precision"], "recall": r["recall"]}
        if "stacked" in r:
            row["modes_covered"] = r["stacked"]["modes_covered"]
        else:
            row["classes_covered"] = r["coverage"]["classes_covered"]
        out[name] = row
    for name, sets in (m.get("diffusion") or {}).items():
        acc = {f"s{r['scale']:g}": r["conditional_accuracy"] for r in sets.values() if r.get("role") == "guidance"}
        if acc:  # C18
            out[f"{name}_guidance_accuracy"] = dict(sorted(acc.items()))
        main = m["models"].get(name, {}).get("set")
        kids = {k.removeprefix("sweep_"): r["kid"] for k, r in sets.items() if r.get("role") == "sweep"
                and (r["sampler"] == "ddpm" or k == f"sweep_{main}")}
        if kids:  # C16: DDPM's quality and the main sampler's, at the sweep's N (the cost is a timing: reports/cost)
            out[f"{name}_sampler_kid"] = dict(sorted(kids.items()))
    return out


def autoencoder(m: dict[str, Any]) -> dict[str, Any]:
    """The autoencoder's reconstruction error on the test split (C17's ceiling)."""
    return {"test_mse": m["test_mse"], "test_psnr_db": m["test_psnr_db"], "latent_numbers": m["latent_numbers"]}


def diffusion(m: dict[str, Any]) -> dict[str, Any]:
    """A diffusion model's end of training: its last logged loss and its iterations."""
    return {"loss_final": m["loss_final"], "iters": m["iters"], "params": m["params"]}
