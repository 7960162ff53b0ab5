"""Stage patch (C8): universal adversarial patches against their size, with and without the
printability/smoothness terms, the two baselines, and the weight ablation."""
from __future__ import annotations

import torch

from advgen import headline, stage
from advgen.attacks import headline as hl
from advgen.attacks.params import PatchConfig
from advgen.attacks.patch import curve_rows, example_rows, patch_sweep
from advgen.config import load_section
from advgen.evaluation import class_names, eval_set, load_for_attack
from advgen.io import tsv
from advgen.plots import image_rows
from advgen.utils import atomic_write_json, atomic_write_text, deterministic_kernels, resolve_device, round_floats


def main(params: dict) -> None:
    common = stage.common(params)
    cfg = load_section(PatchConfig, params, "patch")
    deterministic_kernels()
    device = resolve_device(common.device)
    model = load_for_attack(cfg.model, device)
    side = model.sidecar["in_shape"][-1]
    cfg.check_image(side)
    dataset = stage.dataset(params)
    xtr, ytr = eval_set(dataset, cfg.n_train, common.seed, side, split="train")
    xte, yte = eval_set(dataset, cfg.n_test, common.seed, side)
    xtr, ytr, xte, yte = xtr.to(device), ytr.to(device), xte.to(device), yte.to(device)
    palette = torch.tensor(cfg.palette, device=device).view(-1, 1).expand(-1, xtr.shape[1])
    metrics, patches = patch_sweep(
        model, (xtr, ytr), (xte, yte), sizes=cfg.sizes, target=cfg.target, epochs=cfg.epochs,
        batch_size=cfg.batch_size, lr=cfg.lr, w_nps=cfg.w_nps, w_tv=cfg.w_tv, palette=palette,
        num_classes=model.sidecar["num_classes"], seed=common.seed, ablation_size=cfg.ablation_size,
        weight_scales=cfg.weight_scales)
    names = class_names(dataset)
    metrics = round_floats({
        "model": cfg.model, "target": cfg.target, "target_name": None if cfg.target is None else names[cfg.target],
        "n_train": len(ytr), "n_test": len(yte), "epochs": cfg.epochs, "palette": cfg.palette, **metrics})
    atomic_write_json("reports/patch/metrics.json", metrics)
    headline.write("patch", hl.patch(metrics))
    atomic_write_text("reports/patch/curve.tsv",
                      tsv(curve_rows(metrics), "%.6f"))
    show = xte[yte != cfg.target][:7] if cfg.target is not None else xte[:7]
    rows = example_rows(model, {k: v["with_terms"] for k, v in patches.items()}, show, common.seed + 3)
    image_rows([(f"{label} (with terms)", imgs, ["patch" if i == 0 else names[p] for i, p in enumerate(pred.tolist())])
                for label, imgs, pred in rows], "reports/patch/examples.png")


if __name__ == "__main__":
    stage.run("patch", main, "reports/cost/patch.json")
