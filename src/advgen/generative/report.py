"""The generative sections of the report: GAN training (C11, C12), the common generative
evaluation table (FID, KID, precision/recall, coverage, sampling cost), mode collapse (C13) and
code space (C14); then the diffusion models: the denoisers and their samples, the sampler sweep
(C16), latent against pixel diffusion (C17), classifier-free guidance (C18) and diffusion
against the GANs (C15); with their figures.

A part of :func:`advgen.report.make_report` (listed in :mod:`advgen.areas`); helpers come from
the core :mod:`advgen.report`, never the other way round. It imports no torch itself; the C11
saturation figure takes its analytic curves from :mod:`advgen.generative.gan` (which does) when
it is drawn, as before.
"""
from __future__ import annotations

from pathlib import Path

from .. import plots
from ..document import Image, Paragraph, Section, Table
from ..report import MISSING, figure_images, files, missing, models, num, pct, read_tsv

GANS = "GANs (C11, C12)"
COLLAPSE = "Mode collapse (C13)"
CODES = "Code space (C14)"
DIFFUSION = "Diffusion models (C15–C18)"
SAMPLERS = "Samplers: DDPM against DDIM (C16)"
LATENT = "Latent against pixel diffusion (C17)"
GUIDANCE = "Classifier-free guidance (C18)"
VERSUS = "Diffusion against the GANs (C15)"

#: The section that shows each claim's experiment.
CLAIM_SECTIONS = {"C11": GANS, "C12": GANS, "C13": COLLAPSE, "C14": CODES, "C15": VERSUS, "C16": SAMPLERS,
                  "C17": LATENT, "C18": GUIDANCE}

LOSS_NAMES = {"minimax": "minimax (saturating)", "non_saturating": "non-saturating", "wgan_gp": "WGAN-GP"}


def gans(collected: dict) -> dict[str, dict]:
    """``{config: gan metrics}``, sorted by name (the report does not read params.yaml)."""
    return dict(sorted(models(collected, "gan").items()))


def memorised(r: dict | None) -> str:
    """A score dict's memorised share as a percentage (``—`` for metrics written before the check)."""
    return pct((r or {}).get("memorised"), 2, placeholder=MISSING)


def memorisation_sentence(m: dict) -> str:
    """The threshold's definition and the real-vs-real share, from metrics' ``memorisation``
    (empty for metrics written before the check), led by a space."""
    mem = m.get("memorisation")
    if not mem:
        return ""
    return (f" Memorised: the share of samples whose nearest image among all {mem['n_reference']:,} training images "
            f"(same features) is closer than {mem['threshold']:.3g}, the {100 * mem['q']:g}% quantile of the "
            f"nearest-training distances of {mem['n_threshold']:,} test images (every second image of the test "
            f"split); the other {mem['n_real']:,} test images score {100 * mem['real_share']:.2f}% against it (the "
            f"real-vs-real value, the floor's row: {100 * mem['q']:g}% up to noise). A share well above it points to "
            "samples that copy training images, which FID against training images would reward.")


def fid_ci(r: dict) -> str:
    """``108.3 [97.5, 120.5]``: a score dict's FID with its 95% bootstrap interval, if any."""
    lo, hi = r.get("fid_ci95", (None, None))
    if missing(r["fid"]):
        return MISSING
    return num(r["fid"]) + (f" [{num(lo)}, {num(hi)}]" if not (missing(lo) or missing(hi)) else "")


def last_points(curve: list[dict], k: int = 3) -> str:
    """The last k points of a FID curve as "FID [lo, hi] @ step", oldest first."""
    step = "g_iter" if curve and "g_iter" in curve[0] else "epoch"
    return "; ".join(f"{p['fid']:.1f} [{p['fid_lo']:.1f}, {p['fid_hi']:.1f}] @{p[step]}" for p in curve[-k:])


def stopped(m: dict, unit: str) -> str:
    """Why a generative stage stopped: its FID curve flattened (at which step), or its budget ended."""
    if m.get("stopped_by") is None:
        return MISSING
    return f"curve flat at {unit} {m['converged_at']}" if m["stopped_by"] == "convergence" else "budget ended first"


