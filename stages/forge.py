"""Stage forge (C1, C2): the lecture's "iguana" attacks on the fixed target model."""
from __future__ import annotations

from advgen import headline, stage
from advgen.attacks import headline as hl
from advgen.attacks.forge import c1_experiment, c2_experiment
from advgen.attacks.params import ForgeConfig
from advgen.config import load_section
from advgen.evaluation import class_names, eval_set, load_for_attack, predict
from advgen.plots import image_rows
from advgen.utils import atomic_write_json, deterministic_kernels, generator, resolve_device, round_floats


def main(params: dict) -> None:
    common = stage.common(params)
    cfg = load_section(ForgeConfig, params, "forge")
    deterministic_kernels()
    device = resolve_device(common.device)
    model = load_for_attack(cfg.model, device)
    k = model.sidecar["num_classes"]
    dataset = stage.dataset(params)
    res = model.sidecar["in_shape"][-1]
    ref_x, ref_y = eval_set(dataset, cfg.n_reference, common.seed, res, split="train")
    real_x, real_y = eval_set(dataset, cfg.n_reference, common.seed + 1, res)
    ref, real = (ref_x.to(device), ref_y.to(device)), (real_x.to(device), real_y.to(device))
    c1, c1_images = c1_experiment(model, cfg.n_per_class, tuple(model.sidecar["in_shape"]), steps=cfg.noise_steps,
                                  lr=cfg.noise_lr, num_classes=k, reference=ref, real=real,
                                  generator=generator(common.seed))
    x0, y0 = real[0][: k * cfg.n_per_class], real[1][: k * cfg.n_per_class]  # C2: real test images
    c2, c2_images, _ = c2_experiment(model, x0, y0, ref, lam=cfg.image_lam, steps=cfg.image_steps, lr=cfg.image_lr,
                                     num_classes=k, generator=generator(common.seed))
    metrics = round_floats({"model": cfg.model, "c1": c1, "c2": c2})
    atomic_write_json("reports/forge/metrics.json", metrics)
    headline.write("forge", hl.forge(metrics))
    names = class_names(dataset)
    p1, p2 = predict(model, c1_images[:k]).tolist(), predict(model, c2_images["mse"][:k]).tolist()
    image_rows([("C1 from noise", c1_images[:k].cpu(), [f"->{names[i]}" for i in p1])], "reports/forge/c1.png")
    image_rows([("x0", x0[:k].cpu(), [names[i] for i in y0[:k].tolist()]),
                ("x - x0", (c2_images["mse"][:k] - x0[:k]).cpu(), None),
                ("forged", c2_images["mse"][:k].cpu(), [f"->{names[i]}" for i in p2])], "reports/forge/c2.png")


if __name__ == "__main__":
    stage.run("forge", main, "reports/cost/forge.json")
