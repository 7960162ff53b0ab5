"""C10 once per seed: the configs C10 judges (the lecture's source-specific BadNets and the
largest all-to-one BadNets rate) poisoned, trained and scored from that seed, with their clean
twin (the backdoor_defense reference) trained from the same seed on clean data.

The seed drives everything random in a replicate: which images are poisoned, the trigger's
places, the training subset and order, the initialisation and dropout. Only the scored test
images stay those of the main run (the whole test split by default).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..data import dataset_dir, load_split, subset, subset_index, to_float
from ..models import build_model
from ..schema import TrainConfig
from ..training import fit
from .dataset import poison_dataset
from .evaluation import EvalSet, backdoor_metrics, paired_drop
from .params import PoisonConfig
from .poison import scoring_mask, to_unit


@dataclass
class Replicate:
    """One seed's figures (``metrics``, JSON-ready) and its trained models, each with the sidecar
    :func:`advgen.models.save_model` writes beside it."""

    metrics: dict
    models: dict[str, tuple[nn.Module, dict]]


def fit_cnn(train: TrainConfig, name: str, x: torch.Tensor, y: torch.Tensor, test: tuple[torch.Tensor, torch.Tensor],
            num_classes: int, seed: int, device: torch.device) -> nn.Module:
    """Model ``name`` of train.models trained on (x uint8 (N, C, H, W), y (N,)) as the train stage
    trains it from ``seed`` on a dataset with these splits (``test``: its whole test split): the
    seeded training and test subsets, then the initialisation, all from one generator, so that
    seed = the top-level seed gives the train stage's model bit for bit on the same machine."""
    spec = train.spec(name)
    gen = torch.Generator().manual_seed(seed)
    keep = subset_index(len(y), train.n_train, gen)
    xtr, ytr = to_float(x[keep]), y[keep]
    xte, yte = subset(*test, train.n_test, gen)
    model = build_model(spec.arch, tuple(xtr.shape[1:]), num_classes, generator=gen, **spec.arch_kwargs)
    fit(model, (xtr, ytr), (to_float(xte), yte), epochs=train.epochs_of(name), batch_size=train.batch_size,
        lr=spec.lr or train.lr, weight_decay=train.weight_decay, num_classes=num_classes, generator=gen,
        device=device)
    return model.eval()


def c10_seed(dataset: str, train: TrainConfig, poison: PoisonConfig, configs: list[str], reference: str, *, seed: int,
             eval_seed: int, n_eval: int, device: torch.device, rank: int = 0) -> Replicate | None:
    """C10 for one seed. Per config of ``configs`` (the ``poison.configs`` C10 judges): CA, ASR (Wilson intervals) and the clean-accuracy
    drop against ``reference`` (the clean twin, trained from the same seed) on the same images,
    a paired interval. ``n_eval`` clean test images (0 = all) drawn with ``eval_seed``. Under
    torchrun every rank trains and only rank 0 scores; the others get None."""
    clean_dir = dataset_dir(dataset)
    x, y = load_split(clean_dir, "train")
    models: dict[str, nn.Module] = {}
    rows: dict[str, dict] = {}
    ref_correct: torch.Tensor | None = None
    for name in configs:
        spec = poison.spec(name)
        p = poison_dataset(name, spec, clean_dir, torch.Generator().manual_seed(seed), None, poison.batch_size,
                           poison.n_train, poison.n_test)
        xte, yte = p.test
        keep = subset_index(len(yte), n_eval, torch.Generator().manual_seed(eval_seed))
        mask = scoring_mask(yte[keep], spec.target, spec.source)
        ev = EvalSet(to_unit(xte[keep]), yte[keep], to_unit(p.triggered[keep][mask]), yte[keep][mask], spec.target)
        if ref_correct is None:  # every config's test split is the same clean images
            ref = fit_cnn(train, reference, x, y, load_split(clean_dir, "test"), len(p.classes), seed, device)
            models[reference] = (ref.cpu(), sidecar(train, reference, xte, len(p.classes), dataset, seed))
            ref_correct = ev.score(ref, device).clean_pred == ev.clean_y
        model = fit_cnn(train, name, p.result.images, p.result.labels, (xte, yte), len(p.classes), seed, device)
        if rank != 0:
            continue
        models[name] = (model.cpu(), {**sidecar(train, name, xte, len(p.classes), dataset, seed),
                                      "poison": spec.config()})
        scored = ev.score(model, device)
        m = backdoor_metrics(scored, ev)
        rows[name] = {"poison": spec.config(), "ca": m["ca"], "asr": m["asr"],
                      "ca_drop": paired_drop(ref_correct, scored.clean_pred == ev.clean_y)}
    if rank != 0:
        return None
    return Replicate({"seed": seed, "eval_seed": eval_seed, "reference": reference,
                      "reference_ca": float(ref_correct.float().mean()), "n_eval": len(ref_correct),
                      "configs": rows}, models)


def sidecar(train: TrainConfig, name: str, x: torch.Tensor, num_classes: int, dataset: str, seed: int) -> dict:
    spec = train.spec(name)
    return {"name": name, "arch": spec.arch, "arch_kwargs": spec.arch_kwargs, "in_shape": list(x.shape[1:]),
            "num_classes": num_classes, "dataset": dataset, "seed": seed}
