"""Stage transfer (C6): craft PGD on each source model, evaluate on every target model."""
from __future__ import annotations

from pathlib import Path

import torch

from advgen import headline, stage
from advgen.attacks import headline as hl
from advgen.attacks.params import TransferConfig, load_attack_config
from advgen.attacks.robustness import transfer_matrix
from advgen.config import ConfigError, load_section
from advgen.evaluation import eval_set, load_for_attack, predict
from advgen.stats import wilson_p
from advgen.utils import (
    atomic_save_tensors,
    atomic_write_json,
    atomic_write_text,
    deterministic_kernels,
    generator,
    resolve_device,
    round_floats,
)


def main(params: dict) -> None:
    common = stage.common(params)
    cfg = load_section(TransferConfig, params, "transfer")
    deterministic_kernels()
    device = resolve_device(common.device)
    models = {name: load_for_attack(name, device) for name in cfg.models}
    shapes = {name: tuple(m.sidecar["in_shape"]) for name, m in models.items()}
    if len(set(shapes.values())) != 1:
        raise ConfigError(f"params.yaml: 'transfer.models' must share one input shape, found {shapes}")
    n_eval = load_attack_config(params).n_eval  # the attack stages' evaluation set, for the worst case
    x, y = eval_set(stage.dataset(params), n_eval, common.seed, next(iter(shapes.values()))[-1])
    x, y = x.to(device), y.to(device)
    matrix, correct = transfer_matrix(models, x, y, cfg.eps, cfg.steps, generator(common.seed))
    clean = {name: float((predict(m, x) == y).float().mean()) for name, m in models.items()}
    atomic_save_tensors("data/transfer/correct.safetensors", {k: v.to(torch.uint8) for k, v in correct.items()})
    metrics = round_floats(
        {"eps": cfg.eps, "steps": cfg.steps, "n": len(y), "clean": clean, "matrix": matrix,
         "clean_ci95": {m: list(wilson_p(a, len(y))) for m, a in clean.items()},
         "matrix_ci95": {s: {t: list(wilson_p(a, len(y))) for t, a in r.items()} for s, r in matrix.items()}})
    atomic_write_json("reports/transfer/metrics.json", metrics)
    headline.write("transfer", hl.transfer(metrics))
    rows = ["source\ttarget\taccuracy"] + [f"{s}\t{t}\t{a:.6f}" for s, r in matrix.items() for t, a in r.items()]
    atomic_write_text(Path("reports/transfer/matrix.tsv"), "\n".join(rows) + "\n")


if __name__ == "__main__":
    stage.run("transfer", main, "reports/cost/transfer.json")
