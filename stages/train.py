"""Stage train: fit one classifier from params ``train.models.<name>``.

Usage: ``python stages/train.py <name>``. With ``train.nproc > 1`` it relaunches itself
under torchrun (gloo on CPU, nccl on GPU); only rank 0 writes.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from advgen import headline, stage
from advgen.config import load_section
from advgen.io import tsv
from advgen.models import build_model, save_model
from advgen.schema import TrainConfig
from advgen.stats import wilson_p
from advgen.training import fit, setup, training_data
from advgen.utils import atomic_dir, atomic_write_json, atomic_write_text, deterministic_kernels, round_floats


def train_model(params: dict, name: str) -> None:
    common = stage.common(params)
    cfg = load_section(TrainConfig, params, "train")
    spec = cfg.spec(name)
    started = setup(cfg.nproc, common.device)
    if started is None:  # ran under torchrun
        return
    rank, device = started
    seed = common.seed if spec.seed is None else spec.seed
    deterministic_kernels()
    gen = torch.Generator().manual_seed(seed)
    dataset = stage.dataset(params)
    data = training_data(dataset, cfg.n_train, cfg.n_test, spec.resolution, gen, spec.data)
    (xtr, ytr), (xte, yte), num_classes = data.train, data.test, data.num_classes
    epochs = cfg.epochs_of(name)
    model = build_model(spec.arch, tuple(xtr.shape[1:]), num_classes, generator=gen, **spec.arch_kwargs)
    result = fit(model, (xtr, ytr), (xte, yte), epochs=epochs, batch_size=cfg.batch_size,
                 lr=spec.lr or cfg.lr, weight_decay=cfg.weight_decay, num_classes=num_classes,
                 generator=gen, device=device)
    if rank != 0:
        return
    sidecar = {"name": name, "arch": spec.arch, "arch_kwargs": spec.arch_kwargs,
               "in_shape": list(xtr.shape[1:]), "num_classes": num_classes, "dataset": dataset,
               "data_manifest_sha256": data.manifest_sha256, "seed": seed,
               "profile": common.profile, "nproc": cfg.nproc,
               "config": {"epochs": epochs, "batch_size": cfg.batch_size, "lr": spec.lr or cfg.lr,
                          "weight_decay": cfg.weight_decay, "n_train": len(ytr), "n_test": len(yte),
                          "resolution": spec.resolution}}
    if spec.data != "prepared":  # clean models keep the sidecar they had before poisoned data existed
        sidecar["data"] = spec.data
    with atomic_dir(Path("models") / name) as tmp:
        save_model(model.cpu(), tmp, sidecar)
    out = Path("reports/train") / name
    metrics = {"model": name, "arch": spec.arch, "test_accuracy": result.metrics["accuracy"],
               "test_accuracy_ci95": list(wilson_p(result.metrics["accuracy"], len(yte))),
               "test_loss": result.metrics["loss"], "per_class_accuracy": result.metrics["per_class_accuracy"],
               "n_train": len(ytr), "n_test": len(yte), "epochs": epochs,
               "params": sum(p.numel() for p in model.parameters())}
    metrics = round_floats(metrics)
    atomic_write_json(out / "metrics.json", metrics)
    headline.write(f"train/{name}", headline.train(metrics))
    atomic_write_text(out / "curve.tsv", tsv(result.history, "%.6f"))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python stages/train.py <model name from params train.models>")
    model_name = sys.argv[1]
    # Under torchrun the launching process records the cost, children included.
    cost = None if "LOCAL_RANK" in os.environ else Path("reports/cost/train") / f"{model_name}.json"
    stage.run("train", lambda p: train_model(p, model_name), cost)
