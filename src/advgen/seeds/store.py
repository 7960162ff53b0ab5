"""What the two replicate stages share: their start (the seed checked, torchrun when
``train.nproc > 1``) and where they write (models, metrics, headline, per claim and seed)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import headline, stage
from ..config import load_section
from ..models import save_model
from ..schema import Common, TrainConfig
from ..training import setup
from ..utils import atomic_dir, atomic_write_json, deterministic_kernels, round_floats
from .params import ReplicateConfig


@dataclass
class Started:
    common: Common
    replicate: ReplicateConfig
    train: TrainConfig
    rank: int
    device: torch.device


def start(params: dict[str, Any], seed: int) -> Started | None:
    """The checked params of a replicate stage for ``seed``; with ``train.nproc > 1`` outside
    torchrun it relaunches the stage under torchrun and returns None (as the train stage does)."""
    common = stage.common(params)
    rep = load_section(ReplicateConfig, params, "replicate")
    if seed not in rep.seeds:
        raise ValueError(f"params.yaml: seed {seed} is not in replicate.seeds {rep.seeds}")
    train = load_section(TrainConfig, params, "train")
    started = setup(train.nproc, common.device)
    if started is None:
        return None
    deterministic_kernels()
    return Started(common, rep, train, *started)


def write(claim: str, seed: int, models: dict[str, tuple[nn.Module, dict]], metrics: dict[str, Any], profile: str,
          headline_of: Callable[[dict], dict]) -> None:
    """``models/replicate/<claim>/<seed>/<name>/`` (each model with its sidecar, the folder written
    atomically), ``reports/replicate/<claim>/<seed>/metrics.json`` and its headline."""
    with atomic_dir(Path("models/replicate") / claim / str(seed)) as tmp:
        for name, (model, sidecar) in models.items():
            (tmp / name).mkdir()
            save_model(model, tmp / name, {**sidecar, "profile": profile})
    metrics = round_floats(metrics)
    atomic_write_json(Path("reports/replicate") / claim / str(seed) / "metrics.json", metrics)
    headline.write(f"replicate/{claim}/{seed}", headline_of(metrics))


def run_stage(claim: str, main: Callable[[dict, int], None], argv: list[str]) -> None:
    """A replicate stage's entry point: ``python stages/replicate_<claim>.py <seed>``. Under
    torchrun the launching process records the cost, children included."""
    import os
    import sys

    if len(argv) != 2 or not argv[1].isdigit():
        sys.exit(f"usage: python stages/replicate_{claim}.py <seed from params replicate.seeds>")
    seed = int(argv[1])
    cost = None if "LOCAL_RANK" in os.environ else Path("reports/cost/replicate") / claim / f"{seed}.json"
    stage.run(f"replicate_{claim}", lambda p: main(p, seed), cost)
