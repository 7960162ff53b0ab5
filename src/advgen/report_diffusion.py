"""The report's diffusion sections: the denoisers and their samples, the sampler sweep (C16),
latent against pixel diffusion (C17), classifier-free guidance (C18) and diffusion against the
GANs (C15), with their figures.

Registered with :func:`advgen.report.section`; :mod:`advgen.report` imports this module.
Scores come from ``evaluate_generative`` (the same N, features and metrics as the GANs');
timings from the cost records (they vary from run to run and never enter metrics).
"""
from __future__ import annotations

import math
from pathlib import Path

from . import plots
from .document import Image, Paragraph, Section, Table
from .report import _figure, _files, _models, figure, section
from .report_generative import last_points, memorisation_sentence, memorised, stopped


def diffusions(collected: dict) -> dict[str, dict]:
    """``{config: diffusion stage metrics}``, sorted by name."""
    return dict(sorted(_models(collected, "diffusion").items()))


def _cost(collected: dict, key: str) -> dict:
    return collected.get(key, {}).get("cost") or {}


def _f(v: float | None, digits: int = 1) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def _fid_ci(r: dict) -> str:
    lo, hi = r.get("fid_ci95", (None, None))
    return f"{r['fid']:.1f}" + (f" [{lo:.1f}, {hi:.1f}]" if lo is not None else "")


def epoch_seconds(collected: dict, name: str) -> float | None:
    """Mean training wall seconds per epoch of ``diffusion/<name>`` (or the autoencoder)."""
    secs = _cost(collected, name).get("train_seconds_per_epoch")
    return sum(secs) / len(secs) if secs else None


def set_seconds(collected: dict, name: str, set_name: str) -> float | None:
    """Wall seconds per 1,000 images of one sample set of ``diffusion/<name>``."""
    return _cost(collected, f"diffusion/{name}").get("sampling_seconds_per_1000", {}).get(set_name)


def generative(collected: dict) -> dict:
    return collected.get("generative", {}).get("metrics") or {}


def sweep_rows(collected: dict) -> list[dict]:
    """One dict per sweep set of every config: config, set, sampler, steps, eta, scores, seconds."""
    g = generative(collected)
    rows = []
    for name, sets in (g.get("diffusion") or {}).items():
        for set_name, r in sets.items():
            if r.get("role") == "sweep":
                rows.append({"config": name, "set": set_name, **r,
                             "seconds_per_1000": set_seconds(collected, name, set_name)})
    return sorted(rows, key=lambda r: (r["config"], r["sampler"] != "ddpm", r["eta"], r["steps"]))


def guidance_rows(collected: dict) -> list[dict]:
    g = generative(collected)
    rows = [{"config": name, "set": k, **r} for name, sets in (g.get("diffusion") or {}).items()
            for k, r in sets.items() if r.get("role") == "guidance"]
    return sorted(rows, key=lambda r: (r["config"], r["scale"]))


