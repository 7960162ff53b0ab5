"""C9 once per seed: the standard ``cnn`` and the lecture's FGSM-trained model, trained from that
seed with the train and defend stages' recipes, then compared at the training eps as C9 compares
them (the defended model's worst case against the base's PGD accuracy, an exact paired test).

What a seed replicate leaves out, to fit three seeds in the budget: the transfer attacks (they
need the whole zoo trained again) and the convergence ladder. Its worst case is the cascade
clean -> FGSM -> PGD -> APGD-CE -> APGD-T -> Square, the main run's cascade without its transfer
stage, so it can only over-state the defended model's robustness by what transfer would have
broken (0 images in the committed main run at eps 0.1).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..attacks.params import AttackConfig
from ..attacks.robustness import batched, build_attack, cascade, cascade_config, paired_vs_base
from ..data import subset
from ..evaluation import eval_set, predict
from ..models import build_model
from ..schema import TrainConfig
from ..stats import wilson_p
from ..training import fit, training_data
from .params import DefendConfig
from .training import train_defense


@dataclass
class Replicate:
    """One seed's figures (``metrics``, JSON-ready) and its two trained models, each with the
    sidecar :func:`advgen.models.save_model` writes beside it."""

    metrics: dict
    models: dict[str, tuple[nn.Module, dict]]


def train_base(dataset: str, train: TrainConfig, base: str, seed: int,
               device: torch.device) -> tuple[nn.Module, float | None, int, int]:
    """The train stage's model ``base`` from ``seed`` (its recipe; the seed replaces the top-level
    one); returns the model, its test accuracy, the number of test images and of classes."""
    spec = train.spec(base)
    gen = torch.Generator().manual_seed(seed)
    data = training_data(dataset, train.n_train, train.n_test, spec.resolution, gen, spec.data)
    (xtr, ytr), (xte, yte) = data.train, data.test
    model = build_model(spec.arch, tuple(xtr.shape[1:]), data.num_classes, generator=gen, **spec.arch_kwargs)
    result = fit(model, (xtr, ytr), (xte, yte), epochs=train.epochs_of(base), batch_size=train.batch_size,
                 lr=spec.lr or train.lr, weight_decay=train.weight_decay, num_classes=data.num_classes,
                 generator=gen, device=device)
    return model.eval(), result.metrics.get("accuracy"), len(yte), data.num_classes  # accuracy: rank 0 only


def train_defended(dataset: str, train: TrainConfig, defend: DefendConfig, name: str, seed: int,
                   device: torch.device) -> tuple[nn.Module, float | None]:
    """The defend stage's model ``name`` from ``seed`` (its recipe; the monitor's subset from seed + 1)."""
    spec, base_spec = defend.spec(name), train.spec(defend.base)
    gen = torch.Generator().manual_seed(seed)
    data = training_data(dataset, defend.n_train, train.n_test, base_spec.resolution, gen)
    (xtr, ytr), (xte, yte) = data.train, data.test
    monitor = subset(xtr, ytr, defend.n_monitor, torch.Generator().manual_seed(seed + 1))
    model = build_model(base_spec.arch, tuple(xtr.shape[1:]), data.num_classes, generator=gen, **base_spec.arch_kwargs)
    result = train_defense(spec, model, (xtr, ytr), (xte, yte), monitor, source=None, epochs=defend.epochs,
                           batch_size=defend.batch_size, lr=base_spec.lr or train.lr, weight_decay=train.weight_decay,
                           num_classes=data.num_classes, generator=gen, device=device,
                           monitor_steps=defend.monitor_steps, monitor_drop=defend.monitor_drop,
                           stop_on_collapse=defend.stop_on_collapse)
    return model.eval(), result.fit.metrics.get("accuracy")  # rank 0 only


def worst_case(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, cfg: AttackConfig,
               generator: torch.Generator) -> tuple[torch.Tensor, dict]:
    """(N,) bool robust after the cascade at ``eps`` with FGSM and PGD first (the attack stage's
    budgets), and the cascade's table. x (N, C, H, W) in [0, 1] on the model's device."""
    known = {}
    for name in ("fgsm", "pgd"):
        adv = batched(build_attack(name, model, eps, cfg, generator), x, y)
        known[name] = (predict(model, adv) == y).cpu()
    res = cascade(model, x, y, eps, cascade_config(cfg), generator, known_white=known)
    return res.robust, res.as_dict()


def c9_seed(dataset: str, train: TrainConfig, defend: DefendConfig, attack: AttackConfig, name: str, *, seed: int,
            eval_seed: int, device: torch.device, rank: int = 0) -> Replicate | None:
    """C9 for one training seed: ``defend.base`` and the defended model ``name`` (the lecture's
    FGSM training), both from ``seed``, compared at ``name``'s training eps on the main run's
    evaluation images (drawn with ``eval_seed``, so seeds differ only in training).

    ``attack`` is the configuration the robustness stage uses for defended models (its ``n_eval``
    and budgets). Returns the figures C9's criterion reads (``defended_worst_case``, ``base_pgd``,
    ``paired``) and ``gain`` = the difference, plus both clean test accuracies. Under torchrun
    every rank trains (its stride of each batch, as the train stage) and only rank 0 evaluates;
    the others get None.
    """
    eps = defend.spec(name).eps
    base, base_acc, n_test, num_classes = train_base(dataset, train, defend.base, seed, device)
    defended, def_acc = train_defended(dataset, train, defend, name, seed, device)
    if rank != 0:
        return None
    x, y = eval_set(dataset, attack.n_eval, eval_seed, train.spec(defend.base).resolution)
    x, y = x.to(device), y.to(device)
    robust, table = worst_case(defended, x, y, eps, attack, torch.Generator().manual_seed(seed))
    vs = paired_vs_base(base, x, y, {eps: robust}, attack.pgd_steps, torch.Generator().manual_seed(seed + 1))[f"{eps:g}"]
    metrics = {"seed": seed, "eval_seed": eval_seed, "eps": eps, "n": len(y), "base": defend.base, "defended": name,
               "base_test_accuracy": base_acc, "base_test_accuracy_ci95": list(wilson_p(base_acc, n_test)),
               "defended_test_accuracy": def_acc, "defended_test_accuracy_ci95": list(wilson_p(def_acc, n_test)),
               **vs, "gain": vs["defended_worst_case"] - vs["base_pgd"], "cascade": table}
    spec = train.spec(defend.base)
    sidecar = {"arch": spec.arch, "arch_kwargs": spec.arch_kwargs, "in_shape": list(x.shape[1:]),
               "num_classes": num_classes,
               "dataset": dataset, "seed": seed}
    models = {defend.base: (base.cpu(), {"name": defend.base, **sidecar}),
              name: (defended.cpu(), {"name": name, **sidecar, "defense": {**defend.spec(name).config(),
                                                                            "base": defend.base}})}
    return Replicate(metrics, models)
