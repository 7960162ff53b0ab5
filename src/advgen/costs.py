"""What a ``dvc repro`` costs, from the committed cost files (``reports/cost/``).

Each stage's cost is the ``wall_s`` its last run recorded (the stage's own file under
``reports/cost/``; a stage with several, such as ``evaluate_generative``, counts the largest,
the others being breakdowns of it). The stages a target pulls in are DVC's own graph: on a fresh
clone, with no DVC cache, ``dvc repro robustness@cnn`` runs the target and every stage upstream
of it; ``dvc repro -s robustness@cnn`` the target alone (its inputs must already be there).
``validate`` and ``sources`` (about a second each) and ``report`` (about half a minute) write no
cost file.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Plan:
    """The stages a target pulls in, in DVC's order, with their recorded wall seconds (None:
    no cost file)."""

    targets: list[str]
    stages: list[tuple[str, float | None]]

    @property
    def seconds(self) -> float:
        return sum(s for _, s in self.stages if s is not None)

    @property
    def uncosted(self) -> list[str]:
        return [n for n, s in self.stages if s is None]


class CostError(ValueError):
    """An unknown target."""


def _wall(root: Path, stage) -> float | None:
    walls = []
    for out in stage.outs:
        path = Path(out.fs_path)
        if path.relative_to(root).parts[:2] == ("reports", "cost") and path.is_file():
            wall = json.loads(path.read_text()).get("wall_s")
            if isinstance(wall, (int, float)):
                walls.append(float(wall))
    return max(walls) if walls else None


def plan(targets: list[str] | None = None, root: str | Path = ".", single: bool = False) -> Plan:
    """The stages ``dvc repro TARGETS`` runs on a fresh clone (``single``: ``dvc repro -s``,
    the targets alone), each with its recorded cost; no targets: the whole pipeline."""
    import networkx as nx
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        root = Path(repo.root_dir)  # the repository's, also when called from a subfolder
        graph = repo.index.graph
        stages = {s.name: s for s in repo.index.stages}  # the repository's one dvc.yaml
        targets = list(targets or [])
        # a bare foreach name (`robustness`) means all of its stages, as `dvc repro robustness` does
        expand = {t: [s for n, s in stages.items() if n == t or n.startswith(t + "@")] for t in targets}
        unknown = [t for t, found in expand.items() if not found]
        if unknown:
            groups = sorted({n.split("@")[0] for n in stages})
            raise CostError(f"unknown stage(s) {unknown}; expected one of {groups} or <name>@<item> "
                            "(`dvc stage list` lists them all)")
        chosen = {s for found in expand.values() for s in found} if targets else set(stages.values())
        if not single:
            chosen |= {d for s in list(chosen) for d in nx.descendants(graph, s)}
        # DVC's edges run from a stage to what it depends on: reversed, a stage follows its inputs;
        # stages that could run in either order come by name, so the listing is stable
        order = [s for s in nx.lexicographical_topological_sort(graph.reverse(copy=False), key=lambda s: s.name)
                 if s in chosen]
        return Plan(targets, [(s.name, _wall(root, s)) for s in order])


def fmt_duration(seconds: float) -> str:
    """``42 s``, ``21 min``, ``4.2 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def render(p: Plan, verbose: bool = False) -> str:
    """One line (``N stages, about T``), and with ``verbose`` each stage and its time."""
    what = " ".join(p.targets) or "the whole pipeline"
    n = len(p.stages)
    lines = [f"{what}: {n} stage{'' if n == 1 else 's'}, {fmt_duration(p.seconds)} of recorded stage time"]
    if p.uncosted:
        lines[0] += f" (+ {', '.join(p.uncosted)}: no cost file)"
    if verbose:
        lines += [f"  {n:<32} {fmt_duration(s) if s is not None else '—':>8}" for n, s in p.stages]
    return "\n".join(lines) + "\n"
