"""Stage train: fit one classifier from params ``train.models.<name>``.

Usage: ``python stages/train.py <name>``. With ``train.nproc > 1`` it relaunches itself
under torchrun (gloo on CPU, nccl on GPU); only rank 0 writes.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from advgen import headline, stage
from advgen.data import load_classes, load_split, manifest_sha256, subset, to_float
from advgen.models import build_model, save_model
from advgen.schema import TrainConfig, load_section
from advgen.stats import wilson_p
from advgen.training import fit
from advgen.utils import atomic_dir, atomic_write_json, atomic_write_text, deterministic_kernels, resolve_device, round_floats


def _launch_torchrun(nproc: int) -> None:
    """Re-run this script under torchrun with ``nproc`` workers, then exit with its code."""
    import subprocess

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *sys.argv]
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // nproc))}
    code = subprocess.call(cmd, env=env)
    if code:
        raise RuntimeError(f"torchrun with {nproc} processes failed with exit code {code}")


def _init_distributed(device_name: str) -> tuple[int, Any]:
    import torch
    import torch.distributed as dist

    device = resolve_device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), device


def train_model(params: dict, name: str) -> None:
    common = stage.common(params)
    cfg = load_section(TrainConfig, params, "train")
    spec = cfg.spec(name)
    if cfg.nproc > 1 and "LOCAL_RANK" not in os.environ:
        _launch_torchrun(cfg.nproc)
        return
    rank, device = (_init_distributed(common.device) if "LOCAL_RANK" in os.environ
                    else (0, resolve_device(common.device)))
    seed = common.seed if spec.seed is None else spec.seed
    deterministic_kernels()
    gen = torch.Generator().manual_seed(seed)
    dataset = params["ingest"]["dataset"]
    prepared = Path("data/prepared") / dataset
    (xtr, ytr), (xte, yte) = load_split(prepared, "train"), load_split(prepared, "test")
    xtr, ytr = subset(xtr, ytr, cfg.n_train, gen)
    xte, yte = subset(xte, yte, cfg.n_test, gen)
    xtr, xte = to_float(xtr, spec.resolution), to_float(xte, spec.resolution)
    num_classes = len(load_classes(prepared))
    model = build_model(spec.arch, tuple(xtr.shape[1:]), num_classes, generator=gen, **spec.arch_kwargs)
    result = fit(model, (xtr, ytr), (xte, yte), epochs=cfg.epochs, batch_size=cfg.batch_size,
                 lr=spec.lr or cfg.lr, weight_decay=cfg.weight_decay, num_classes=num_classes,
                 generator=gen, device=device)
    if rank != 0:
        return
    sidecar = {"name": name, "arch": spec.arch, "arch_kwargs": spec.arch_kwargs,
               "in_shape": list(xtr.shape[1:]), "num_classes": num_classes, "dataset": dataset,
               "data_manifest_sha256": manifest_sha256(prepared), "seed": seed,
               "profile": common.profile, "nproc": cfg.nproc,
               "config": {"epochs": cfg.epochs, "batch_size": cfg.batch_size, "lr": spec.lr or cfg.lr,
                          "weight_decay": cfg.weight_decay, "n_train": len(ytr), "n_test": len(yte),
                          "resolution": spec.resolution}}
    with atomic_dir(Path("models") / name) as tmp:
        save_model(model.cpu(), tmp, sidecar)
    out = Path("reports/train") / name
    metrics = {"model": name, "arch": spec.arch, "test_accuracy": result.metrics["accuracy"],
               "test_accuracy_ci95": list(wilson_p(result.metrics["accuracy"], len(yte))),
               "test_loss": result.metrics["loss"], "per_class_accuracy": result.metrics["per_class_accuracy"],
               "n_train": len(ytr), "n_test": len(yte), "epochs": cfg.epochs,
               "params": sum(p.numel() for p in model.parameters())}
    metrics = round_floats(metrics)
    atomic_write_json(out / "metrics.json", metrics)
    headline.write(f"train/{name}", headline.train(metrics))
    atomic_write_text(out / "curve.tsv", pd.DataFrame(result.history).to_csv(sep="\t", index=False,
                                                                               float_format="%.6f"))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python stages/train.py <model name from params train.models>")
    model_name = sys.argv[1]
    # Under torchrun the launching process records the cost, children included.
    cost = None if "LOCAL_RANK" in os.environ else Path("reports/cost/train") / f"{model_name}.json"
    stage.run("train", lambda p: train_model(p, model_name), cost)
