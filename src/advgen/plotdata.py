"""Plot data for ``dvc plots``: the per-model and per-stage TSVs gathered into long tables.

DVC draws one line per (file, field), so a plot of every model needs either one entry per
model in ``dvc.yaml`` (edited whenever a model is added) or one long table with a ``model``
column and a template that colours by it. The report stage writes the long tables below;
``.dvc/plots/*.json`` holds the templates and ``dvc.yaml``'s top-level ``plots`` uses them.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .io import atomic_write_text


def _tsv(frame: pd.DataFrame) -> str:
    return frame.to_csv(sep="\t", index=False, float_format="%.6f")


def robustness_long(reports: Path, norm: str = "linf") -> pd.DataFrame:
    """(model, attack, eps, accuracy) from every ``robustness/<model>/<norm>.tsv``: one line per
    attack per model (``worst_case`` is the cascade; the L2 table holds PGD-L2)."""
    frames = []
    for path in sorted(reports.glob(f"robustness/*/{norm}.tsv")):
        wide = pd.read_csv(path, sep="\t")
        long = wide.melt(id_vars="eps", var_name="attack", value_name="accuracy")
        frames.append(long.assign(model=path.parent.name)[["model", "attack", "eps", "accuracy"]])
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["model", "attack", "eps", "accuracy"])


def training_long(reports: Path, stages: tuple[str, ...] = ("train", "defend")) -> pd.DataFrame:
    """(model, epoch, train_acc, test_acc, ...) from every ``train/<model>/curve.tsv`` and
    ``defend/<model>/curve.tsv`` (defended models add the overfitting monitor's columns)."""
    paths = [p for st in stages for p in sorted(reports.glob(f"{st}/*/curve.tsv"))]
    frames = [pd.read_csv(p, sep="\t").assign(model=p.parent.name) for p in paths]
    if not frames:
        return pd.DataFrame(columns=["model", "epoch", "test_acc"])
    frame = pd.concat(frames, ignore_index=True)
    return frame[["model", *[c for c in frame.columns if c != "model"]]]


def monitor_long(training: pd.DataFrame) -> pd.DataFrame:
    """(model, epoch, monitor_pgd_acc, monitor_fgsm_acc) of the defended models with a monitor."""
    cols = ["model", "epoch", "monitor_pgd_acc", "monitor_fgsm_acc"]
    if "monitor_pgd_acc" not in training:
        return pd.DataFrame(columns=cols)
    return training.dropna(subset=["monitor_pgd_acc"])[cols]


def certify_long(reports: Path) -> pd.DataFrame:
    """(model, radius, certified, empirical) from every ``certify/<model>/curve.tsv``."""
    frames = [pd.read_csv(p, sep="\t").assign(model=p.parent.name) for p in sorted(reports.glob("certify/*/curve.tsv"))]
    cols = ["model", "radius", "certified", "empirical"]
    return pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)


def backdoor_rates(reports: Path) -> pd.DataFrame:
    """(model = attack family, rate, asr, ca) from every ``backdoor/<model>/metrics.json``: the
    dose-response of each attack (a source-specific attack is a family of its own)."""
    rows = []
    for path in sorted(reports.glob("backdoor/*/metrics.json")):
        m = json.loads(path.read_text())
        p, u = m["poison"], m["undefended"]
        family = p["attack"] + (f" (class {p['source']} -> {p['target']})" if "source" in p else "")
        rows.append({"model": family, "rate": p["rate"], "asr": u["asr"]["value"], "ca": u["ca"]["value"],
                     "name": m["model"]})
    cols = ["model", "rate", "asr", "ca", "name"]
    return pd.DataFrame(rows, columns=cols).sort_values(["model", "rate"], kind="stable") if rows else pd.DataFrame(columns=cols)


def gan_long(reports: Path, filename: str, columns: list[str]) -> pd.DataFrame:
    """(model, *columns) from every ``gan/<config>/<filename>`` (fid.tsv, log.tsv, probe.tsv)."""
    frames = [pd.read_csv(p, sep="\t").assign(model=p.parent.name) for p in sorted(reports.glob(f"gan/*/{filename}"))]
    frames = [f[["model", *columns]] for f in frames if set(columns) <= set(f.columns)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["model", *columns])


def gan_saturation() -> pd.DataFrame:
    """C11 (a): both generator losses and their derivatives against D(G(z)), analytic."""
    from .generative.gan import saturation_curves

    return pd.DataFrame(saturation_curves())


def diffusion_loss(reports: Path) -> pd.DataFrame:
    """(model, iter, images, loss) from every ``diffusion/<config>/log.tsv``."""
    frames = [pd.read_csv(p, sep="\t").assign(model=p.parent.name) for p in sorted(reports.glob("diffusion/*/log.tsv"))]
    cols = ["model", "iter", "images", "loss"]
    return pd.concat([f[cols] for f in frames], ignore_index=True) if frames else pd.DataFrame(columns=cols)


