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


def _fid_ci(r: dict) -> str:
    lo, hi = r.get("fid_ci95", (None, None))
    return f"{r['fid']:.1f}" + (f" [{lo:.1f}, {hi:.1f}]" if lo is not None else "")


@section("gans", before="cost")
def _gans(collected: dict) -> list[Section]:
    g = gans(collected)
    if not g:
        return []
    rows = []
    for name, m in g.items():
        probe = m.get("probe") or {}
        rows.append([name, LOSS_NAMES.get(m["loss"], m["loss"]), m["d_steps"], m["epochs"], m["g_iters"],
                     _f(m["fid_curve_final"]), _f(m["final"]["d_real"], 3), _f(m["final"]["d_fake"], 3),
                     _f(probe.get("ratio_start"), 2), _f(probe.get("ratio_end"), 1),
                     _f(probe.get("d_fake_end"), 4)])
    first = next(iter(g.values()))
    blocks: list = [
        Paragraph(f"DCGANs for 28x28 (z of size {first['z_dim']}, transposed convolutions; a two-layer convolutional "
                  f"discriminator without BatchNorm, shared by every loss), Adam, batch {first['batch_size']}, all from "
                  "one seed (minimax and non-saturating start from the same weights). The budget is the same for every config: "
                  f"{first['epochs']} passes of D over the {first['n_train']} training images; G steps once every "
                  "`d_steps` D steps. FID here is the training curve's (n = "
                  f"{first['n_fid']} samples from fixed codes against {first['n_fid']} training images, in the feature "
                  "network's space); the common evaluation below scores every model at one N. **Probe** (C11 at "
                  "initialisation): G frozen at its initial weights, a copy of D trained against it; the ratio is the "
                  "norm of the gradient reaching G under the non-saturating loss over that under the minimax loss, at "
                  "one state and one batch of codes, before D's first step and after its last."),
        Table(["GAN", "loss", "d_steps", "epochs", "G iterations", "FID (curve, end)", "D(x)", "D(G(z))",
               "probe ratio, D untrained", "probe ratio, D trained", "D(G(z)) after probe"], rows),
        *_figure(collected, "figures/gan_fid.png", "FID along training against real images seen by D (C11c, C12)"),
        *_figure(collected, "figures/gan_d_fake.png", "Mean D(G(z)) along training (C12); WGAN-GP's critic is "
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
            blocks.append(Image(f"gan/{name}/samples/{pngs[-1]}", f"{name}: samples after the last epoch (fixed codes)"))
    return [Section("GANs (C11, C12)", blocks)]


@section("generative", before="cost")
def _generative(collected: dict) -> list[Section]:
    m = collected.get("generative", {}).get("metrics")
    if not m:
        return []
    cost = collected.get("generative_sampling", {}).get("cost", {})
    fl = m["floor"]
    rows = [["real vs real (floor)", _fid_ci(fl), _f(fl["kid"], 3), _f(fl["precision"], 3), _f(fl["recall"], 3),
             fl["coverage"]["classes_covered"], _f(fl["coverage"]["kl_uniform"], 3), "—", "—"]]
    large = []
    for name, r in m["models"].items():
        rows.append([name, _fid_ci(r), _f(r["kid"], 3), _f(r["precision"], 3), _f(r["recall"], 3),
                     r["coverage"]["classes_covered"], _f(r["coverage"]["kl_uniform"], 3),
                     f"{r['stacked']['modes_covered']} (KL {r['stacked']['kl_uniform']:.2f})" if "stacked" in r else "—",
                     _f(_seconds_per_1000(collected, cost, name, r), 2)])
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
                  "diffusion models: their main set's sampler, `reports/cost/diffusion/`)."),
        Table(["model", "FID [95% CI]", "KID", "precision", "recall", "classes covered", "KL", "stacked modes of 1000",
               "s / 1000 samples"], rows),
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
        return (collected.get(f"diffusion/{name}", {}).get("cost") or {}).get("sampling_seconds_per_1000", {}).get(r["set"])
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
            {n: (t["images"], t["fid"]) for n, t in fid.items()}, title="FID along training (curve n)",
            xlabel="real images seen by D", ylabel="FID (feature network)", ylim=None)
    logs = {n: t for n, t in _tables(reports, collected, "log.tsv").items() if collected[f"gan/{n}"]["metrics"]["loss"] != "wgan_gp"}
    if logs:
        out["figures/gan_d_fake.png"] = plots.line_plot(
            {n: (t["images"], t["d_fake"]) for n, t in logs.items()}, title="mean D(G(z)) along training",
            xlabel="real images seen by D", ylabel="D(G(z))")
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