@section("diffusion", before="cost")
def _diffusion(collected: dict) -> list[Section]:
    d = diffusions(collected)
    if not d:
        return []
    scored = generative(collected).get("models", {})
    rows, images = [], []
    for name, m in d.items():
        r = scored.get(name)
        main = next((k for k, s in m["sets"].items() if s["role"] == "main"), None)
        rows.append([name, m["space"], m["schedule"], "yes" if m["conditional"] else "no", f"{m['params']:,}",
                     f"{m.get('epochs_run', m['epochs'])} / {m['epochs']}", m["iters"], stopped(m, "epoch"),
                     last_points(m.get("fid_curve", [])) or "—", _f(m["loss_final"], 3),
                     _f(epoch_seconds(collected, f"diffusion/{name}")),
                     main or "—", _fid_ci(r) if r else "—", _f(r and r["kid"], 3), _f(r and r["recall"], 3),
                     r["coverage"]["classes_covered"] if r else "—", memorised(r),
                     _f(set_seconds(collected, name, main), 1)])
        u = scored.get(f"{name}_uncond")
        if u:
            rows.append([f"{name}, null label", m["space"], m["schedule"], "unconditional mode", "", "", "", "", "", "",
                         "", u["set"], _fid_ci(u), _f(u["kid"], 3), _f(u["recall"], 3), u["coverage"]["classes_covered"],
                         memorised(u), _f(set_seconds(collected, name, u["set"]), 1)])
        files = _files(collected, f"diffusion/{name}")
        if "samples.png" in files:
            images.append(Image(f"diffusion/{name}/samples.png", f"{name}: samples of the main set ({main})"))
        if "trajectory.png" in files:
            images.append(Image(f"diffusion/{name}/trajectory.png",
                                f"{name}: the reverse process x_T → x_0, one seed per row (the image appearing over time)"))
    first = next(iter(d.values()))
    blocks: list = [
        Paragraph(f"DDPM noise predictors (Ho et al. 2020): a small U-Net with a sinusoidal time embedding (and, for "
                  f"conditional configs, a class embedding with a null class; labels dropped with probability "
                  f"{first['p_uncond'] if first['p_uncond'] is not None else '—'} in training) predicts the noise under "
                  f"the L2 loss; T = {first['T']}, Adam {first['lr']:g} after a linear warm-up of "
                  f"{first.get('warmup', 0)} steps, batch {first['batch_size']}, EMA "
                  f"{first['ema_decay']:g} (samples come from the EMA weights), at most {first['epochs']} epochs over "
                  f"{first['n_train']} training images, one seed. After every epoch a point of the FID curve "
                  f"(n = {first.get('n_fid', '—')} samples by {first.get('curve_sampler', '—')} from fixed noise, "
                  "conditional models at guidance 1 with balanced classes, against as many training images); "
                  f"training stops once its last {first.get('converge_window', 3)} points agree within their 95% "
                  "bootstrap intervals (\"curve flat\"), else the budget ended first. Schedules and samplers are "
                  "diffusers' `DDPMScheduler` and `DDIMScheduler` (linear: Ho et al.; cosine: Nichol & Dhariwal). A "
                  "conditional config's main set is its conditional samples (guidance 1, classes balanced), what it "
                  "was trained to do; its unconditional mode (the null label, trained on the dropped 10% of labels) "
                  "is a row of its own (\"null label\"), the one compared with the unconditional GANs. Every set is "
                  "scored by evaluate_generative exactly as the GANs are. Seconds: wall time on this run's machine "
                  "(cost records)."
                  + memorisation_sentence(generative(collected))),
        Table(["config", "space", "schedule", "conditional", "parameters", "epochs / budget", "iterations", "stopped",
               "FID curve, last 3 points", "loss (last log)", "train s / epoch", "set", "FID [95% CI]", "KID",
               "recall", "classes", "memorised %", "s / 1000 samples"], rows),
        *_figure(collected, "figures/diffusion_fid.png", "FID along training, one point per epoch, with 95% bootstrap "
                                                         "intervals"),
        *images]
    return [Section("Diffusion models (C15–C18)", blocks), *_samplers(collected), *_latent(collected, d),
            *_guidance(collected), *_versus(collected, d)]


def _samplers(collected: dict) -> list[Section]:
    rows = sweep_rows(collected)
    if not rows:
        return []
    ref = {r["config"]: r for r in rows if r["sampler"] == "ddpm"}
    table = []
    for r in rows:
        base = ref.get(r["config"])
        speed = (base["seconds_per_1000"] / r["seconds_per_1000"]
                 if base and base.get("seconds_per_1000") and r.get("seconds_per_1000") else None)
        table.append([r["config"], r["sampler"].upper(), r["steps"], "—" if r["sampler"] == "ddpm" else f"{r['eta']:g}",
                      r["n"], f"{r['kid']:.3f} ± {r['kid_std']:.3f}", _fid_ci(r), _f(r["precision"], 3),
                      _f(r["recall"], 3), r["coverage"]["classes_covered"], memorised(r),
                      _f(r.get("seconds_per_1000"), 1), _f(speed, 1)])
    n = rows[0]["n"]
    return [Section("Samplers: DDPM against DDIM (C16)", [
        Paragraph(f"One model, every sampler at the same N = {n} (the full DDPM reverse process costs one network call "
                  "per step, so N is small): KID is the primary score (unbiased at small N), FID beside it (biased "
                  "upwards at small N, so comparable only within this table). DDIM uses trailing timestep spacing, "
                  "so its first step starts from pure noise as DDPM's does. Speed-up: DDPM's wall time per sample over "
                  "the sampler's."),
        Table(["config", "sampler", "steps", "eta", "N", "KID ± std", "FID [95% CI]", "precision", "recall",
               "classes", "memorised %", "s / 1000 samples", "speed-up vs DDPM"], table),
        *_figure(collected, "figures/diffusion_samplers.png", "C16: KID against sampling wall time per 1,000 images "
                                                              "(one point per step count)")])]