def diffusion_fid(reports: Path) -> pd.DataFrame:
    """(model, epoch, iter, fid, fid_lo, fid_hi) from every ``diffusion/<config>/fid.tsv``."""
    cols = ["model", "epoch", "iter", "fid", "fid_lo", "fid_hi"]
    frames = [pd.read_csv(p, sep="\t").assign(model=p.parent.name) for p in sorted(reports.glob("diffusion/*/fid.tsv"))]
    frames = [f[cols] for f in frames if set(cols) <= set(f.columns)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=cols)


def _diffusion_sets(reports: Path, role: str) -> list[dict]:
    path = reports / "generative" / "metrics.json"
    if not path.is_file():
        return []
    sets = json.loads(path.read_text()).get("diffusion") or {}
    return [{"config": c, "set": k, **r} for c, s in sorted(sets.items()) for k, r in sorted(s.items())
            if r.get("role") == role]


def diffusion_samplers(reports: Path) -> pd.DataFrame:
    """C16: (model = config and sampler family, steps, seconds_per_1000, kid, kid_std, fid) of every
    sweep set; the seconds come from ``cost/diffusion/<config>.json`` (this run's machine)."""
    rows = []
    for r in _diffusion_sets(reports, "sweep"):
        cost = reports / "cost" / "diffusion" / f"{r['config']}.json"
        secs = json.loads(cost.read_text()).get("sampling_seconds_per_1000", {}) if cost.is_file() else {}
        family = "DDPM" if r["sampler"] == "ddpm" else f"DDIM eta={r['eta']:g}"
        rows.append({"model": f"{r['config']} {family}", "steps": r["steps"], "seconds_per_1000": secs.get(r["set"]),
                     "kid": r["kid"], "kid_std": r["kid_std"], "fid": r["fid"]})
    cols = ["model", "steps", "seconds_per_1000", "kid", "kid_std", "fid"]
    return pd.DataFrame(rows, columns=cols).sort_values(["model", "steps"], kind="stable") if rows else pd.DataFrame(columns=cols)


def diffusion_guidance(reports: Path) -> pd.DataFrame:
    """C18: (model = config, scale, conditional_accuracy, recall, fid, kid) of every guidance set."""
    cols = ["model", "scale", "conditional_accuracy", "recall", "fid", "kid"]
    rows = [{"model": r["config"], **{k: r[k] for k in cols[1:]}} for r in _diffusion_sets(reports, "guidance")]
    return pd.DataFrame(rows, columns=cols).sort_values(["model", "scale"], kind="stable") if rows else pd.DataFrame(columns=cols)


def write_plot_data(reports: str | Path, out: str | Path) -> list[Path]:
    """Write ``robustness.tsv``, ``worst_case.tsv``, ``robustness_l2.tsv``, ``training.tsv``,
    ``defense_monitor.tsv``, ``certified.tsv``, ``backdoor_rates.tsv`` and the GAN tables
    (``gan_fid.tsv``, ``gan_trace.tsv``, ``gan_probe.tsv``, ``gan_saturation.tsv``) and the diffusion
    tables (``diffusion_loss.tsv``, ``diffusion_fid.tsv``, ``diffusion_samplers.tsv``, ``diffusion_guidance.tsv``) under ``out``."""
    reports, out = Path(reports), Path(out)
    rob = robustness_long(reports)
    tables = {"robustness.tsv": rob,
              "worst_case.tsv": rob[rob["attack"] == "worst_case"][["model", "eps", "accuracy"]],
              "robustness_l2.tsv": robustness_long(reports, "l2")[["model", "eps", "accuracy"]],
              "training.tsv": training_long(reports)}
    tables["defense_monitor.tsv"] = monitor_long(tables["training.tsv"])
    tables["certified.tsv"] = certify_long(reports)
    tables["backdoor_rates.tsv"] = backdoor_rates(reports)
    tables["gan_fid.tsv"] = gan_long(reports, "fid.tsv", ["images", "g_iter", "fid", "fid_lo", "fid_hi"])
    trace = gan_long(reports, "log.tsv", ["images", "g_iter", "d_loss", "g_loss", "d_real", "d_fake", "g_grad_norm"])
    wgan = {p.parent.name for p in reports.glob("gan/*/metrics.json") if json.loads(p.read_text())["loss"] == "wgan_gp"}
    tables["gan_trace.tsv"] = trace[~trace["model"].isin(wgan)]  # a critic's output is not a probability
    tables["gan_probe.tsv"] = gan_long(reports, "probe.tsv", ["d_step", "d_fake", "ratio"])
    tables["gan_saturation.tsv"] = gan_saturation()
    tables["diffusion_loss.tsv"] = diffusion_loss(reports)
    tables["diffusion_fid.tsv"] = diffusion_fid(reports)
    tables["diffusion_samplers.tsv"] = diffusion_samplers(reports)
    tables["diffusion_guidance.tsv"] = diffusion_guidance(reports)
    for name, frame in tables.items():
        atomic_write_text(out / name, _tsv(frame))
    return [out / name for name in tables]
