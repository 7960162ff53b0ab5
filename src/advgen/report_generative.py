"""The report's generative sections: GAN training (C11, C12), the common generative evaluation
table (FID, KID, precision/recall, coverage, sampling cost), mode collapse (C13) and code space
(C14), with their figures.

Registered with :func:`advgen.report.section`; :mod:`advgen.report` imports this module.
"""
from __future__ import annotations

from pathlib import Path

from . import plots
from .document import Image, Paragraph, Section, Table
from .report import _figure, _files, _models, figure, read_tsv, section

LOSS_NAMES = {"minimax": "minimax (saturating)", "non_saturating": "non-saturating", "wgan_gp": "WGAN-GP"}


def gans(collected: dict) -> dict[str, dict]:
    """``{config: gan metrics}``, sorted by name (the report does not read params.yaml)."""
    return dict(sorted(_models(collected, "gan").items()))


def _f(v: float | None, digits: int = 1) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def memorised(r: dict | None) -> str:
    """A score dict's memorised share as a percentage ("—" for metrics written before the check)."""
    v = (r or {}).get("memorised")
    return "—" if v is None else f"{100 * v:.2f}"


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


def _fid_ci(r: dict) -> str:
    lo, hi = r.get("fid_ci95", (None, None))
    return f"{r['fid']:.1f}" + (f" [{lo:.1f}, {hi:.1f}]" if lo is not None else "")


def last_points(curve: list[dict], k: int = 3) -> str:
    """The last k points of a FID curve as "FID [lo, hi] @ step", oldest first."""
    step = "g_iter" if curve and "g_iter" in curve[0] else "epoch"
    return "; ".join(f"{p['fid']:.1f} [{p['fid_lo']:.1f}, {p['fid_hi']:.1f}] @{p[step]}" for p in curve[-k:])


def stopped(m: dict, unit: str) -> str:
    """Why a generative stage stopped: its FID curve flattened (at which step), or its budget ended."""
    if m.get("stopped_by") is None:
        return "—"
    return f"curve flat at {unit} {m['converged_at']}" if m["stopped_by"] == "convergence" else "budget ended first"


@section("gans", before="cost")
def _gans(collected: dict) -> list[Section]:
    g = gans(collected)
    if not g:
        return []
    rows = []
    for name, m in g.items():
        probe = m.get("probe") or {}
        wall = (collected.get(f"gan/{name}", {}).get("cost") or {}).get("wall_s")
        rows.append([name, LOSS_NAMES.get(m["loss"], m["loss"]), m["d_steps"], m.get("d_norm", "—"),
                     f"{m['g_iters']} / {m.get('g_steps', '—')}", _f(m.get("epochs"), 2), stopped(m, "G update"),
                     last_points(m.get("fid_curve", [])) or _f(m["fid_curve_final"]),
                     _f(m["final"]["d_real"], 3), _f(m["final"]["d_fake"], 3),
                     _f(probe.get("ratio_start"), 2), _f(probe.get("ratio_end"), 1),
                     _f(probe.get("d_fake_end"), 4), _f(wall, 0)])
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
        *_figure(collected, "figures/gan_fid.png", "FID along training against generator updates, with 95% bootstrap "
                                                   "intervals (C11c, C12)"),
        *_figure(collected, "figures/gan_d_fake.png", "Mean D(G(z)) along training (C11, C12); WGAN-GP's critic is "
                                                       "not a probability and is left out"),
        *_figure(collected, "figures/gan_saturation.png",
                 "C11 (a): the gradient of each generator loss with respect to D's logit against D(G(z)), analytic"),
        *_figure(collected, "figures/gan_probe.png",
                 "C11 (b): measured ratio of the gradient norms reaching G (non-saturating / minimax) while D learns "
                 "to reject G's initial samples (the probe, one line per JS-loss config)"),
    ]
    for name in g:
        pngs = sorted(_files(collected, f"gan/{name}/samples"))
        if pngs:
            blocks.append(Image(f"gan/{name}/samples/{pngs[-1]}", f"{name}: samples at the end of training (fixed codes, "
                                                                  "EMA generator)"))
    return [Section("GANs (C11, C12)", blocks)]


@section("generative", before="cost")
def _generative(collected: dict) -> list[Section]:
    m = collected.get("generative", {}).get("metrics")
    if not m:
        return []
    cost = collected.get("generative_sampling", {}).get("cost", {})
    fl = m["floor"]
    rows = [["real vs real (floor)", _fid_ci(fl), _f(fl["kid"], 3), _f(fl["precision"], 3), _f(fl["recall"], 3),
             fl["coverage"]["classes_covered"], _f(fl["coverage"]["kl_uniform"], 3), "—", memorised(fl), "—"]]
    large = []
    for name, r in m["models"].items():
        rows.append([name, _fid_ci(r), _f(r["kid"], 3), _f(r["precision"], 3), _f(r["recall"], 3),
                     r["coverage"]["classes_covered"], _f(r["coverage"]["kl_uniform"], 3),
                     f"{r['stacked']['modes_covered']} (KL {r['stacked']['kl_uniform']:.2f})" if "stacked" in r else "—",
                     memorised(r), _f(_seconds_per_1000(collected, cost, name, r), 2)])
        if "large" in r:
            large.append([name, r["large"]["n"], _f(r["large"]["fid"]), _f(r["large"]["kid"], 3),
                          _f(r["large"]["precision"], 3), _f(r["large"]["recall"], 3)])
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
            large.insert(0, ["real vs real (floor)", f2["n"], _f(f2["fid"]), _f(f2["kid"], 3), _f(f2["precision"], 3),
                             _f(f2["recall"], 3)])
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
    return [Section("Mode collapse (C13)", blocks)]


def _codes(m: dict, collected: dict) -> list[Section]:
    rows, images = [], []
    for name, r in m["models"].items():
        c = r.get("codes")
        if not c:
            continue
        i, a = c["interpolation"], c["arithmetic"]
        rows.append([name, i["n_paths"], _f(None if i["monotone_fraction"] is None else 100 * i["monotone_fraction"]),
                     _f(i["mean_max_drop"], 3), a["n_tests"],
                     _f(None if a["success_rate"] is None else 100 * a["success_rate"]),
                     _f(None if a["chance"] is None else 100 * a["chance"])])
        if f"interpolation_{name}.png" in _files(collected, "generative"):
            images.append(Image(f"generative/interpolation_{name}.png", f"{name}: linear interpolations between codes "
                                                                          "of two classes (one path per row)"))
    if not rows:
        return []
    tol = next(r["codes"]["interpolation"]["tolerance"] for r in m["models"].values() if r.get("codes"))
    return [Section("Code space (C14)", [
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
            if filename in _files(collected, f"gan/{name}")}


@figure
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
        from .generative.gan import saturation_curves

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
