"""Scoring backdoored models and the defenses against them (the ``backdoor_defense`` stage).

Metrics, on the clean test set and its triggered copy:

- **CA**, clean accuracy;
- **ASR**, attack success rate: triggered test images whose true class is not the target (and,
  for a source-specific attack, is the source) that the model puts in the target class;
- **RA**, robust accuracy: the same triggered images still classified correctly;
- **DER** of a defense, BackdoorBench's (max(0, dASR) - max(0, dCA) + 1) / 2.

Each defense sees the poisoned model, the poisoned training set (as the model saw it) and a
small trusted clean set; the poison index is used only to score the detections.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import torch
import torch.nn as nn

from ..evaluation import predict
from ..models import build_model
from ..stats import mcnemar, wilson
from ..training import fit
from . import defenses as D


#: Random stream of each defense (an offset from the stage's seed); fine-tuning shares fine-pruning's.
DEFENSE_STREAMS = {"spectral": 0, "clustering": 1, "strip": 2, "fine_pruning": 3, "fine_tuning": 3}


@dataclass
class Scored:
    """Per-image outcomes of one model: clean predictions, triggered predictions (ASR population)."""

    clean_pred: torch.Tensor  # (N,)
    trig_pred: torch.Tensor  # (M,)


@dataclass
class EvalSet:
    """What a model is scored on: clean test images, and the triggered ones that count for ASR."""

    clean_x: torch.Tensor  # (N, C, H, W) float in [0, 1]
    clean_y: torch.Tensor  # (N,)
    trig_x: torch.Tensor  # (M, C, H, W): triggered images whose true class is not the target
    trig_y: torch.Tensor  # (M,) their true classes
    target: int

    def score(self, model: nn.Module, device: torch.device) -> Scored:
        model.eval()
        return Scored(predict(model, self.clean_x.to(device)).cpu(), predict(model, self.trig_x.to(device)).cpu())


def _rate(hits: torch.Tensor, keep: torch.Tensor | None = None) -> dict:
    """Fraction of ``hits`` (over all entries), with a Wilson 95% interval."""
    hits = hits if keep is None else hits & keep
    k, n = int(hits.sum()), len(hits)
    return {"value": k / n if n else float("nan"), "ci95": list(wilson(k, n)), "k": k, "n": n}


def backdoor_metrics(s: Scored, ev: EvalSet, keep_clean: torch.Tensor | None = None,
                     keep_trig: torch.Tensor | None = None) -> dict:
    """CA, ASR and RA with 95% intervals. ``keep_*`` (bool masks) count rejected inputs (STRIP)
    as neither correct nor successful."""
    return {"ca": _rate(s.clean_pred == ev.clean_y, keep_clean),
            "asr": _rate(s.trig_pred == ev.target, keep_trig),
            "ra": _rate(s.trig_pred == ev.trig_y, keep_trig)}


def paired_drop(ref: torch.Tensor, other: torch.Tensor) -> dict:
    """Accuracy drop ``mean(ref) - mean(other)`` of two models on the same images, with a Wald
    95% interval for matched pairs and McNemar's exact p (ref more accurate)."""
    n = len(ref)
    b, c = int((ref & ~other).sum()), int((~ref & other).sum())
    d = (b - c) / n
    se = max((b + c) - (b - c) ** 2 / n, 0.0) ** 0.5 / n
    test = mcnemar(ref, other)
    return {"value": d, "ci95": [d - 1.96 * se, d + 1.96 * se], "p_ref_higher": test["p_a_higher"],
            "only_ref": b, "only_other": c, "n": n}


@dataclass
class Recipe:
    """How the poisoned model was trained (its sidecar): the retrain uses the same."""

    arch: str
    arch_kwargs: dict
    in_shape: tuple[int, int, int]
    num_classes: int
    seed: int
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float

    @classmethod
    def from_sidecar(cls, meta: dict) -> "Recipe":
        c = meta["config"]
        return cls(meta["arch"], meta.get("arch_kwargs", {}), tuple(meta["in_shape"]), meta["num_classes"],
                   meta["seed"], c["epochs"], c["batch_size"], c["lr"], c["weight_decay"])

    def train(self, x: torch.Tensor, y: torch.Tensor, ev: EvalSet, device: torch.device) -> nn.Module:
        """A fresh model trained on (x, y) like the original (same seed, so the same init)."""
        gen = torch.Generator().manual_seed(self.seed)
        model = build_model(self.arch, self.in_shape, self.num_classes, generator=gen, **self.arch_kwargs)
        fit(model, (x, y), (ev.clean_x, ev.clean_y), epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
            weight_decay=self.weight_decay, num_classes=self.num_classes, generator=gen, device=device)
        return model


@dataclass
class DefenseInputs:
    """Everything a defense may use (``is_poison`` only scores detections)."""

    model: nn.Module  # the poisoned model (trainable copy made per defense)
    recipe: Recipe
    train_x: torch.Tensor  # (n, C, H, W) the poisoned training set as the model saw it
    train_y: torch.Tensor
    is_poison: torch.Tensor  # (n,) bool: scoring only
    expected_count: int  # the defender's bound on the number of poisoned training images
    clean_x: torch.Tensor  # (n_clean, C, H, W) trusted clean images
    clean_y: torch.Tensor


def _trainable(model: nn.Module) -> nn.Module:
    m = copy.deepcopy(model)
    for p in m.parameters():
        p.requires_grad_(True)
    return m


