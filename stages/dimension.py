"""Stage dimension (C4): FGSM at a fixed eps on the same linear model at growing input dimension."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from advgen import stage
from advgen.attacks import FGSM, margin
from advgen.config import ConfigError, from_dict, require, section
from advgen.evaluation import eval_set, load_for_attack
from advgen.robustness import predict
from advgen.utils import atomic_write_json, atomic_write_text, resolve_device, round_floats, seed_everything


@dataclass
class DimensionConfig:
    models: list[str]
    eps: float
    n_eval: int  # profile

    def validate(self) -> None:
        require(len(self.models) >= 2, "dimension.models", "needs at least two models")
        require(self.eps > 0, "dimension.eps", f"must be > 0, found {self.eps}")


def linear_weights(model) -> torch.Tensor:
    """W (K, D) of a logreg model."""
    if model.sidecar["arch"] != "logreg":
        raise ConfigError(f"params.yaml: 'dimension.models' must be logreg models, found {model.sidecar['arch']!r}")
    return model.linear.weight.detach()


def measure(model, x: torch.Tensor, y: torch.Tensor, eps: float) -> dict:
    """FGSM accuracy drop and the margin change it causes, against the linear bound eps * ||w_y - w_j||_1."""
    w = linear_weights(model)
    adv = FGSM(model, eps)(x, y)
    with torch.no_grad():
        z, z_adv = model(x), model(adv)
    clean_ok, adv_ok = predict(model, x) == y, predict(model, adv) == y
    runner_up = z.scatter(1, y[:, None], float("-inf")).argmax(1)
    bound = eps * (w[y] - w[runner_up]).abs().sum(1)  # max change of z_y - z_j over the L-inf ball
    drop = margin(z, y) - margin(z_adv, y)
    return {"dim": int(w.shape[1]), "clean_accuracy": float(clean_ok.float().mean()),
            "fgsm_accuracy": float(adv_ok.float().mean()),
            "accuracy_drop": float(clean_ok.float().mean() - adv_ok.float().mean()),
            "mean_margin_drop": float(drop.mean()), "mean_eps_l1_bound": float(bound.mean()),
            "margin_drop_over_bound": float(drop.mean() / bound.mean()),
            "eps_mean_w_l1": float(eps * w.abs().sum(1).mean())}


def main(params: dict) -> None:
    common = stage.common(params)
    cfg = from_dict(DimensionConfig, section(params, "dimension"), "dimension")
    seed_everything(common.seed)
    device = resolve_device(common.device)
    rows = {}
    for name in cfg.models:
        model = load_for_attack(name, device)
        x, y = eval_set(params["ingest"]["dataset"], cfg.n_eval, common.seed, model.sidecar["in_shape"][-1])
        rows[name] = measure(model, x.to(device), y.to(device), cfg.eps)
    atomic_write_json("reports/dimension/metrics.json", round_floats({"eps": cfg.eps, "models": rows}))
    lines = ["dim\tclean_accuracy\tfgsm_accuracy\tmean_margin_drop\tmean_eps_l1_bound"]
    lines += [f"{r['dim']}\t{r['clean_accuracy']:.6f}\t{r['fgsm_accuracy']:.6f}\t{r['mean_margin_drop']:.6f}\t"
              f"{r['mean_eps_l1_bound']:.6f}" for r in sorted(rows.values(), key=lambda r: r["dim"])]
    atomic_write_text("reports/dimension/curve.tsv", "\n".join(lines) + "\n")


if __name__ == "__main__":
    stage.run("dimension", main, "reports/dimension/cost.json")
