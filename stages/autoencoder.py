"""Stage autoencoder: latent diffusion's encoder and decoder, from params ``autoencoder``.

Usage: ``python stages/autoencoder.py``. Writes ``models/autoencoder/`` (weights + sidecar, and
the reconstructions of ``n_recon`` test images as a sample set, which ``evaluate_generative``
scores as the ceiling of latent diffusion), ``reports/autoencoder/`` (metrics: reconstruction
MSE and PSNR on those n_recon test images; training log; a grid of originals over reconstructions)
and the headline.
"""
from __future__ import annotations

from pathlib import Path

import torch

from advgen import headline, stage
from advgen.config import load_section
from advgen.data import dataset_dir, load_split, subset, to_float
from advgen.generative import headline as hl
from advgen.generative.autoencoder import Autoencoder, fit_autoencoder, reconstruction_scores
from advgen.generative.diffusion_run import seeded_init
from advgen.generative.params import AutoencoderConfig
from advgen.generative.store import save_module, save_samples
from advgen.io import tsv
from advgen.models import to_layout
from advgen.plots import grid_png
from advgen.utils import atomic_dir, atomic_write_json, deterministic_kernels, resolve_device, round_floats


def train_autoencoder(params: dict) -> dict:
    common = stage.common(params)
    cfg = load_section(AutoencoderConfig, params, "autoencoder")
    device = resolve_device(common.device)
    deterministic_kernels()
    gen = torch.Generator().manual_seed(common.seed)
    folder = dataset_dir(stage.dataset(params))
    x, y = load_split(folder, "train")
    x, _ = subset(x, y, cfg.n_train, gen)
    xte, _ = load_split(folder, "test")
    if tuple(x.shape[1:]) != (1, 28, 28):
        raise ValueError(f"autoencoder: built for 28x28 grey images, but the dataset's images are {tuple(x.shape[1:])}")
    if cfg.n_recon > len(xte):
        raise ValueError(f"params.yaml: the profile's 'autoencoder.n_recon' = {cfg.n_recon} exceeds the {len(xte)} test images")
    ae = seeded_init(lambda: Autoencoder(tuple(cfg.latent), cfg.width), gen)
    ae = to_layout(ae.to(device))
    fit = fit_autoencoder(ae, to_float(x).to(device).contiguous(memory_format=torch.channels_last),
                          cfg.epochs, cfg.batch_size, cfg.lr, gen, cfg.kl_weight)
    test = to_float(xte[:cfg.n_recon]).to(device).contiguous(memory_format=torch.channels_last)
    recon, scores = reconstruction_scores(ae, test)
    sidecar = {"produced_by": "autoencoder", "profile": common.profile, "seed": common.seed,
               "arch_kwargs": {"latent": list(cfg.latent), "width": cfg.width},
               "config": {"epochs": cfg.epochs, "batch_size": cfg.batch_size, "lr": cfg.lr, "kl_weight": cfg.kl_weight,
                          "n_train": len(x)},
               "shift": ae.shift.tolist(), "scale": ae.scale.tolist()}
    with atomic_dir("models/autoencoder") as tmp:
        save_module(ae, tmp, "autoencoder", sidecar)
        save_samples(tmp, {"reconstructions": {"images": recon, "labels": None, "role": "reconstruction"}})
    metrics = round_floats({**sidecar["config"], "latent": list(cfg.latent), "latent_numbers": int(torch.tensor(cfg.latent).prod()),
                            "pixels": 28 * 28, "shift": ae.shift.tolist(), "scale": ae.scale.tolist(), "n_test": len(test),
                            "test_mse": scores["mse"], "test_psnr_db": scores["psnr_db"],
                            "train_mse_final": fit.log[-1]["train_mse"]})
    with atomic_dir("reports/autoencoder") as tmp:
        atomic_write_json(tmp / "metrics.json", metrics)
        (tmp / "log.tsv").write_text(tsv(fit.log, "%.6g"))
        pairs = torch.cat([test[:8].cpu(), recon[:8]])  # originals over reconstructions
        (tmp / "reconstructions.png").write_bytes(grid_png(pairs, 8))
    headline.write("autoencoder", hl.autoencoder(metrics))
    return {"train_seconds_per_epoch": [round(s, 3) for s in fit.epoch_seconds]}


if __name__ == "__main__":
    stage.run("autoencoder", train_autoencoder, Path("reports/cost/autoencoder.json"))
