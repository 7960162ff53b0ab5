"""Stage attack: run one attack over its epsilon sweep on one model.

Usage: ``python stages/attack.py <model> <attack>``. Writes per-example results to
``data/attacks/<model>/<attack>.safetensors``, and ``reports/attacks/<model>/<attack>.json``
(+ ``.cost.json``, ``.png``: original, amplified perturbation, adversarial, predictions).
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

from advgen import stage
from advgen.config import ConfigError
from advgen.evaluation import class_names, eval_set, load_for_attack
from advgen.plots import image_rows
from advgen.params import AttackConfig, load_attack_config
from advgen.robustness import ATTACKS, predict, success_vs_budget, sweep
from advgen.utils import atomic_save_tensors, atomic_write_json, resolve_device, round_floats, seed_everything


def run(params: dict, model_name: str, attack: str) -> None:
    common = stage.common(params)
    cfg = load_attack_config(params)
    if attack not in ATTACKS:
        raise ConfigError(f"unknown attack {attack!r}; expected one of {sorted(ATTACKS)}")
    gen = seed_everything(common.seed)
    device = resolve_device(common.device)
    model = load_for_attack(model_name, device)
    dataset = params["ingest"]["dataset"]
    x, y = eval_set(dataset, cfg.n_eval, common.seed, model.sidecar["in_shape"][-1])
    if attack == "square":
        x, y = x[: cfg.n_square], y[: cfg.n_square]
    x, y = x.to(device), y.to(device)
    eps_list = {"pgd_l2": cfg.eps_l2, "square": [0.0, cfg.square_eps]}.get(attack, cfg.eps_linf)
    gen_dev = torch.Generator(device).manual_seed(common.seed)
    res = sweep(attack, model, x, y, eps_list, cfg.__dict__, gen_dev,
                show_eps=cfg.check_eps if attack != "pgd_l2" else max(eps_list))
    clean = predict(model, x) == y
    acc = {f"{e:g}": float(c.float().mean()) for e, c in zip(res.eps, res.correct)}
    metrics = {"model": model_name, "attack": attack, "norm": ATTACKS[attack][0], "n": len(y),
               "clean_accuracy": float(clean.float().mean()), "accuracy": acc,
               "max_perturbation": {f"{e:g}": n for e, n in zip(res.eps, res.max_norm)},
               "within_eps": all(n <= e + 1e-5 for e, n in zip(res.eps, res.max_norm)),
               "queries": res.queries, "grad_evals": res.grad_evals}
    if attack == "pgd":
        metrics["variants"] = pgd_variants(model, x, y, cfg, gen_dev)
    if attack == "square":
        metrics["square"] = square_summary(res.extra[f"queries_to_success@{cfg.square_eps:g}"], clean, cfg)
    out = Path("reports/attacks") / model_name
    atomic_save_tensors(Path("data/attacks") / model_name / f"{attack}.safetensors",
                        {"correct": res.correct.to(torch.uint8), "eps": torch.tensor(res.eps, dtype=torch.float64)})
    atomic_write_json(out / f"{attack}.json", round_floats(metrics))
    names = class_names(dataset)
    show = x[: len(res.adv_examples)]
    image_rows([("original", show.cpu(), [names[i] for i in predict(model, show).tolist()]),
                ("perturbation", (res.adv_examples - show).cpu(), None),
                (f"adv eps={res.show_eps:g}", res.adv_examples.cpu(),
                 [names[i] for i in predict(model, res.adv_examples).tolist()])], out / f"{attack}.png")


def pgd_variants(model, x, y, cfg: AttackConfig, gen) -> dict[str, float]:
    """PGD accuracy at check_eps with the base budget, more steps, and more restarts."""
    from advgen.attacks import PGD

    out = {}
    for steps, restarts in ((cfg.pgd_steps, cfg.pgd_restarts), (cfg.more_steps, cfg.pgd_restarts),
                            (cfg.more_steps, cfg.more_restarts)):
        adv = torch.cat([PGD(model, cfg.check_eps, steps=steps, restarts=restarts, generator=gen)(
            x[i:i + 250], y[i:i + 250]) for i in range(0, len(y), 250)])
        out[f"PGD-{steps}x{restarts}"] = float((predict(model, adv) == y).float().mean())
    return out


def square_summary(q_first: list[int], clean: torch.Tensor, cfg: AttackConfig) -> dict:
    """Success against query budget, and the wall-clock time each budget takes under a rate limit."""
    window = int(cfg.queries_per_minute * cfg.window_minutes)
    budgets = sorted(set(cfg.square_budgets) | {min(window, cfg.square_queries)})
    succ = success_vs_budget(q_first, clean.cpu(), budgets)
    return {"eps": cfg.square_eps, "success_at_budget": {str(b): s for b, s in succ.items()},
            "hours_at_rate_limit": {str(b): b / cfg.queries_per_minute / 60 for b in budgets},
            "queries_per_minute": cfg.queries_per_minute, "window_minutes": cfg.window_minutes,
            "window_budget": min(window, cfg.square_queries),
            "median_queries_to_success": float(torch.tensor([q for q in q_first if q > 0] or [0]).float().median())}


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python stages/attack.py <model> <attack>")
    m, a = sys.argv[1:]
    stage.run("attack", lambda p: run(p, m, a), Path("reports/attacks") / m / f"{a}.cost.json")
