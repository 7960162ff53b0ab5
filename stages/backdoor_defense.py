"""Stage backdoor_defense: score one poisoned model (CA/ASR/RA) and the backdoor defenses
params ``backdoor_defense.models.<model>`` lists against it.

Usage: ``python stages/backdoor_defense.py <model>``; the model is named like its poison.configs
entry. Writes ``reports/backdoor/<model>/metrics.json`` (the details, in git for the report), the
headline ``reports/headline/backdoor/<model>.json`` and each defense's wall seconds in
``reports/cost/backdoor/<model>.defenses.json``.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from advgen import headline, stage
from advgen.backdoors import headline as hl
from advgen.backdoors.dataset import load_index, load_triggered, poisoned_mask
from advgen.backdoors.evaluation import DefenseInputs, EvalSet, Recipe, evaluate_backdoor
from advgen.backdoors.params import BackdoorDefenseConfig, PoisonConfig
from advgen.backdoors.poison import scoring_mask, to_unit
from advgen.config import load_section
from advgen.data import dataset_dir, load_split, subset, subset_index
from advgen.models import load_model
from advgen.schema import TrainConfig
from advgen.training import training_data
from advgen.utils import atomic_write_json, deterministic_kernels, resolve_device, round_floats


def backdoor_defense(params: dict, name: str) -> None:
    common = stage.common(params)
    cfg = load_section(BackdoorDefenseConfig, params, "backdoor_defense")
    train_cfg = load_section(TrainConfig, params, "train")
    poison = load_section(PoisonConfig, params, "poison")
    spec = poison.spec(name)
    if name not in cfg.models:
        raise ValueError(f"params.yaml: {name!r} is not in backdoor_defense.models {sorted(cfg.models)}")
    if train_cfg.spec(name).resolution is not None:
        raise ValueError(f"params.yaml: 'train.models.{name}.resolution' is set; a poisoned model is scored on "
                         "the triggered test images at full resolution, so it must not be downsampled")
    device = resolve_device(common.device)
    deterministic_kernels()
    model = load_model(Path("models") / name, device)
    meta = json.loads((Path("models") / name / "model.json").read_text())
    recipe = Recipe.from_sidecar(meta)
    dataset = stage.dataset(params)
    # The training set exactly as the model saw it: the train stage's seeded subset of the poisoned split.
    data = training_data(dataset, train_cfg.n_train, train_cfg.n_test, None, torch.Generator().manual_seed(recipe.seed),
                         f"poisoned/{name}")
    is_poison = poisoned_mask(load_index(Path("data/backdoor") / name), data.train_index)
    gen = torch.Generator().manual_seed(common.seed)
    clean_x, clean_y = load_split(dataset_dir(dataset), "train")
    clean_x, clean_y = subset(clean_x, clean_y, cfg.n_clean, gen)
    test_x, test_y = load_split(Path("data/poisoned") / name, "test")  # the clean test images the triggered ones copy
    trig_x, trig_y = load_triggered(Path("data/backdoor") / name)
    keep = subset_index(len(test_y), cfg.n_eval, gen)
    mask = scoring_mask(trig_y[keep], spec.target, spec.source)
    ev = EvalSet(to_unit(test_x[keep]), test_y[keep], to_unit(trig_x[keep][mask]), trig_y[keep][mask], spec.target)
    inp = DefenseInputs(model, recipe, *data.train, is_poison, max(1, round(spec.rate * len(data.train[1]))),
                        to_unit(clean_x), clean_y)
    refs = {r: load_model(Path("models") / r, device) for r in dict.fromkeys([cfg.reference, poison.model])}
    out, seconds = evaluate_backdoor(inp, ev, cfg.models[name], cfg, gen, device, refs)
    metrics = round_floats({"model": name, "poison": spec.config(), "n_train": len(data.train[1]),
                            "n_poisoned_in_train": int(is_poison.sum()), "n_clean": len(clean_y),
                            "n_eval": len(ev.clean_y), "n_asr": len(ev.trig_y), "reference": cfg.reference,
                            "epochs": recipe.epochs, **out})
    atomic_write_json(Path("reports/backdoor") / name / "metrics.json", metrics)
    headline.write(f"backdoor/{name}", hl.backdoor(metrics))
    # Each defense's wall seconds: a cost (it varies from run to run), beside the stage's own
    atomic_write_json(Path("reports/cost/backdoor") / f"{name}.defenses.json",
                      {"defense_wall_s": {k: round(v, 3) for k, v in seconds.items()}})


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python stages/backdoor_defense.py <model from params backdoor_defense.models>")
    model_name = sys.argv[1]
    stage.run("backdoor_defense", lambda p: backdoor_defense(p, model_name),
              Path("reports/cost/backdoor") / f"{model_name}.json")