def _latent(collected: dict, d: dict[str, dict]) -> list[Section]:
    scored = generative(collected).get("models", {})
    latent = [n for n, m in d.items() if m["space"] == "latent" and n in scored]
    pixel = [n for n, m in d.items() if m["space"] == "pixel" and n in scored]
    if not latent or not pixel:
        return []
    rows = []
    for name in pixel + latent:
        m, r = d[name], scored[name]
        main = r["set"]
        rows.append([name, m["space"], " × ".join(str(v) for v in m["data_shape"]), f"{m['params']:,}",
                     _f(epoch_seconds(collected, f"diffusion/{name}")), _f(set_seconds(collected, name, main), 1),
                     _fid_ci(r), _f(r["kid"], 3), _f(r["recall"], 3), memorised(r)])
    ae, ae_scored = collected.get("autoencoder", {}).get("metrics"), generative(collected).get("autoencoder")
    blocks: list = [Paragraph(
        "The same sampler and steps for every row (each config's main set). Latent rows include the decoder's cost in "
        "the sampling time. The autoencoder's reconstructions of real test images, scored the same way, are the "
        "ceiling latent diffusion can reach with this autoencoder."),
        Table(["config", "space", "denoised shape", "parameters", "train s / epoch", "s / 1000 samples",
               "FID [95% CI]", "KID", "recall", "memorised %"], rows)]
    if ae:
        blocks.append(Table(["autoencoder", "latent", "numbers per image", "test MSE", "PSNR dB",
                             "FID of reconstructions", "KID", "recall", "memorised %", "train s / epoch"],
                            [["autoencoder", " × ".join(str(v) for v in ae["latent"]), f"{ae['latent_numbers']} of {ae['pixels']}",
                              _f(ae["test_mse"], 5), _f(ae["test_psnr_db"], 2),
                              _fid_ci(ae_scored) if ae_scored else "—", _f(ae_scored and ae_scored["kid"], 3),
                              _f(ae_scored and ae_scored["recall"], 3), memorised(ae_scored),
                              _f(epoch_seconds(collected, "autoencoder"))]]))
        if "reconstructions.png" in _files(collected, "autoencoder"):
            blocks.append(Image("autoencoder/reconstructions.png", "test images (top) and their reconstructions (bottom)"))
    return [Section("Latent against pixel diffusion (C17)", blocks)]


def _guidance(collected: dict) -> list[Section]:
    rows = guidance_rows(collected)
    if not rows:
        return []
    table = [[r["config"], f"{r['scale']:g}", r["n"], _f(100 * r["conditional_accuracy"]), _fid_ci(r),
              _f(r["kid"], 3), _f(r["precision"], 3), _f(r["recall"], 3), r["coverage"]["classes_covered"],
              _f(r["coverage"]["kl_uniform"], 3), memorised(r)] for r in rows]
    images = [Image(f"diffusion/{r['config']}/{r['set']}.png", f"{r['config']}, guidance scale {r['scale']:g}: one "
                                                                 "requested class per row (classes 0-9)")
              for r in rows if f"{r['set']}.png" in _files(collected, f"diffusion/{r['config']}")]
    return [Section("Classifier-free guidance (C18)", [
        Paragraph("Ho & Salimans 2022: eps = eps(x, null) + s (eps(x, y) - eps(x, null)). s = 0 is the unconditional "
                  "model, s = 1 the conditional one, s > 1 guided. Classes are requested evenly (N / 10 each); "
                  "conditional accuracy is the share of samples the pipeline's classifier puts in the requested class. "
                  "The requested classes are uniform, so KL and classes covered measure diversity across classes and "
                  "recall within them."),
        Table(["config", "scale s", "N", "conditional accuracy %", "FID [95% CI]", "KID", "precision", "recall",
               "classes", "KL", "memorised %"], table),
        *_figure(collected, "figures/diffusion_guidance.png", "C18: conditional accuracy and recall against the "
                                                              "guidance scale"),
        *images])]


def best_gan(collected: dict) -> str | None:
    models = generative(collected).get("models", {})
    gans = {n: r for n, r in models.items() if r.get("kind") == "gan" and "stacked" not in r}
    return min(gans, key=lambda n: gans[n]["fid"]) if gans else None