def _gans(collected: dict) -> list[Section]:
    g = gans(collected)
    if not g:
        return []
    rows = []
    for name, m in g.items():
        probe = m.get("probe") or {}
        wall = (collected.get(f"gan/{name}", {}).get("cost") or {}).get("wall_s")
        rows.append([name, LOSS_NAMES.get(m["loss"], m["loss"]), m["d_steps"], m.get("d_norm", MISSING),
                     f"{m['g_iters']} / {m.get('g_steps', '—')}", num(m.get("epochs"), 2), stopped(m, "G update"),
                     last_points(m.get("fid_curve", [])) or num(m["fid_curve_final"]),
                     num(m["final"]["d_real"], 3), num(m["final"]["d_fake"], 3),
                     num(probe.get("ratio_start"), 2), num(probe.get("ratio_end"), 1),
                     num(probe.get("d_fake_end"), 4), num(wall, 0)])
    first = next(iter(g.values()))
    blocks: list = [
        Paragraph(f"DCGANs for 28x28 after the PyTorch DCGAN example (z of size {first['z_dim']}; G: a dense 7x7 map, "
                  "two stride-2 transposed convolutions with BatchNorm and ReLU, then a stride-1 3x3 convolution to "
                  "pixels, which removes the checkerboards a transposed convolution straight to pixels paints, Odena "
                  "et al. 2016; D: three stride-2 convolutions with LeakyReLU, BatchNorm for the JS losses, none for "
                  f"WGAN-GP, whose per-sample penalty BatchNorm breaks), Adam, batch {first['batch_size']}, all from one "
                  "seed (minimax and non-saturating start from the same weights). Samples, grids and FID points come "
                  f"from an EMA of G's weights (decay {first.get('ema_decay', '—')}). The budget is counted in "
                  f"**generator updates** ({first.get('g_steps', '—')}; D takes `d_steps` steps before each), so every "
                  "loss and k compare at equal G updates; epochs are the passes of D over the "
                  f"{first['n_train']} training images this took, and the wall time is the whole stage's. Training "
                  f"stops early once the last {first.get('converge_window', 3)} points of the FID curve agree within "
                  "their 95% bootstrap intervals (\"curve flat\"); otherwise the budget ended first and the model may "
                  "not have converged. FID here is the training curve's (n = "
                  f"{first['n_fid']} samples from fixed codes against {first['n_fid']} training images, in the feature "
                  "network's space); the common evaluation below scores every model at one N. **Probe** (C11 at "
                  "initialisation): G frozen at its initial weights, a copy of D trained against it; the ratio is the "
                  "norm of the gradient reaching G under the non-saturating loss over that under the minimax loss, at "
                  "one state and one batch of codes, before D's first step and after its last."),
        Table(["GAN", "loss", "d_steps", "D norm", "G updates / budget", "epochs", "stopped", "FID curve, last 3 points",
               "D(x)", "D(G(z))", "probe ratio, D untrained", "probe ratio, D trained", "D(G(z)) after probe",
               "wall s"], rows),
        *figure_images(collected, "figures/gan_fid.png", "FID along training against generator updates, with 95% bootstrap "
                                                         "intervals (C11c, C12)"),
        *figure_images(collected, "figures/gan_d_fake.png", "Mean D(G(z)) along training (C11, C12); WGAN-GP's critic is "
                                                            "not a probability and is left out"),
        *figure_images(collected, "figures/gan_saturation.png",
                 "C11 (a): the gradient of each generator loss with respect to D's logit against D(G(z)), analytic"),
        *figure_images(collected, "figures/gan_probe.png",
                 "C11 (b): measured ratio of the gradient norms reaching G (non-saturating / minimax) while D learns "
                 "to reject G's initial samples (the probe, one line per JS-loss config)"),
    ]
    for name in g:
        pngs = sorted(files(collected, f"gan/{name}/samples"))
        if pngs:
            blocks.append(Image(f"gan/{name}/samples/{pngs[-1]}", f"{name}: samples at the end of training (fixed codes, "
                                                                  "EMA generator)"))
    return [Section(GANS, blocks)]


