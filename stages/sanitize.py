"""Stage sanitize: feature squeezing (Xu et al. 2018) as preprocessing and as a detector, under
naive and adaptive attacks (:func:`advgen.defenses.squeeze.evaluate_squeezing`).

Usage: ``python stages/sanitize.py``. The evaluation images are the attack stages' subset of
the test split (``sanitize.n_eval``); the detector's threshold is fitted on ``sanitize.n_val``
other clean test images (the model saw the whole train split). Writes
``reports/sanitize/metrics.json``, ``reports/sanitize/roc.tsv`` (the detector's ROC per attack
at shared thresholds) and ``reports/headline/sanitize.json``; its cost goes to
``reports/cost/sanitize.json``.
"""
from __future__ import annotations

from pathlib import Path

import torch

from advgen import headline, stage
from advgen.config import load_section
from advgen.data import load_split, to_float
from advgen.defenses import headline as hl
from advgen.defenses import squeeze
from advgen.defenses.params import SanitizeConfig
from advgen.evaluation import eval_set, load_for_attack
from advgen.io import tsv
from advgen.utils import (
    atomic_write_json,
    atomic_write_text,
    deterministic_kernels,
    generator,
    resolve_device,
    round_floats,
)

OUT = Path("reports/sanitize")


def validation_images(dataset: str, n_eval: int, n_val: int, seed: int, side: int) -> torch.Tensor:
    """``n_val`` clean test images (float (n_val, C, H, W) in [0, 1]) outside the evaluation subset."""
    images, labels = load_split(Path("data/prepared") / dataset, "test")
    x_val, _ = squeeze.validation_split(images, labels, n_eval, n_val, seed)
    return to_float(x_val, side)


def main(params: dict) -> None:
    common = stage.common(params)
    cfg = load_section(SanitizeConfig, params, "sanitize")
    deterministic_kernels()
    device = resolve_device(common.device)
    model = load_for_attack(cfg.model, device)
    side = model.sidecar["in_shape"][-1]
    cfg.check_image(side)
    dataset = stage.dataset(params)
    x, y = eval_set(dataset, cfg.n_eval, common.seed, side)
    x_val = validation_images(dataset, cfg.n_eval, cfg.n_val, common.seed, side)
    result = squeeze.evaluate_squeezing(model, x_val.to(device), x.to(device), y.to(device), cfg,
                                        generator(common.seed))
    roc = result.pop("roc")
    metrics = round_floats({"model": cfg.model, **result})
    atomic_write_json(OUT / "metrics.json", metrics)
    atomic_write_text(OUT / "roc.tsv", tsv(roc, "%.6f"))
    headline.write("sanitize", hl.sanitize(metrics))


if __name__ == "__main__":
    stage.run("sanitize", main, Path("reports/cost/sanitize.json"))