def _finetune(model: nn.Module, inp: DefenseInputs, ev: EvalSet, cfg, gen: torch.Generator,
              device: torch.device) -> nn.Module:
    fit(model, (inp.clean_x, inp.clean_y), (ev.clean_x, ev.clean_y), epochs=cfg.finetune_epochs,
        batch_size=inp.recipe.batch_size, lr=cfg.finetune_lr, weight_decay=inp.recipe.weight_decay,
        num_classes=inp.recipe.num_classes, generator=gen, device=device)
    return model


def _removal(flags: torch.Tensor, scores: torch.Tensor, inp: DefenseInputs, ev: EvalSet,
             device: torch.device) -> tuple[dict, nn.Module]:
    keep = ~flags
    detection = D.detection_metrics(flags, scores, inp.is_poison)
    model = inp.recipe.train(inp.train_x[keep], inp.train_y[keep], ev, device)
    return {"detection": detection, "n_removed": int(flags.sum()), "n_retrained": int(keep.sum()),
            "poison_left": int((inp.is_poison & keep).sum())}, model


def run_defense(name: str, inp: DefenseInputs, ev: EvalSet, cfg, gen: torch.Generator,
                device: torch.device, feats: torch.Tensor | None = None) -> tuple[dict, float]:
    """Run defense ``name`` (one of :data:`advgen.backdoors.params.BACKDOOR_DEFENSES`); return its
    detection figures (if any) and CA/ASR/RA after it, and apart its wall-clock seconds (a cost:
    it varies from run to run, so it stays out of the deterministic metrics)."""
    start = time.perf_counter()
    extra: dict = {}
    keep_clean = keep_trig = None
    if name in ("spectral", "clustering"):
        feats = D.penultimate(inp.model, inp.train_x.to(device)).cpu() if feats is None else feats
        if name == "spectral":
            flags, scores = D.spectral_signatures(feats, inp.train_y, inp.expected_count, cfg.spectral_factor,
                                                  cfg.spectral_max_class_fraction)
        else:
            flags, scores = D.activation_clustering(feats, inp.train_y, gen, cfg.clustering_dims, cfg.clustering_size)
        extra, model = _removal(flags, scores, inp, ev, device)
    elif name == "strip":
        model = inp.model
        half = len(inp.clean_x) // 2  # calibrate on one half, overlay images from the other
        calib = D.strip_entropy(model, inp.clean_x[:half].to(device), inp.clean_x[half:].to(device), gen, cfg.strip_overlays).cpu()
        threshold = D.strip_threshold(calib, cfg.strip_frr)
        pool = inp.clean_x[half:].to(device)
        h_clean = D.strip_entropy(model, ev.clean_x.to(device), pool, gen, cfg.strip_overlays).cpu()
        h_trig = D.strip_entropy(model, ev.trig_x.to(device), pool, gen, cfg.strip_overlays).cpu()
        flag_clean, flag_trig = h_clean < threshold, h_trig < threshold
        is_trig = torch.cat([torch.zeros(len(h_clean), dtype=torch.bool), torch.ones(len(h_trig), dtype=torch.bool)])
        det = D.detection_metrics(torch.cat([flag_clean, flag_trig]), -torch.cat([h_clean, h_trig]), is_trig)
        extra = {"detection": det, "threshold": threshold, "frr_target": cfg.strip_frr,
                 "calibration_n": len(calib)}
        keep_clean, keep_trig = ~flag_clean, ~flag_trig
    elif name in ("fine_pruning", "fine_tuning"):
        model = _trainable(inp.model)
        if name == "fine_pruning":
            extra = {"pruning": D.prune_last_conv(model, inp.clean_x.to(device), inp.clean_y.to(device),
                                                  cfg.prune_acc_drop, cfg.prune_max_fraction)}
        model = _finetune(model, inp, ev, cfg, gen, device)
    else:
        raise ValueError(f"unknown backdoor defense {name!r}")
    metrics = backdoor_metrics(ev.score(model, device), ev, keep_clean, keep_trig)
    return {**extra, **metrics}, time.perf_counter() - start


def evaluate_backdoor(inp: DefenseInputs, ev: EvalSet, defenses: list[str], cfg, gen: torch.Generator,
                      device: torch.device, references: dict[str, nn.Module]) -> tuple[dict, dict[str, float]]:
    """CA/ASR/RA of the poisoned model, its clean-accuracy drop against each reference model
    (paired, same images), and every defense in ``defenses`` with its DER; and apart the wall
    seconds of each defense."""
    s = ev.score(inp.model, device)
    before = backdoor_metrics(s, ev)
    out: dict = {"undefended": before, "ca_drop": {}}
    for name, ref in references.items():
        r = ev.score(ref, device)
        out["ca_drop"][name] = {"reference_ca": _rate(r.clean_pred == ev.clean_y),
                                **paired_drop(r.clean_pred == ev.clean_y, s.clean_pred == ev.clean_y)}
    feats, seconds = None, {}
    if {"spectral", "clustering"} & set(defenses):
        start = time.perf_counter()
        feats = D.penultimate(inp.model, inp.train_x.to(device)).cpu()
        seconds["features"] = time.perf_counter() - start  # shared by spectral and clustering
    base = int(torch.randint(0, 2**62, (1,), generator=gen))
    out["defenses"] = {}
    for name in defenses:
        # Each defense its own stream, so that adding or dropping one leaves the others' numbers
        # alone; fine-tuning shares fine-pruning's, so that it is the same schedule without pruning.
        stream = torch.Generator().manual_seed(base + DEFENSE_STREAMS[name])
        d, seconds[name] = run_defense(name, inp, ev, cfg, stream, device, feats)
        d["der"] = D.der(before["ca"]["value"], before["asr"]["value"], d["ca"]["value"], d["asr"]["value"])
        out["defenses"][name] = d
    return out, seconds