def _generative(collected: dict) -> list[Section]:
    m = collected.get("generative", {}).get("metrics")
    if not m:
        return []
    cost = collected.get("generative_sampling", {}).get("cost", {})
    fl = m["floor"]
    rows = [["real vs real (floor)", fid_ci(fl), num(fl["kid"], 3), num(fl["precision"], 3), num(fl["recall"], 3),
             fl["coverage"]["classes_covered"], num(fl["coverage"]["kl_uniform"], 3), MISSING, memorised(fl), MISSING]]
    large = []
    for name, r in m["models"].items():
        rows.append([name, fid_ci(r), num(r["kid"], 3), num(r["precision"], 3), num(r["recall"], 3),
                     r["coverage"]["classes_covered"], num(r["coverage"]["kl_uniform"], 3),
                     f"{r['stacked']['modes_covered']} (KL {r['stacked']['kl_uniform']:.2f})" if "stacked" in r else MISSING,
                     memorised(r), num(_seconds_per_1000(collected, cost, name, r), 2)])
        if "large" in r:
            large.append([name, r["large"]["n"], num(r["large"]["fid"]), num(r["large"]["kid"], 3),
                          num(r["large"]["precision"], 3), num(r["large"]["recall"], 3)])
    inc = m.get("inception", {})
    inception = ("Inception FID: not available offline (no local weights; `evaluate_generative.inception_weights` "
                 "is null, and nothing is downloaded)." if not inc.get("weights") else
                 "Inception FID (local weights " + inc["weights"] + "): " +
                 ", ".join(f"{k} {v:.1f}" for k, v in inc["fid"].items()))
    blocks: list = [
        Paragraph(f"Every generative model at the same N = {m['n']} samples against N training images, in the "
                  f"penultimate features of `{m['feature_model']}` (sha256 {m['feature_sha256'][:16]}…; scores are "
                  "comparable only under the same hash). FID through torchmetrics with a 95% bootstrap interval "
                  "(both sets resampled; the bootstrap's spread centred on the estimate, since resampling biases FID), KID (cubic polynomial kernel, in the same features), precision and "
                  f"recall (Kynkäänniemi et al., k = {m['pr_k']}), classes the classifier sees in at least "
                  f"{100 * m['min_share']:g}% of the samples and KL(class histogram ‖ uniform). The floor scores N test "
                  "images against the same N training images: no model can be expected to beat it. Stacked: the "
                  "3-channel GAN's samples are scored channel by channel; its modes are the classifier's triples. "
                  "Sampling: wall seconds per 1,000 images on this run's machine (`reports/cost/generative_sampling.json`; "
                  "diffusion models: their main set's sampler, `reports/cost/diffusion/`)." + memorisation_sentence(m)),
        Table(["model", "FID [95% CI]", "KID", "precision", "recall", "classes covered", "KL", "stacked modes of 1000",
               "memorised %", "s / 1000 samples"], rows),
        Paragraph(inception),
    ]
    if large:
        if "large" in fl:
            f2 = fl["large"]
            large.insert(0, ["real vs real (floor)", f2["n"], num(f2["fid"]), num(f2["kid"], 3), num(f2["precision"], 3),
                             num(f2["recall"], 3)])
        blocks += [Paragraph(f"The GANs again at N = {large[-1][1]} (the literature's sample size; no interval)."),
                   Table(["model", "N", "FID", "KID", "precision", "recall"], large)]
    return [Section("Generative evaluation", blocks), *_collapse(m), *_codes(m, collected)]


def _seconds_per_1000(collected: dict, cost: dict, name: str, r: dict) -> float | None:
    """A GAN's sampling cost (measured by evaluate_generative), or a diffusion model's main set's
    (measured by its diffusion stage, decoding included)."""
    if r.get("kind") == "diffusion":
        config = name.removesuffix("_uncond")  # a null-label row is its config's set
        return (collected.get(f"diffusion/{config}", {}).get("cost") or {}).get("sampling_seconds_per_1000", {}).get(r["set"])
    return cost.get(name, {}).get("seconds_per_1000")


