"""The params each stage reads, one small file per stage (``reports/params/<stage>.json``).

A stage of ``dvc.yaml`` names the params keys it reads under ``meta: {params: [...]}`` (the same
dotted keys, ``${...}`` templating included, that ``params:`` would take) and depends on
``reports/params/<stage>.json``, which the ``validate`` stage writes on every ``dvc repro``:
``{key: value}`` for exactly those keys, resolved for the active profile. A stage reruns exactly
when one of its values changes, as with ``params:``, but ``dvc.lock`` holds one hash per stage
instead of a copy of every value: DVC reads and rewrites the whole lock file after every stage,
and the copies were a third of it. The ``validate`` stage tracks the whole of ``params.yaml``
(``dvc params diff`` and ``dvc exp show`` still see every key).

A stage run on its own (``dvc repro -s train@cnn``) checks that its file matches params.yaml
(:func:`check_current`) and stops with a clear error when it does not, so a lock never records
values the stage did not run with.

**One model per stage.** A stage of a ``foreach`` over a list of models that it also reads
(``attack@cnn`` reads the ``attack`` section, whose ``models`` is the leaderboard) names that key
under ``meta: own:``. Its file then holds the list cut down to its own item (``attack.models:
[cnn]``) and the key under ``"@own"``, and the stage script sees the same cut-down params
(:func:`own_view`, applied by :func:`advgen.stage.run`): adding or removing a model changes no
other model's file, so no other model's stage reruns, and the stage sees no other entry of that
list (other keys it reads outside its ``meta: params:`` are not hidden from it).
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import ConfigError
from .io import atomic_dir, dumps

ROOT = Path("reports/params")
_MISSING = object()


def lookup(params: dict[str, Any], key: str) -> Any:
    """The value of dotted ``key`` (``train.models.cnn``) in ``params``; raises ConfigError if absent."""
    value: Any = params
    for part in key.split("."):
        value = value.get(part, _MISSING) if isinstance(value, dict) else _MISSING
        if value is _MISSING:
            raise ConfigError(f"params.yaml: '{key}' is not set (a stage of dvc.yaml reads it)")
    return value


@dataclass(frozen=True)
class Tracked:
    """What one stage of dvc.yaml reads: its params ``keys`` and, for a stage of a ``foreach``
    over models, the ``own`` key holding that list (``attack.models``), cut down to its item."""

    keys: list[str]
    own: str | None = None


def stage_keys(root: str | Path = ".") -> dict[str, Tracked]:
    """``{stage name: Tracked}`` for every stage of ``root/dvc.yaml`` whose ``meta`` names params,
    resolved by DVC itself (foreach items, ``${profile}``)."""
    from dvc.repo import Repo  # imported here: DVC's import costs about a second

    with Repo(str(root), uninitialized=True) as repo:  # also outside a DVC repo (tests)
        return {s.name: Tracked(list(s.meta["params"]), s.meta.get("own")) for s in repo.index.stages
                if (s.meta or {}).get("params")}


def own_view(params: dict[str, Any], name: str, own: str | None) -> dict[str, Any]:
    """``params`` with the models list at dotted key ``own`` cut down to stage ``name``'s item
    (``attack@cnn``: ``attack.models`` becomes ``[cnn]``; a mapping keeps the item's entry).
    ``own=None``: ``params`` unchanged. Raises ConfigError when the item is not in the list."""
    if own is None:
        return params
    item = name.partition("@")[2]
    entries = lookup(params, own)
    if not item or item not in entries:
        raise ConfigError(f"params.yaml: '{own}' does not name '{item}' (stage {name} runs one of its entries)")
    view = copy.deepcopy(params)
    *parents, last = own.split(".")
    holder = view
    for part in parents:
        holder = holder[part]
    holder[last] = {item: entries[item]} if isinstance(entries, dict) else [item]
    return view


def digest(params: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    """``{key: value}`` of ``keys`` in ``params``, in the order given."""
    return {k: lookup(params, k) for k in keys}


def stage_digest(params: dict[str, Any], name: str, tracked: Tracked) -> dict[str, Any]:
    """The content of ``reports/params/<name>.json``: its keys' values in its own view."""
    own = {"@own": tracked.own} if tracked.own else {}
    return {**own, **digest(own_view(params, name, tracked.own), tracked.keys)}


def write_digests(params: dict[str, Any], keys: dict[str, Tracked], out: str | Path = ROOT) -> None:
    """Write ``out/<stage>.json`` for every stage of ``keys``, the folder atomically."""
    with atomic_dir(Path(out)) as tmp:
        for name, tracked in sorted(keys.items()):
            (tmp / f"{name}.json").write_text(dumps(stage_digest(params, name, tracked)))


def stage_name(script: str, args: list[str]) -> str:
    """The DVC stage a script run belongs to: ``train`` or, with an item, ``train@cnn``."""
    return Path(script).stem + (f"@{args[0]}" if args else "")


def check_current(params: dict[str, Any], name: str, out: str | Path = ROOT) -> dict[str, Any]:
    """The params stage ``name`` sees (:func:`own_view` of ``out/<name>.json``'s ``"@own"``).
    Raise ConfigError when that file exists and its values differ from them (params.yaml changed
    since the validate stage wrote it). No file: ``params`` as they are (the script runs outside
    DVC)."""
    path = Path(out) / f"{name}.json"
    if not path.is_file():
        return params
    recorded = json.loads(path.read_text())
    try:
        view = own_view(params, name, recorded.pop("@own", None))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}; run `dvc repro` (or `dvc repro validate` before `dvc repro -s ...`)") from None
    changed = sorted(k for k, v in recorded.items() if _get(view, k) != v)
    if changed:
        raise ConfigError(f"{path}: params.yaml changed since the validate stage wrote it ({', '.join(changed)}); "
                          "run `dvc repro` (or `dvc repro validate` before `dvc repro -s ...`)")
    return view


def _get(params: dict[str, Any], key: str) -> Any:
    try:
        return lookup(params, key)
    except ConfigError:
        return _MISSING
