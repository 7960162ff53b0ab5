"""Stage dimension (C4): FGSM at a fixed eps on the same linear model at growing input dimension."""
from __future__ import annotations

from advgen import headline, stage
from advgen.attacks import headline as hl
from advgen.attacks.dimension import curve_rows, measure
from advgen.attacks.params import DimensionConfig
from advgen.config import load_section
from advgen.evaluation import eval_set, load_for_attack
from advgen.io import tsv
from advgen.utils import atomic_write_json, atomic_write_text, deterministic_kernels, resolve_device, round_floats


def main(params: dict) -> None:
    common = stage.common(params)
    cfg = load_section(DimensionConfig, params, "dimension")
    deterministic_kernels()
    device = resolve_device(common.device)
    rows = {}
    for name in cfg.models:
        model = load_for_attack(name, device)
        x, y = eval_set(stage.dataset(params), cfg.n_eval, common.seed, model.sidecar["in_shape"][-1])
        rows[name] = measure(model, x.to(device), y.to(device), cfg.eps)
    metrics = round_floats({"eps": cfg.eps, "models": rows})
    atomic_write_json("reports/dimension/metrics.json", metrics)
    headline.write("dimension", hl.dimension(metrics))
    atomic_write_text("reports/dimension/curve.tsv",
                      tsv(curve_rows(rows), "%.6f"))


if __name__ == "__main__":
    stage.run("dimension", main, "reports/cost/dimension.json")
