"""Stage patch (C8): universal adversarial patches against their size, with and without the
printability/smoothness terms, the two baselines, and the weight ablation."""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch

from advgen import stage
from advgen.attacks.patch import curve_rows, example_rows, patch_sweep
from advgen.config import from_dict, require, section
from advgen.evaluation import class_names, eval_set, load_for_attack
from advgen.plots import image_rows
from advgen.utils import atomic_write_json, atomic_write_text, deterministic_kernels, resolve_device, round_floats


@dataclass
class PatchConfig:
    model: str
    sizes: list[int]  # k x k patches, ascending
    target: int | None  # None: untargeted
    lr: float
    batch_size: int
    w_nps: float  # per pixel of the patch
    w_tv: float  # per pixel of the patch
    palette: list[float]  # printable grey levels
    ablation_size: int
    weight_scales: list[float]  # (w_nps, w_tv) times each, at ablation_size
    n_train: int  # profile
    n_test: int  # profile
    epochs: int  # profile

    def validate(self) -> None:
        require(len(self.sizes) >= 1 and all(k >= 1 for k in self.sizes), "patch.sizes",
                f"must be a non-empty list of sizes >= 1, found {self.sizes}")
        require(all(a < b for a, b in zip(self.sizes, self.sizes[1:])), "patch.sizes",
                f"must be strictly increasing, found {self.sizes}")
        require(self.ablation_size >= 1, "patch.ablation_size", f"must be >= 1, found {self.ablation_size}")
        require(len(self.weight_scales) >= 1 and all(s >= 0 for s in self.weight_scales)
                and len(set(self.weight_scales)) == len(self.weight_scales), "patch.weight_scales",
                f"must be distinct values >= 0, found {self.weight_scales}")
        require(self.target is None or self.target >= 0, "patch.target", f"must be >= 0 or null, found {self.target}")
        require(self.lr > 0 and self.batch_size >= 1 and self.epochs >= 1, "patch.lr/batch_size/epochs", "must be positive")
        require(self.n_train >= 0 and self.n_test >= 0, "profiles.*.patch.n_train/n_test", "must be >= 0 (0 = all)")
        require(self.w_nps >= 0 and self.w_tv >= 0, "patch.w_nps/w_tv", "must be >= 0")
        require(len(self.palette) >= 1 and all(0 <= p <= 1 for p in self.palette), "patch.palette",
                f"must hold grey levels in [0, 1], found {self.palette}")

    def check_image(self, side: int) -> None:
        """Reject patches that do not fit the model's ``side`` x ``side`` input."""
        require(max(self.sizes) <= side, "patch.sizes", f"must fit the {side}x{side} image, found {self.sizes}")
        require(self.ablation_size <= side, "patch.ablation_size",
                f"must fit the {side}x{side} image, found {self.ablation_size}")


def main(params: dict) -> None:
    common = stage.common(params)
    cfg = from_dict(PatchConfig, section(params, "patch"), "patch")
    deterministic_kernels()
    device = resolve_device(common.device)
    model = load_for_attack(cfg.model, device)
    side = model.sidecar["in_shape"][-1]
    cfg.check_image(side)
    dataset = params["ingest"]["dataset"]
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
    atomic_write_json("reports/patch/metrics.json", round_floats({
        "model": cfg.model, "target": cfg.target, "target_name": None if cfg.target is None else names[cfg.target],
        "n_train": len(ytr), "n_test": len(yte), "epochs": cfg.epochs, "palette": cfg.palette, **metrics}))
    atomic_write_text("reports/patch/curve.tsv",
                      pd.DataFrame(curve_rows(metrics)).to_csv(sep="\t", index=False, float_format="%.6f"))
    show = xte[yte != cfg.target][:7] if cfg.target is not None else xte[:7]
    rows = example_rows(model, {k: v["with_terms"] for k, v in patches.items()}, show, common.seed + 3)
    image_rows([(f"{label} (with terms)", imgs, ["patch" if i == 0 else names[p] for i, p in enumerate(pred.tolist())])
                for label, imgs, pred in rows], "reports/patch/examples.png")


if __name__ == "__main__":
    stage.run("patch", main, "reports/cost/patch.json")
