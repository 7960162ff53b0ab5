"""Stage patch (C8): a universal adversarial patch, with and without printability/smoothness terms."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from advgen import stage
from advgen.attacks.patch import apply_patch, non_printability, patch_success, random_locations, total_variation, train_patch
from advgen.config import from_dict, require, section
from advgen.evaluation import class_names, eval_set, load_for_attack
from advgen.plots import image_rows
from advgen.robustness import predict
from advgen.utils import atomic_write_json, resolve_device, round_floats, seed_everything


@dataclass
class PatchConfig:
    model: str
    size: int
    target: int | None
    lr: float
    batch_size: int
    w_nps: float
    w_tv: float
    palette: list[float]
    n_train: int  # profile
    n_test: int  # profile
    epochs: int  # profile

    def validate(self) -> None:
        require(self.size >= 1, "patch.size", f"must be >= 1, found {self.size}")
        require(self.lr > 0 and self.batch_size >= 1 and self.epochs >= 1, "patch.lr/batch_size/epochs", "must be positive")
        require(self.w_nps >= 0 and self.w_tv >= 0, "patch.w_nps/w_tv", "must be >= 0")
        require(len(self.palette) >= 1 and all(0 <= p <= 1 for p in self.palette), "patch.palette",
                f"must hold grey levels in [0, 1], found {self.palette}")


def main(params: dict) -> None:
    common = stage.common(params)
    cfg = from_dict(PatchConfig, section(params, "patch"), "patch")
    seed_everything(common.seed)
    device = resolve_device(common.device)
    model = load_for_attack(cfg.model, device)
    k = model.sidecar["num_classes"]
    dataset = params["ingest"]["dataset"]
    res = model.sidecar["in_shape"][-1]
    xtr, ytr = eval_set(dataset, cfg.n_train, common.seed, res, split="train")
    xte, yte = eval_set(dataset, cfg.n_test, common.seed, res)
    xtr, ytr, xte, yte = xtr.to(device), ytr.to(device), xte.to(device), yte.to(device)
    c = xtr.shape[1]
    palette = torch.tensor(cfg.palette, device=device).view(-1, 1).expand(-1, c)
    variants = {"with_terms": (cfg.w_nps, cfg.w_tv), "without_terms": (0.0, 0.0)}
    patches, results = {}, {}
    for name, (w_nps, w_tv) in variants.items():
        r = train_patch(model, xtr, ytr, k=cfg.size, target=cfg.target, epochs=cfg.epochs, batch_size=cfg.batch_size,
                        lr=cfg.lr, w_nps=w_nps, w_tv=w_tv, palette=palette, num_classes=k,
                        generator=torch.Generator().manual_seed(common.seed))
        patches[name] = r.patch
    patches["random_baseline"] = torch.rand((c, cfg.size, cfg.size), generator=torch.Generator().manual_seed(common.seed)).to(device)
    patches["grey_baseline"] = torch.full((c, cfg.size, cfg.size), 0.5, device=device)
    for name, p in patches.items():
        results[name] = {"success_rate": patch_success(model, xte, yte, p, cfg.target,
                                                       torch.Generator().manual_seed(common.seed + 1)),
                         "nps": float(non_printability(p, palette)), "tv": float(total_variation(p))}
    clean = float((predict(model, xte) == yte).float().mean())
    atomic_write_json("reports/patch/metrics.json", round_floats({
        "model": cfg.model, "size": cfg.size, "target": cfg.target, "n_test": len(yte), "clean_accuracy": clean,
        "area_fraction": cfg.size ** 2 / (xte.shape[-1] * xte.shape[-2]), "patches": results}))
    names = class_names(dataset)
    show = xte[yte != cfg.target][:8] if cfg.target is not None else xte[:8]
    rows, cols = random_locations(len(show), show.shape[-1], cfg.size, torch.Generator().manual_seed(common.seed + 2))
    rows_fig = [("patches", torch.stack([patches[n].cpu() for n in patches]), list(patches))]
    for name in ("with_terms", "without_terms"):
        adv = apply_patch(show, patches[name], rows.to(device), cols.to(device))
        rows_fig.append((name, adv.cpu(), [names[i] for i in predict(model, adv).tolist()]))
    image_rows(rows_fig, "reports/patch/examples.png")


if __name__ == "__main__":
    stage.run("patch", main, "reports/patch/cost.json")