def _collapse(m: dict) -> list[Section]:
    fl = m["floor"]
    rows = [[name, " ".join(f"{100 * s:.0f}" for s in r["coverage"]["shares"]), r["coverage"]["classes_covered"],
             f"{r['coverage']['kl_uniform']:.3f}"] for name, r in m["models"].items()]
    rows.insert(0, ["real test images", " ".join(f"{100 * s:.0f}" for s in fl["coverage"]["shares"]),
                    fl["coverage"]["classes_covered"], f"{fl['coverage']['kl_uniform']:.3f}"])
    blocks: list = [Paragraph("Per-class shares (%) of the samples as the classifier labels them, classes 0-9."),
                    Table(["model", "class shares %", "covered", "KL"], rows)]
    st = [(n, r["stacked"]) for n, r in m["models"].items() if "stacked" in r]
    if st and "stacked" in fl:
        ref = fl["stacked"]
        blocks += [Paragraph(f"Stacked Fashion-MNIST (1,000 modes): n = {ref['n']} samples; a perfect uniform sampler "
                             f"covers {ref['expected_uniform']:.0f} modes on average at this n, and real stacked "
                             "images labelled by the same classifier (its errors included) are the reference."),
                   Table(["samples", "modes covered", "KL(modes ‖ uniform)"],
                         [["real stacked images", ref["modes_covered"], f"{ref['kl_uniform']:.3f}"],
                          *([n, s["modes_covered"], f"{s['kl_uniform']:.3f}"] for n, s in st)])]
    return [Section(COLLAPSE, blocks)]


def _codes(m: dict, collected: dict) -> list[Section]:
    rows, images = [], []
    for name, r in m["models"].items():
        c = r.get("codes")
        if not c:
            continue
        i, a = c["interpolation"], c["arithmetic"]
        rows.append([name, i["n_paths"], pct(i["monotone_fraction"], placeholder=MISSING),
                     num(i["mean_max_drop"], 3), a["n_tests"],
                     pct(a["success_rate"], placeholder=MISSING),
                     pct(a["chance"], placeholder=MISSING)])
        if f"interpolation_{name}.png" in files(collected, "generative"):
            images.append(Image(f"generative/interpolation_{name}.png", f"{name}: linear interpolations between codes "
                                                                          "of two classes (one path per row)"))
    if not rows:
        return []
    tol = next(r["codes"]["interpolation"]["tolerance"] for r in m["models"].values() if r.get("codes"))
    return [Section(CODES, [
        Paragraph("Interpolation: straight lines between two codes whose samples the classifier puts in different "
                  "classes; a path is monotone when the end class's probability never falls by more than "
                  f"{tol:g} from one point to the next. Arithmetic: class-mean codes from confidently classified "
                  "samples (p >= 0.9); held-out codes z of class a moved to z - z̄(a) + z̄(c); success = the sample "
                  "is classified c; chance = the share of class c among samples from random codes."),
        Table(["GAN", "paths", "monotone %", "mean largest drop", "arithmetic tests", "classified as c %", "chance %"],
              rows), *images])]


# ---------------------------------------------------------------------------------------------
# Figures


def _tables(reports: Path, collected: dict, filename: str) -> dict[str, dict[str, list[float]]]:
    return {name: read_tsv(reports / "gan" / name / filename) for name in gans(collected)
            if filename in files(collected, f"gan/{name}")}


def _gan_figures(reports: Path, collected: dict) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    fid = _tables(reports, collected, "fid.tsv")
    if fid:
        out["figures/gan_fid.png"] = plots.line_plot(
            {n: (t["g_iter"], t["fid"]) for n, t in fid.items()}, title="FID along training (curve n)",
            xlabel="generator updates", ylabel="FID (feature network)", ylim=None,
            bands={n: (t["fid_lo"], t["fid_hi"]) for n, t in fid.items() if "fid_lo" in t})
    logs = {n: t for n, t in _tables(reports, collected, "log.tsv").items() if collected[f"gan/{n}"]["metrics"]["loss"] != "wgan_gp"}
    if logs:
        out["figures/gan_d_fake.png"] = plots.line_plot(
            {n: (t["g_iter"], t["d_fake"]) for n, t in logs.items()}, title="mean D(G(z)) along training",
            xlabel="generator updates", ylabel="D(G(z))")
    probes = _tables(reports, collected, "probe.tsv")
    if probes:
        from .gan import saturation_curves

        rows = saturation_curves()
        series = {"analytic: |d minimax / d logit| = D": ([r["d_fake"] for r in rows], [-r["minimax_grad_logit"] for r in rows]),
                  "analytic: |d non-sat / d logit| = 1 - D": ([r["d_fake"] for r in rows],
                                                              [-r["non_saturating_grad_logit"] for r in rows])}
        out["figures/gan_saturation.png"] = plots.line_plot(series, title="C11 (a): analytic", xlabel="D(G(z))",
                                                            ylabel="|d loss / d logit|")
        out["figures/gan_probe.png"] = plots.line_plot(
            {n: (t["d_fake"], t["ratio"]) for n, t in probes.items()}, title="C11 (b): G at initialisation, D learning",
            xlabel="mean D(G(z)) as D trains", ylabel="gradient norm ratio non-sat / minimax", ylim=None)
    return out


