"""Stage attack: run every attack of ``attack.attacks`` over its epsilon sweep on one model
(the per-attack curves).

Usage: ``python stages/attack.py <model>``. For each attack, writes per-example results to
``data/attacks/<model>/<attack>.safetensors`` and ``reports/attacks/<model>/<attack>.json``
(+ ``.png``: original, amplified perturbation, adversarial, predictions); the model's headline
goes to ``reports/headline/attacks/<model>.json``, its cost to ``reports/cost/attacks/<model>.json``.
One stage per model, not per attack: every attack imports the same code, so finer stages would
cache nothing and each would pay the start-up of a stage (about 1 s with DVC and the warm runner).
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

from advgen import headline, stage
from advgen.attacks import headline as hl
from advgen.attacks.params import load_attack_config
from advgen.attacks.robustness import ATTACKS, square_summary, sweep
from advgen.config import ConfigError
from advgen.defenses.params import defended_names
from advgen.evaluation import class_names, eval_set, load_for_attack, predict
from advgen.plots import image_rows
from advgen.stats import accuracy_ci
from advgen.utils import (
    atomic_save_tensors,
    atomic_write_json,
    deterministic_kernels,
    generator,
    resolve_device,
    round_floats,
)


def run_attack(model, model_name: str, attack: str, x_all: torch.Tensor, y_all: torch.Tensor, cfg,
               seed: int, names: list[str], device: torch.device) -> dict:
    """One attack's curve on the model: writes its per-example results, JSON and PNG; returns its metrics."""
    x, y = x_all, y_all
    if attack == "square":  # on the first n_square examples (C7's query-budget experiment at square_eps)
        x, y = x[: cfg.n_square], y[: cfg.n_square]
    x, y = x.to(device), y.to(device)
    square_eps = cfg.eps_linf if cfg.square_sweep else [0.0, cfg.square_eps]
    eps_list = {"pgd_l2": cfg.eps_l2, "square": square_eps}.get(attack, cfg.eps_linf)
    # A fresh generator per attack: each curve is the same whichever attacks run beside it.
    res = sweep(attack, model, x, y, eps_list, cfg, generator(seed),
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
            res.extra["queries_to_success"][cfg.square_eps], clean, eps=cfg.square_eps,
            budgets=cfg.square_budgets, n_queries=cfg.square_queries,
            queries_per_minute=cfg.queries_per_minute, window_minutes=cfg.window_minutes)
    out = Path("reports/attacks") / model_name
    atomic_save_tensors(Path("data/attacks") / model_name / f"{attack}.safetensors",
                        {"correct": res.correct.to(torch.uint8), "eps": torch.tensor(res.eps, dtype=torch.float64)})
    metrics = round_floats(metrics)
    atomic_write_json(out / f"{attack}.json", metrics)
    show = x[: len(res.adv_examples)]
    image_rows([("original", show.cpu(), [names[i] for i in predict(model, show).tolist()]),
                ("perturbation", (res.adv_examples - show).cpu(), None),
                (f"adv eps={res.show_eps:g}", res.adv_examples.cpu(),
                 [names[i] for i in predict(model, res.adv_examples).tolist()])], out / f"{attack}.png")
    return metrics


def run(params: dict, model_name: str) -> None:
    common = stage.common(params)
    defended = model_name in defended_names(params)
    cfg = load_attack_config(params, defended=defended)
    unknown = [a for a in cfg.attacks if a not in ATTACKS]
    if unknown:
        raise ConfigError(f"unknown attack(s) {unknown}; expected some of {sorted(ATTACKS)}")
    deterministic_kernels()
    device = resolve_device(common.device)
    model = load_for_attack(model_name, device)
    dataset = stage.dataset(params)
    x, y = eval_set(dataset, cfg.n_eval, common.seed, model.sidecar["in_shape"][-1])
    names = class_names(dataset)
    per_attack = {a: run_attack(model, model_name, a, x, y, cfg, common.seed, names, device) for a in cfg.attacks}
    # Every model's worst case per eps is in its robustness headline: one eps per L-inf attack here.
    headline.write(f"attacks/{model_name}", hl.attacks(per_attack, cfg.check_eps, queries=not defended))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python stages/attack.py <model>")
    m = sys.argv[1]
    stage.run("attack", lambda p: run(p, m), Path("reports/cost/attacks") / f"{m}.json")
