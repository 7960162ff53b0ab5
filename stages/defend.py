"""Stage defend: train one defended model from params ``defend.defenses.<name>``.

Usage: ``python stages/defend.py <name>``. The model has the architecture of its base (a
``train.models`` entry) and is written like ``train``'s (``models/<name>/``, the sidecar naming
the defense and its config), so the attack, robustness and report stages treat it as any
other model. With ``train.nproc > 1`` it runs under torchrun like ``train``; only rank 0 writes.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from advgen import headline, stage
from advgen.config import load_section
from advgen.data import subset
from advgen.defenses import headline as hl
from advgen.defenses.params import DefendConfig
from advgen.defenses.training import train_defense
from advgen.evaluation import load_for_attack
from advgen.io import tsv
from advgen.models import build_model, save_model
from advgen.schema import TrainConfig
from advgen.stats import wilson_p
from advgen.training import setup, training_data
from advgen.utils import atomic_dir, atomic_write_json, atomic_write_text, deterministic_kernels, round_floats


def defend(params: dict, name: str) -> None:
    common = stage.common(params)
    cfg = load_section(DefendConfig, params, "defend")
    train_cfg = load_section(TrainConfig, params, "train")
    spec, base = cfg.spec(name), cfg.base
    base_spec = train_cfg.spec(base)
    started = setup(train_cfg.nproc, common.device)
    if started is None:  # ran under torchrun
        return
    rank, device = started
    deterministic_kernels()
    gen = torch.Generator().manual_seed(common.seed)
    dataset = stage.dataset(params)
    data = training_data(dataset, cfg.n_train, train_cfg.n_test, base_spec.resolution, gen)
    (xtr, ytr), (xte, yte) = data.train, data.test
    monitor = subset(xtr, ytr, cfg.n_monitor, torch.Generator().manual_seed(common.seed + 1))
    source = load_for_attack(base, device) if spec.method == "augment" else None
    model = build_model(base_spec.arch, tuple(xtr.shape[1:]), data.num_classes, generator=gen, **base_spec.arch_kwargs)
    lr = base_spec.lr or train_cfg.lr
    result = train_defense(spec, model, (xtr, ytr), (xte, yte), monitor, source=source, epochs=cfg.epochs,
                           batch_size=cfg.batch_size, lr=lr, weight_decay=train_cfg.weight_decay,
                           num_classes=data.num_classes, generator=gen, device=device,
                           monitor_steps=cfg.monitor_steps, monitor_drop=cfg.monitor_drop,
                           stop_on_collapse=cfg.stop_on_collapse)
    if rank != 0:
        return
    defense = {**spec.config(), "base": base}
    sidecar = {"name": name, "arch": base_spec.arch, "arch_kwargs": base_spec.arch_kwargs,
               "in_shape": list(xtr.shape[1:]), "num_classes": data.num_classes, "dataset": dataset,
               "data_manifest_sha256": data.manifest_sha256, "seed": common.seed, "profile": common.profile,
               "nproc": train_cfg.nproc, "defense": defense,
               "config": {"epochs": cfg.epochs, "batch_size": cfg.batch_size, "lr": lr,
                          "weight_decay": train_cfg.weight_decay, "n_train": len(ytr), "n_test": len(yte),
                          "resolution": base_spec.resolution}}
    if source is not None:
        sidecar["defense"]["source_weights_sha256"] = source.sidecar["weights_sha256"]
    with atomic_dir(Path("models") / name) as tmp:
        save_model(model.cpu(), tmp, sidecar)
    fit = result.fit
    acc = fit.metrics["accuracy"]
    epochs_run = len(fit.history)
    metrics = {"model": name, "defense": defense, "test_accuracy": acc,
               "test_accuracy_ci95": list(wilson_p(acc, len(yte))), "test_loss": fit.metrics["loss"],
               "per_class_accuracy": fit.metrics["per_class_accuracy"], "n_train": len(ytr), "n_test": len(yte),
               "epochs": cfg.epochs, "epochs_run": epochs_run,
               # per-example gradients: updates, inner attacks, augment's crafting (not the monitor)
               "training_grad_evals": result.grad_evals, "monitor_grad_evals": result.monitor_grad_evals,
               "catastrophic_overfitting": result.collapse_epoch is not None,
               "collapse_epoch": result.collapse_epoch, **result.extra}
    if fit.history and "monitor_pgd_acc" in fit.history[-1]:
        metrics["monitor"] = {"n": len(monitor[1]), "steps": cfg.monitor_steps, "drop": cfg.monitor_drop,
                              "pgd_acc": [r["monitor_pgd_acc"] for r in fit.history],
                              "fgsm_acc": [r["monitor_fgsm_acc"] for r in fit.history]}
    out = Path("reports/defend") / name
    metrics = round_floats(metrics)
    atomic_write_json(out / "metrics.json", metrics)
    headline.write(f"defend/{name}", hl.defend(metrics))
    atomic_write_text(out / "curve.tsv", tsv(fit.history, "%.6f"))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python stages/defend.py <defense name from params defend.defenses>")
    model_name = sys.argv[1]
    cost = None if "LOCAL_RANK" in os.environ else Path("reports/cost/defend") / f"{model_name}.json"
    stage.run("defend", lambda p: defend(p, model_name), cost)
