"""``advgen sweep``: a grid of params as DVC experiments, through DVC's own queue.

A thin wrapper: each point of the grid is ``dvc exp run --queue -n NAME -S KEY=VALUE ...``;
``--run`` then runs the queue (``dvc exp run --run-all --jobs N``, each experiment in its own
temporary copy with the cache shared) and prints ``advgen compare --exp``. Nothing is home-made:
``dvc queue status``, ``dvc exp show`` and ``dvc exp apply`` work on what it queued.
"""
from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Callable

import yaml

Runner = Callable[[list[str]], str]


class SweepError(ValueError):
    """A malformed axis."""


def parse_axis(text: str) -> tuple[str, list[str]]:
    """``"attack.eps=0.05,0.1"`` -> ``("attack.eps", ["0.05", "0.1"])``."""
    key, sep, values = text.partition("=")
    items = [v.strip() for v in values.split(",")] if sep else []
    if not sep or not re.fullmatch(r"[A-Za-z_][\w.\-]*", key) or not items or "" in items:
        raise SweepError(f"axis {text!r}: expected KEY=V1,V2,... (a params.yaml key, dotted, and one or more values)")
    return key, items


def grid(axes: list[str]) -> list[list[tuple[str, str]]]:
    """Every combination of the axes' values, in order: [[(key, value), ...], ...]."""
    parsed = [parse_axis(a) for a in axes]
    keys = [k for k, _ in parsed]
    if len(set(keys)) != len(keys):
        raise SweepError(f"an axis is given twice: {', '.join(keys)}")
    return [list(zip(keys, combo)) for combo in itertools.product(*(vals for _, vals in parsed))]


def check_keys(params: Path, axes: list[str]) -> None:
    """Refuse an axis whose key is not in ``params`` (``dvc exp run -S`` would add it, and every
    queued experiment would then fail the params check)."""
    data = yaml.safe_load(params.read_text()) or {}
    for axis in axes:
        key, _ = parse_axis(axis)
        node = data
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                raise SweepError(f"axis {axis!r}: {params} has no key {key!r} (at {part!r})")
            node = node[part]


def name_of(point: list[tuple[str, str]], prefix: str = "") -> str:
    """An experiment name (a valid git ref part): ``eps-0.1_loss-wgan_gp``."""
    body = "_".join(f"{k.rsplit('.', 1)[-1]}-{v}" for k, v in point)
    return re.sub(r"[^A-Za-z0-9._-]", "-", f"{prefix}{body}").strip(".-") or "exp"


def queue_commands(axes: list[str], targets: list[str], prefix: str = "") -> list[list[str]]:
    """The ``dvc exp run --queue`` command of every grid point."""
    return [["exp", "run", "--queue", "-n", name_of(point, prefix),
             *(a for k, v in point for a in ("-S", f"{k}={v}")), *targets] for point in grid(axes)]


def sweep(axes: list[str], targets: list[str], dvc: Runner, run: bool = False, jobs: int = 1,
          prefix: str = "") -> list[str]:
    """Queue the grid (and run it with ``run``); returns the experiment names."""
    commands = queue_commands(axes, targets, prefix)
    names = [c[4] for c in commands]
    if len(set(names)) != len(names):
        raise SweepError(f"two grid points get the same name: {names}")
    for cmd in commands:
        dvc(cmd)
    if run:
        dvc(["exp", "run", "--run-all", "--jobs", str(jobs)])
    return names