def best_diffusion(collected: dict) -> str | None:
    """The best unconditional diffusion row by FID (a conditional model's null-label set): what C15
    compares with the unconditional GANs."""
    models = generative(collected).get("models", {})
    diff = {n: r for n, r in models.items() if r.get("kind") == "diffusion" and r.get("mode", "unconditional") == "unconditional"}
    return min(diff, key=lambda n: diff[n]["fid"]) if diff else None


def snapshot_row(collected: dict) -> tuple[str, str, dict] | None:
    """(config, set name, scores) of the C15 snapshot set, if one was drawn."""
    for name, sets in (generative(collected).get("diffusion") or {}).items():
        for k, r in sets.items():
            if r.get("role") == "snapshot":
                return name, k, r
    return None


def _versus(collected: dict, d: dict[str, dict]) -> list[Section]:
    gan, diff = best_gan(collected), best_diffusion(collected)
    if gan is None or diff is None:
        return []
    models = generative(collected)["models"]
    rows = []

    def row(label: str, r: dict, wall: float | None, what: str) -> None:
        rows.append([label, what, _fid_ci(r), _f(r["precision"], 3), _f(r["recall"], 3), r["coverage"]["classes_covered"],
                     _f(r["coverage"]["kl_uniform"], 3), memorised(r), _f(wall, 0)])

    gan_wall = _cost(collected, f"gan/{gan}").get("wall_s")
    row(f"{gan} (best GAN by FID)", models[gan], gan_wall, "whole gan stage")
    secs = _cost(collected, f"diffusion/{diff.removesuffix('_uncond')}").get("train_seconds_per_epoch")
    row(f"{diff} (best unconditional diffusion by FID)", models[diff], sum(secs) if secs else None, "training")
    snap = snapshot_row(collected)
    if snap:
        name, k, r = snap
        row(f"{name} at {d[name].get('snapshot_iters')} iterations ({k})", r,
            _cost(collected, f"diffusion/{name}").get("snapshot_seconds"), "training up to the snapshot")
    return [Section("Diffusion against the GANs (C15)", [
        Paragraph("The best GAN and the best diffusion model by FID at the common N, and the diffusion snapshot taken at "
                  "about a GAN's training wall time. Wall seconds: the GAN's whole stage (training, its FID curve and "
                  "probe), the diffusion model's training loop (sampling excluded)."),
        Table(["model", "wall seconds of", "FID [95% CI]", "precision", "recall", "classes", "KL", "memorised %",
               "wall s"], rows)])]


# ---------------------------------------------------------------------------------------------
# Figures


@figure
def _diffusion_figures(reports: Path, collected: dict) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    rows = [r for r in sweep_rows(collected) if r.get("seconds_per_1000")]
    if rows:
        series: dict[str, tuple[list[float], list[float]]] = {}
        for r in rows:
            label = f"{r['config']} DDPM" if r["sampler"] == "ddpm" else f"{r['config']} DDIM eta={r['eta']:g}"
            xs, ys = series.setdefault(label, ([], []))
            xs.append(r["seconds_per_1000"])
            ys.append(r["kid"])
        out["figures/diffusion_samplers.png"] = plots.line_plot(
            series, title="C16: quality against sampling cost", xlabel="wall seconds per 1,000 samples",
            ylabel="KID (lower is better)", ylim=None)
    curves = {n: m["fid_curve"] for n, m in diffusions(collected).items() if m.get("fid_curve")}
    if curves:
        out["figures/diffusion_fid.png"] = plots.line_plot(
            {n: ([p["epoch"] for p in c], [p["fid"] for p in c]) for n, c in curves.items()},
            title="Diffusion FID along training (curve n)", xlabel="epoch", ylabel="FID (feature network)", ylim=None,
            bands={n: ([p["fid_lo"] for p in c], [p["fid_hi"] for p in c]) for n, c in curves.items()})
    g = guidance_rows(collected)
    if g:
        series = {}
        for r in g:
            for key, label in (("conditional_accuracy", "conditional accuracy"), ("recall", "recall")):
                xs, ys = series.setdefault(f"{r['config']}: {label}", ([], []))
                xs.append(r["scale"])
                ys.append(r[key])
        out["figures/diffusion_guidance.png"] = plots.line_plot(
            series, title="C18: classifier-free guidance", xlabel="guidance scale s", ylabel="share")
    return out
