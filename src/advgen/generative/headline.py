"""The generative area's headline figures (``dvc metrics``) for the gan, autoencoder, diffusion
and evaluate_generative stages."""
from __future__ import annotations

from typing import Any


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
