"""Stage gan: train one DCGAN from params ``gan.configs.<name>``.

Usage: ``python stages/gan.py <name>``. Writes ``models/gan/<name>/`` (generator safetensors +
sidecar), ``reports/gan/<name>/`` (metrics, training log, FID curve, the C11 probe, a sample
grid at every FID point) and the headline. With ``gan.nproc > 1`` it relaunches itself under torchrun
(gloo on CPU, nccl on GPU); only rank 0 writes.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from advgen import headline, stage
from advgen.config import load_section
from advgen.data import dataset_dir, load_split, subset, to_float
from advgen.generative import headline as hl
from advgen.generative.features import load_feature_net
from advgen.generative.gan import GANSchedule
from advgen.generative.models import save_generator
from advgen.generative.params import GANConfig
from advgen.generative.training import early_d_fake, fit_gan
from advgen.io import tsv
from advgen.plots import grid_png
from advgen.training import setup
from advgen.utils import atomic_dir, atomic_write_json, deterministic_kernels, round_floats


def _tsv(rows: list[dict]) -> str:
    return tsv(rows, "%.6g")


def train_gan_config(params: dict, name: str) -> None:
    common = stage.common(params)
    cfg = load_section(GANConfig, params, "gan")
    spec = cfg.spec(name)
    started = setup(cfg.nproc, common.device)
    if started is None:  # ran under torchrun
        return
    rank, device = started
    deterministic_kernels()
    gen = torch.Generator().manual_seed(common.seed)
    x, y = load_split(dataset_dir(stage.dataset(params)), "train")
    x, _ = subset(x, y, cfg.n_train, gen)
    real = to_float(x)  # (N, 1, 28, 28) in [0, 1]
    feature_net = load_feature_net(cfg.feature_model, device=device)
    schedule = GANSchedule(cfg.g_steps, cfg.batch_size, spec.d_steps, cfg.log_every, cfg.trace_iters, cfg.fid_every,
                           cfg.converge, cfg.converge_window, cfg.ema_decay)
    run = fit_gan(spec, schedule, real, feature_net, n_fid=cfg.n_fid, grid=cfg.grid, probe_steps=cfg.probe_steps,
                  n_boot=cfg.n_boot_curve, generator=gen, device=device)
    if rank != 0:
        return
    sidecar = {"name": name, "produced_by": "gan", "profile": common.profile, "seed": common.seed,
               "arch_kwargs": {"z_dim": spec.z_dim, "channels": 3 if spec.stacked else 1, "width": spec.width},
               "config": {**spec.config(), "g_steps": cfg.g_steps, "batch_size": cfg.batch_size,
                          "n_train": len(real), "ema_decay": cfg.ema_decay, "nproc": cfg.nproc},
               "feature_model": cfg.feature_model, "feature_sha256": feature_net.sha256}
    with atomic_dir(Path("models/gan") / name) as tmp:
        save_generator(run.g, tmp, sidecar)
    last = run.log[-1]
    metrics = round_floats({
        "name": name, **sidecar["config"], "g_iters": run.g_iters, "d_iters": run.d_iters, "epochs": run.epochs,
        "feature_model": cfg.feature_model, "feature_sha256": feature_net.sha256, "n_fid": cfg.n_fid,
        "fid_curve_final": run.fid[-1]["fid"], "fid_curve_best": min(r["fid"] for r in run.fid),
        "fid_curve": [{k: r[k] for k in ("g_iter", "fid", "fid_lo", "fid_hi")} for r in run.fid],
        "converged_at": run.converged_at, "converge_window": cfg.converge_window,
        "stopped_by": "convergence" if run.converged_at is not None else "budget",
        "early_d_fake": early_d_fake(run.log, cfg.trace_iters) if spec.loss != "wgan_gp" else None,  # no probabilities
        "final": {k: last[k] for k in ("d_loss", "g_loss", "d_real", "d_fake", "g_grad_norm")},
        "probe": ({"d_steps": run.probe[-1]["d_step"], "d_fake_end": run.probe[-1]["d_fake"],
                   "ratio_start": run.probe[0]["ratio"], "ratio_end": run.probe[-1]["ratio"]}
                  if run.probe else None)})
    with atomic_dir(Path("reports/gan") / name) as tmp:
        atomic_write_json(tmp / "metrics.json", metrics)
        (tmp / "log.tsv").write_text(_tsv(run.log))
        (tmp / "fid.tsv").write_text(_tsv(run.fid))
        if run.probe:
            (tmp / "probe.tsv").write_text(_tsv(run.probe))
        (tmp / "samples").mkdir()
        for g_iter, imgs in run.grids.items():
            (tmp / "samples" / f"g{g_iter:06d}.png").write_bytes(grid_png(imgs, cfg.grid))  # make_grid + save_image
    headline.write(f"gan/{name}", hl.gan(metrics))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python stages/gan.py <config name from params gan.configs>")
    config_name = sys.argv[1]
    cost = None if "LOCAL_RANK" in os.environ else Path("reports/cost/gan") / f"{config_name}.json"
    stage.run("gan", lambda p: train_gan_config(p, config_name), cost)
