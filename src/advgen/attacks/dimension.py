"""C4: how the damage of an eps-bounded perturbation grows with the input dimension.

For a linear model z = W x + b, an L-inf perturbation of size eps can move the margin
z_y - z_j by at most eps * ||w_y - w_j||_1, which grows with the number of input dimensions
when the weights keep their size. :func:`measure` runs FGSM at a fixed eps on the same model
family trained at different input resolutions and compares the margin drop with that bound.
"""
from __future__ import annotations

import torch
from torch import nn

from ..config import ConfigError
from ..evaluation import predict
from ..stats import wilson_p
from .base import margin
from .fgsm import FGSM


def linear_weights(model: nn.Module) -> torch.Tensor:
    """W (K, D) of a logreg model; ConfigError for any other architecture."""
    if model.sidecar["arch"] != "logreg":
        raise ConfigError(f"params.yaml: 'dimension.models' must be logreg models, found {model.sidecar['arch']!r}")
    return model.linear.weight.detach()


def measure(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> dict:
    """FGSM accuracy drop on (x (N, C, H, W), y (N,)) and the margin change it causes, against
    the linear bound eps * ||w_y - w_j||_1 (j the clean runner-up), with 95% Wilson intervals."""
    w = linear_weights(model)
    adv = FGSM(model, eps)(x, y)
    with torch.no_grad():
        z, z_adv = model(x), model(adv)
    clean_ok, adv_ok = predict(model, x) == y, predict(model, adv) == y
    runner_up = z.scatter(1, y[:, None], float("-inf")).argmax(1)
    bound = eps * (w[y] - w[runner_up]).abs().sum(1)  # max change of z_y - z_j over the L-inf ball
    drop = margin(z, y) - margin(z_adv, y)
    clean_acc, adv_acc = float(clean_ok.float().mean()), float(adv_ok.float().mean())
    return {"dim": int(w.shape[1]), "n": len(y), "clean_accuracy": clean_acc,
            "clean_ci95": list(wilson_p(clean_acc, len(y))), "fgsm_accuracy": adv_acc,
            "fgsm_ci95": list(wilson_p(adv_acc, len(y))), "accuracy_drop": clean_acc - adv_acc,
            "mean_margin_drop": float(drop.mean()), "mean_eps_l1_bound": float(bound.mean()),
            "margin_drop_over_bound": float(drop.mean() / bound.mean()),
            "eps_mean_w_l1": float(eps * w.abs().sum(1).mean())}


def curve_rows(rows: dict[str, dict]) -> list[dict]:
    """The plot rows of :func:`measure` results, sorted by dimension."""
    keys = ("dim", "clean_accuracy", "fgsm_accuracy", "mean_margin_drop", "mean_eps_l1_bound")
    return [{k: r[k] for k in keys} for r in sorted(rows.values(), key=lambda r: r["dim"])]
