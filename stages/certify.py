"""Stage certify: randomized smoothing (Cohen, Rosenfeld & Kolter 2019) of one Gaussian-noise model.

Usage: ``python stages/certify.py <model>`` (a model of ``certify.models``, trained by the defend
stage with ``method: gaussian``; sigma comes from its sidecar). On the first ``certify.n_eval``
evaluation images (the attack stages' images): CERTIFY's certified L2 accuracy at each radius,
PGD-L2 with EOT against the smoothed classifier at the same radii, and the check that the
certified accuracy never exceeds the empirical one. Writes ``reports/certify/<model>/metrics.json``,
``reports/certify/<model>/curve.tsv`` (certified accuracy against radius, empirical accuracy at
the attacked radii) and ``reports/headline/certify/<model>.json``; its cost goes to
``reports/cost/certify/<model>.json``. A failed check is printed loudly and recorded in the
metrics; it does not fail the stage.
"""
from __future__ import annotations

import sys
from pathlib import Path

from advgen import headline, stage
from advgen.config import ConfigError, load_section
from advgen.defenses import headline as hl
from advgen.defenses import smoothing
from advgen.defenses.params import CertifyConfig
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


def main(params: dict, name: str) -> None:
    cfg = load_section(CertifyConfig, params, "certify")
    if name not in cfg.models:
        raise ConfigError(f"params.yaml: model {name!r} is not in certify.models {cfg.models}")
    common = stage.common(params)
    deterministic_kernels()
    device = resolve_device(common.device)
    model = load_for_attack(name, device)
    sigma = smoothing.sigma_of(model, name)
    x, y = eval_set(stage.dataset(params), cfg.n_eval, common.seed, model.sidecar["in_shape"][-1])
    log = lambda s: print(f"[certify {name}] {s}", file=sys.stderr)
    metrics = smoothing.evaluate_smoothing(model, x.to(device), y.to(device), sigma, cfg, generator(common.seed), log=log)
    for c in metrics["checks"]:
        if not c["passed"]:
            print(f"!!! SANITY CHECK FAILED [{name}] {c['name']}: {c['detail']}", file=sys.stderr)
    out = Path("reports/certify") / name
    metrics = round_floats({"model": name, **metrics})
    atomic_write_json(out / "metrics.json", metrics)
    atomic_write_text(out / "curve.tsv", tsv(metrics["curve"], "%.6f"))
    headline.write(f"certify/{name}", hl.certify(metrics))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python stages/certify.py <model>")
    model_name = sys.argv[1]
    stage.run("certify", lambda p: main(p, model_name), Path("reports/cost/certify") / f"{model_name}.json")