# ---------------------------------------------------------------------------------------------
# Diffusion models: the denoisers and their samples, the sampler sweep (C16), latent against pixel
# diffusion (C17), classifier-free guidance (C18) and diffusion against the GANs (C15). Scores come
# from evaluate_generative (the same N, features and metrics as the GANs'); timings from the cost
# records (they vary from run to run and never enter metrics).


def diffusions(collected: dict) -> dict[str, dict]:
    """``{config: diffusion stage metrics}``, sorted by name."""
    return dict(sorted(models(collected, "diffusion").items()))


def _cost(collected: dict, key: str) -> dict:
    return collected.get(key, {}).get("cost") or {}


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
                     last_points(m.get("fid_curve", [])) or MISSING, num(m["loss_final"], 3),
                     num(epoch_seconds(collected, f"diffusion/{name}")),
                     main or MISSING, fid_ci(r) if r else MISSING, num(r and r["kid"], 3), num(r and r["recall"], 3),
                     r["coverage"]["classes_covered"] if r else MISSING, memorised(r),
                     num(set_seconds(collected, name, main), 1)])
        u = scored.get(f"{name}_uncond")
        if u:
            rows.append([f"{name}, null label", m["space"], m["schedule"], "unconditional mode", "", "", "", "", "", "",
                         "", u["set"], fid_ci(u), num(u["kid"], 3), num(u["recall"], 3), u["coverage"]["classes_covered"],
                         memorised(u), num(set_seconds(collected, name, u["set"]), 1)])
        names = files(collected, f"diffusion/{name}")
        if "samples.png" in names:
            images.append(Image(f"diffusion/{name}/samples.png", f"{name}: samples of the main set ({main})"))
        if "trajectory.png" in names:
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
        *figure_images(collected, "figures/diffusion_fid.png", "FID along training, one point per epoch, with 95% bootstrap "
                                                               "intervals"),
        *images]
    return [Section(DIFFUSION, blocks), *_samplers(collected), *_latent(collected, d),
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
        table.append([r["config"], r["sampler"].upper(), r["steps"], MISSING if r["sampler"] == "ddpm" else f"{r['eta']:g}",
                      r["n"], f"{r['kid']:.3f} ± {r['kid_std']:.3f}", fid_ci(r), num(r["precision"], 3),
                      num(r["recall"], 3), r["coverage"]["classes_covered"], memorised(r),
                      num(r.get("seconds_per_1000"), 1), num(speed, 1)])
    n = rows[0]["n"]
    return [Section(SAMPLERS, [
        Paragraph(f"One model, every sampler at the same N = {n} (the full DDPM reverse process costs one network call "
                  "per step, so N is small): KID is the primary score (unbiased at small N), FID beside it (biased "
                  "upwards at small N, so comparable only within this table). DDIM uses trailing timestep spacing, "
                  "so its first step starts from pure noise as DDPM's does. Speed-up: DDPM's wall time per sample over "
                  "the sampler's."),
        Table(["config", "sampler", "steps", "eta", "N", "KID ± std", "FID [95% CI]", "precision", "recall",
               "classes", "memorised %", "s / 1000 samples", "speed-up vs DDPM"], table),
        *figure_images(collected, "figures/diffusion_samplers.png", "C16: KID against sampling wall time per 1,000 images "
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
                     num(epoch_seconds(collected, f"diffusion/{name}")), num(set_seconds(collected, name, main), 1),
                     fid_ci(r), num(r["kid"], 3), num(r["recall"], 3), memorised(r)])
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
                              num(ae["test_mse"], 5), num(ae["test_psnr_db"], 2),
                              fid_ci(ae_scored) if ae_scored else MISSING, num(ae_scored and ae_scored["kid"], 3),
                              num(ae_scored and ae_scored["recall"], 3), memorised(ae_scored),
                              num(epoch_seconds(collected, "autoencoder"))]]))
        if "reconstructions.png" in files(collected, "autoencoder"):
            blocks.append(Image("autoencoder/reconstructions.png", "test images (top) and their reconstructions (bottom)"))
    return [Section(LATENT, blocks)]


