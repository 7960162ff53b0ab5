"""Stage diffusion: train one denoiser from params ``diffusion.configs.<name>`` and draw its sample sets.

Usage: ``python stages/diffusion.py <name>``. Writes ``models/diffusion/<name>/`` (EMA weights +
sidecar, the C15 snapshot if asked, and every sample set of the config's plan as uint8 images,
which ``evaluate_generative`` scores), ``reports/diffusion/<name>/`` (metrics, loss log, an
8x8 grid of the main set, the denoising strip x_T -> x_0, a grid per guidance scale), the
headline, and the cost record with the training seconds per epoch and the sampling seconds per
set (timings never go into metrics). With ``diffusion.nproc > 1`` the training runs under
torchrun (gloo on CPU, nccl on GPU); only rank 0 samples and writes.
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
from advgen.generative.autoencoder import Autoencoder
from advgen.generative.diffusion_run import Curve, fit_diffusion, sample_plan, sample_sets
from advgen.generative.features import load_feature_net
from advgen.generative.params import DiffusionConfig
from advgen.generative.store import load_module, save_module, save_samples
from advgen.generative.unet import n_params
from advgen.io import tsv
from advgen.plots import grid_png
from advgen.training import setup
from advgen.utils import atomic_dir, atomic_write_json, deterministic_kernels, round_floats


def train_diffusion_config(params: dict, name: str) -> dict | None:
    common = stage.common(params)
    cfg = load_section(DiffusionConfig, params, "diffusion")
    spec = cfg.spec(name)
    plan = sample_plan(cfg, name)
    started = setup(cfg.nproc, common.device)
    if started is None:  # ran under torchrun
        return None
    rank, device = started
    world = int(os.environ.get("WORLD_SIZE", "1"))
    deterministic_kernels()
    gen = torch.Generator().manual_seed(common.seed)
    x, y = load_split(dataset_dir(stage.dataset(params)), "train")
    x, y = subset(x, y, cfg.n_train, gen)
    if tuple(x.shape[1:]) != (1, 28, 28):
        raise ValueError(f"diffusion: the U-Net and autoencoder are built for 28x28 grey images, but the dataset's "
                         f"images are {tuple(x.shape[1:])}")
    ae = None
    if spec.space == "latent":
        ae = load_module("models/autoencoder", "autoencoder", "autoencoder",
                         lambda kw: Autoencoder(tuple(kw["latent"]), kw["width"]), device)
    net = load_feature_net(cfg.feature_model, device=device)
    curve = Curve(net, cfg.n_fid, cfg.curve_steps, cfg.n_boot_curve, cfg.converge_window if cfg.converge else 0)
    epochs = cfg.epochs * spec.epoch_factor
    fit = fit_diffusion(spec, to_float(x), y, ae, T=cfg.T, epochs=epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                        ema_decay=cfg.ema_decay, p_uncond=cfg.p_uncond, log_every=cfg.log_every,
                        snapshot_iters=cfg.snapshot_iters if spec.snapshot else 0, generator=gen, device=device,
                        rank=rank, world=world, warmup=cfg.warmup, curve=curve)
    if rank != 0:
        return None
    snapshot = None
    if fit.hist.snapshot is not None:
        import copy
        snapshot = copy.deepcopy(fit.ema)
        snapshot.load_state_dict(fit.hist.snapshot)
    sets, strip, seconds = sample_sets(fit.ema, spec, plan, cfg.T, fit.data_shape, ae, gen, device, snapshot)
    arch = {"channels": fit.data_shape[0], "base": spec.base, "mults": list(spec.mults), "num_classes": spec.num_classes}
    sidecar = {"name": name, "produced_by": "diffusion", "profile": common.profile, "seed": common.seed,
               "arch_kwargs": arch, "schedule": spec.schedule, "T": cfg.T, "space": spec.space,
               "data_shape": list(fit.data_shape),
               "autoencoder_sha256": ae.sidecar["weights_sha256"] if ae is not None else None,
               "config": {"epochs": epochs, "batch_size": cfg.batch_size, "lr": cfg.lr, "warmup": cfg.warmup,
                          "ema_decay": cfg.ema_decay, "p_uncond": cfg.p_uncond if spec.conditional else None,
                          "n_train": len(x), "nproc": cfg.nproc}}
    with atomic_dir(Path("models/diffusion") / name) as tmp:
        save_module(fit.ema, tmp, "denoiser", sidecar)
        if snapshot is not None:
            save_module(snapshot, tmp, "snapshot", {**sidecar, "iters": cfg.snapshot_iters})
        save_samples(tmp, sets)
    log = fit.hist.log
    metrics = round_floats({
        "name": name, **{k: sidecar[k] for k in ("schedule", "T", "space", "data_shape")},
        "conditional": spec.conditional, "params": n_params(fit.ema), **sidecar["config"], "iters": fit.hist.iters,
        "epochs_run": fit.hist.epochs, "converged_at": fit.hist.converged_at, "converge_window": cfg.converge_window,
        "stopped_by": "convergence" if fit.hist.converged_at is not None else "budget",
        "feature_model": cfg.feature_model, "feature_sha256": net.sha256, "n_fid": cfg.n_fid,
        "curve_sampler": f"ddim{cfg.curve_steps}_eta0",
        "fid_curve": [p.row("epoch") for p in fit.hist.fid],
        "snapshot_iters": cfg.snapshot_iters if snapshot is not None else None,
        "loss_final": log[-1]["loss"], "loss_first": log[0]["loss"],
        "sets": {k: {f: v for f, v in s.items() if f not in ("images", "labels")} | {"n": len(s["images"])}
                 for k, s in sets.items()}})
    main = next(k for k, s in sets.items() if s["role"] == "main")
    with atomic_dir(Path("reports/diffusion") / name) as tmp:
        atomic_write_json(tmp / "metrics.json", metrics)
        (tmp / "log.tsv").write_text(tsv(log, "%.6g"))
        fid = [{**p.row("epoch"), "iter": p.step * fit.hist.iters // max(fit.hist.epochs, 1)} for p in fit.hist.fid]
        (tmp / "fid.tsv").write_text(tsv(fid, "%.6g"))
        (tmp / "samples.png").write_bytes(grid_png(sets[main]["images"][:cfg.grid ** 2], cfg.grid))
        if strip:
            rows = torch.stack(strip, 1).flatten(0, 1)  # (seeds * frames, 1, 28, 28): one seed per row
            (tmp / "trajectory.png").write_bytes(grid_png(rows, len(strip)))
        for k, s in sets.items():
            if s["role"] == "guidance":  # one row per class
                per_class = torch.cat([s["images"][s["labels"] == c][:cfg.grid] for c in range(spec.num_classes)])
                (tmp / f"{k}.png").write_bytes(grid_png(per_class, cfg.grid))
    headline.write(f"diffusion/{name}", hl.diffusion(metrics))
    return {"train_seconds_per_epoch": [round(s, 3) for s in fit.hist.epoch_seconds],
            "snapshot_seconds": None if fit.hist.snapshot_seconds is None else round(fit.hist.snapshot_seconds, 3),
            "sampling_seconds_per_1000": {k: round(1000 * seconds[k] / len(s["images"]), 3) for k, s in sets.items()}}


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python stages/diffusion.py <config name from params diffusion.configs>")
    config_name = sys.argv[1]
    cost = None if "LOCAL_RANK" in os.environ else Path("reports/cost/diffusion") / f"{config_name}.json"
    stage.run("diffusion", lambda p: train_diffusion_config(p, config_name), cost)
