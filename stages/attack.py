"""Stage attack: run one attack over its epsilon sweep on one model (a per-attack curve).

Usage: ``python stages/attack.py <model> <attack>``. Writes per-example results to
``data/attacks/<model>/<attack>.safetensors``, and ``reports/attacks/<model>/<attack>.json``
(+ ``.png``: original, amplified perturbation, adversarial, predictions); its cost goes to
``reports/cost/attacks/<model>/<attack>.json``.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

from advgen import headline, stage
from advgen.config import ConfigError
from advgen.evaluation import class_names, eval_set, load_for_attack, predict
from advgen.schema import load_attack_config
from advgen.plots import image_rows
from advgen.robustness import ATTACKS, square_summary, sweep
from advgen.stats import accuracy_ci
from advgen.utils import atomic_save_tensors, atomic_write_json, deterministic_kernels, generator, resolve_device, round_floats


def run(params: dict, model_name: str, attack: str) -> None:
    common = stage.common(params)
    cfg = load_attack_config(params)
    if attack not in ATTACKS:
        raise ConfigError(f"unknown attack {attack!r}; expected one of {sorted(ATTACKS)}")
    deterministic_kernels()
    device = resolve_device(common.device)
    model = load_for_attack(model_name, device)
    dataset = params["ingest"]["dataset"]
    x, y = eval_set(dataset, cfg.n_eval, common.seed, model.sidecar["in_shape"][-1])
    if attack == "square":  # C7's query-budget experiment, on the first n_square examples
        x, y = x[: cfg.n_square], y[: cfg.n_square]
    x, y = x.to(device), y.to(device)
    eps_list = {"pgd_l2": cfg.eps_l2, "square": [0.0, cfg.square_eps]}.get(attack, cfg.eps_linf)
    res = sweep(attack, model, x, y, eps_list, cfg.__dict__, generator(common.seed),
                show_eps=cfg.check_eps if attack != "pgd_l2" else max(eps_list))
    clean = (predict(model, x) == y).cpu()
    per_eps = {f"{e:g}": accuracy_ci(c.cpu()) for e, c in zip(res.eps, res.correct)}
    metrics = {"model": model_name, "attack": attack, "norm": ATTACKS[attack][0], "n": len(y),
               "clean_accuracy": float(clean.float().mean()), "clean_ci95": accuracy_ci(clean)["ci95"],
               "accuracy": {e: v["accuracy"] for e, v in per_eps.items()},
               "accuracy_ci95": {e: v["ci95"] for e, v in per_eps.items()},
               "max_perturbation": {f"{e:g}": n for e, n in zip(res.eps, res.max_norm)},
               "within_eps": all(n <= e + 1e-5 for e, n in zip(res.eps, res.max_norm)),
               "queries": res.queries, "grad_evals": res.grad_evals}
    if attack == "square":
        metrics["square"] = square_summary(
            res.extra[f"queries_to_success@{cfg.square_eps:g}"], clean, eps=cfg.square_eps,
            budgets=cfg.square_budgets, n_queries=cfg.square_queries,
            queries_per_minute=cfg.queries_per_minute, window_minutes=cfg.window_minutes)
    out = Path("reports/attacks") / model_name
    atomic_save_tensors(Path("data/attacks") / model_name / f"{attack}.safetensors",
                        {"correct": res.correct.to(torch.uint8), "eps": torch.tensor(res.eps, dtype=torch.float64)})
    metrics = round_floats(metrics)
    atomic_write_json(out / f"{attack}.json", metrics)
    headline.write(f"attacks/{model_name}/{attack}", headline.attack(metrics))
    names = class_names(dataset)
    show = x[: len(res.adv_examples)]
    image_rows([("original", show.cpu(), [names[i] for i in predict(model, show).tolist()]),
                ("perturbation", (res.adv_examples - show).cpu(), None),
                (f"adv eps={res.show_eps:g}", res.adv_examples.cpu(),
                 [names[i] for i in predict(model, res.adv_examples).tolist()])], out / f"{attack}.png")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python stages/attack.py <model> <attack>")
    m, a = sys.argv[1:]
    stage.run("attack", lambda p: run(p, m, a), Path("reports/cost/attacks") / m / f"{a}.json")