def _guidance(collected: dict) -> list[Section]:
    rows = guidance_rows(collected)
    if not rows:
        return []
    table = [[r["config"], f"{r['scale']:g}", r["n"], pct(r["conditional_accuracy"], placeholder=MISSING), fid_ci(r),
              num(r["kid"], 3), num(r["precision"], 3), num(r["recall"], 3), r["coverage"]["classes_covered"],
              num(r["coverage"]["kl_uniform"], 3), memorised(r)] for r in rows]
    images = [Image(f"diffusion/{r['config']}/{r['set']}.png", f"{r['config']}, guidance scale {r['scale']:g}: one "
                                                                 "requested class per row (classes 0-9)")
              for r in rows if f"{r['set']}.png" in files(collected, f"diffusion/{r['config']}")]
    return [Section(GUIDANCE, [
        Paragraph("Ho & Salimans 2022: eps = eps(x, null) + s (eps(x, y) - eps(x, null)). s = 0 is the unconditional "
                  "model, s = 1 the conditional one, s > 1 guided. Classes are requested evenly (N / 10 each); "
                  "conditional accuracy is the share of samples the pipeline's classifier puts in the requested class. "
                  "The requested classes are uniform, so KL and classes covered measure diversity across classes and "
                  "recall within them."),
        Table(["config", "scale s", "N", "conditional accuracy %", "FID [95% CI]", "KID", "precision", "recall",
               "classes", "KL", "memorised %"], table),
        *figure_images(collected, "figures/diffusion_guidance.png", "C18: conditional accuracy and recall against the "
                                                                    "guidance scale"),
        *images])]


def best_gan(collected: dict) -> str | None:
    scored = generative(collected).get("models", {})
    gans = {n: r for n, r in scored.items() if r.get("kind") == "gan" and "stacked" not in r}
    return min(gans, key=lambda n: gans[n]["fid"]) if gans else None


def best_diffusion(collected: dict) -> str | None:
    """The best unconditional diffusion row by FID (a conditional model's null-label set): what C15
    compares with the unconditional GANs."""
    scored = generative(collected).get("models", {})
    diff = {n: r for n, r in scored.items() if r.get("kind") == "diffusion" and r.get("mode", "unconditional") == "unconditional"}
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
    scored = generative(collected)["models"]
    rows = []

    def row(label: str, r: dict, wall: float | None, what: str) -> None:
        rows.append([label, what, fid_ci(r), num(r["precision"], 3), num(r["recall"], 3), r["coverage"]["classes_covered"],
                     num(r["coverage"]["kl_uniform"], 3), memorised(r), num(wall, 0)])

    gan_wall = _cost(collected, f"gan/{gan}").get("wall_s")
    row(f"{gan} (best GAN by FID)", scored[gan], gan_wall, "whole gan stage")
    secs = _cost(collected, f"diffusion/{diff.removesuffix('_uncond')}").get("train_seconds_per_epoch")
    row(f"{diff} (best unconditional diffusion by FID)", scored[diff], sum(secs) if secs else None, "training")
    snap = snapshot_row(collected)
    if snap:
        name, k, r = snap
        row(f"{name} at {d[name].get('snapshot_iters')} iterations ({k})", r,
            _cost(collected, f"diffusion/{name}").get("snapshot_seconds"), "training up to the snapshot")
    return [Section(VERSUS, [
        Paragraph("The best GAN and the best diffusion model by FID at the common N, and the diffusion snapshot taken at "
                  "about a GAN's training wall time. Wall seconds: the GAN's whole stage (training, its FID curve and "
                  "probe), the diffusion model's training loop (sampling excluded)."),
        Table(["model", "wall seconds of", "FID [95% CI]", "precision", "recall", "classes", "KL", "memorised %",
               "wall s"], rows)])]


# ---------------------------------------------------------------------------------------------
# Figures


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


SECTIONS = (_gans, _generative, _diffusion)
FIGURES = (_gan_figures, _diffusion_figures)
