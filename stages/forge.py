"""Stage forge (C1, C2): the lecture's "iguana" attacks on the fixed target model."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from advgen import stage
from advgen.attacks.forge import forge_from_image, forge_from_noise, realism
from advgen.config import from_dict, require, section
from advgen.evaluation import class_names, eval_set, load_for_attack
from advgen.metrics import nearest_distances, quantile
from advgen.plots import image_rows
from advgen.utils import atomic_write_json, resolve_device, round_floats, seed_everything


@dataclass
class ForgeConfig:
    model: str
    noise_lr: float
    image_lam: float
    image_lr: float
    n_per_class: int  # profile
    n_reference: int  # profile
    noise_steps: int  # profile
    image_steps: int  # profile

    def validate(self) -> None:
        require(self.noise_steps >= 1 and self.image_steps >= 1, "forge.*_steps", "must be >= 1")
        require(self.noise_lr > 0 and self.image_lr > 0, "forge.*_lr", "must be > 0")
        require(self.image_lam >= 0, "forge.image_lam", f"must be >= 0, found {self.image_lam}")
        require(self.n_per_class >= 1 and self.n_reference >= 10, "profiles.*.forge", "n_per_class >= 1, n_reference >= 10")


def _dist(a: torch.Tensor, b: torch.Tensor, norm: str) -> torch.Tensor:
    d = (a - b).flatten(1)
    return d.norm(dim=1) if norm == "L2" else d.abs().amax(1)


def main(params: dict) -> None:
    common = stage.common(params)
    cfg = from_dict(ForgeConfig, section(params, "forge"), "forge")
    gen = seed_everything(common.seed)
    device = resolve_device(common.device)
    model = load_for_attack(cfg.model, device)
    k = model.sidecar["num_classes"]
    dataset = params["ingest"]["dataset"]
    res = model.sidecar["in_shape"][-1]
    ref_x, ref_y = eval_set(dataset, cfg.n_reference, common.seed, res, split="train")
    real_x, real_y = eval_set(dataset, cfg.n_reference, common.seed + 1, res)
    ref_x, ref_y, real_x, real_y = ref_x.to(device), ref_y.to(device), real_x.to(device), real_y.to(device)
    features = getattr(model, "embed", lambda v: model(v))

    targets = torch.arange(k, device=device).repeat(cfg.n_per_class)
    c1 = forge_from_noise(model, targets, tuple(model.sidecar["in_shape"]), steps=cfg.noise_steps, lr=cfg.noise_lr,
                          num_classes=k, generator=torch.Generator(device).manual_seed(common.seed), device=device)
    with torch.no_grad():
        conf = model(c1.images).softmax(1).gather(1, targets[:, None]).squeeze(1)
    c1_metrics = {"n": len(targets), "success_rate": float(c1.success.float().mean()),
                  "median_steps": float(c1.steps.float().median()), "mean_target_confidence": float(conf.mean()),
                  "realism": realism(features, c1.images[c1.success], targets[c1.success], ref_x, ref_y, real_x, real_y)}

    # C2: real test images, each sent to a random other class.
    x0, y0 = real_x[: k * cfg.n_per_class], real_y[: k * cfg.n_per_class]
    shift = torch.randint(1, k, (len(y0),), generator=gen).to(device)
    t2 = (y0 + shift) % k
    nearest_target = torch.stack([nearest_distances(x0[i:i + 1].flatten(1), ref_x[ref_y == t2[i]].flatten(1))[0]
                                  for i in range(len(y0))])
    c2_metrics, c2_images = {}, {}
    for loss in ("mse", "ce"):
        r = forge_from_image(model, x0, t2, lam=cfg.image_lam, loss=loss, steps=cfg.image_steps, lr=cfg.image_lr,
                             num_classes=k)
        ok = r.success
        l2, linf = _dist(r.images, x0, "L2")[ok], _dist(r.images, x0, "Linf")[ok]
        c2_metrics[loss] = {"n": len(y0), "success_rate": float(ok.float().mean()),
                            "median_l2": quantile(l2, 0.5), "median_linf": quantile(linf, 0.5),
                            "median_l2_x0_to_nearest_real_target": quantile(nearest_target[ok], 0.5),
                            "fraction_closer_to_x0_than_any_real_target": float((l2 < nearest_target[ok]).float().mean())
                            if ok.any() else 0.0}
        c2_images[loss] = r.images
    atomic_write_json("reports/forge/metrics.json", round_floats({"model": cfg.model, "c1": c1_metrics, "c2": c2_metrics}))
    names = class_names(dataset)
    with torch.no_grad():
        p1 = model(c1.images[:k]).argmax(1).tolist()
        p2 = model(c2_images["mse"][:k]).argmax(1).tolist()
    image_rows([("C1 from noise", c1.images[:k].cpu(), [f"->{names[i]}" for i in p1])], "reports/forge/c1.png")
    image_rows([("x0", x0[:k].cpu(), [names[i] for i in y0[:k].tolist()]),
                ("x - x0", (c2_images["mse"][:k] - x0[:k]).cpu(), None),
                ("forged", c2_images["mse"][:k].cpu(), [f"->{names[i]}" for i in p2])], "reports/forge/c2.png")


if __name__ == "__main__":
    stage.run("forge", main, "reports/forge/cost.json")
