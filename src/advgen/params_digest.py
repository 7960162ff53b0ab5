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
"""
from __future__ import annotations

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


def stage_keys(root: str | Path = ".") -> dict[str, list[str]]:
    """``{stage name: [params keys]}`` for every stage of ``root/dvc.yaml`` whose ``meta`` names
    params, resolved by DVC itself (foreach items, ``${profile}``)."""
    from dvc.repo import Repo  # imported here: DVC's import costs about a second

    with Repo(str(root), uninitialized=True) as repo:  # also outside a DVC repo (tests)
        return {s.name: list((s.meta or {}).get("params") or []) for s in repo.index.stages
                if (s.meta or {}).get("params")}


def digest(params: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    """``{key: value}`` of ``keys`` in ``params``, in the order given."""
    return {k: lookup(params, k) for k in keys}


def write_digests(params: dict[str, Any], keys: dict[str, list[str]], out: str | Path = ROOT) -> None:
    """Write ``out/<stage>.json`` for every stage of ``keys``, the folder atomically."""
    with atomic_dir(Path(out)) as tmp:
        for name, ks in sorted(keys.items()):
            (tmp / f"{name}.json").write_text(dumps(digest(params, ks)))


def stage_name(script: str, args: list[str]) -> str:
    """The DVC stage a script run belongs to: ``train`` or, with an item, ``train@cnn``."""
    return Path(script).stem + (f"@{args[0]}" if args else "")


def check_current(params: dict[str, Any], name: str, out: str | Path = ROOT) -> None:
    """Raise ConfigError when ``out/<name>.json`` exists and its values differ from ``params``
    (params.yaml changed since the validate stage wrote it). No file: nothing to check (the
    script runs outside DVC)."""
    path = Path(out) / f"{name}.json"
    if not path.is_file():
        return
    import json

    recorded = json.loads(path.read_text())
    changed = sorted(k for k, v in recorded.items() if _get(params, k) != v)
    if changed:
        raise ConfigError(f"{path}: params.yaml changed since the validate stage wrote it ({', '.join(changed)}); "
                          "run `dvc repro` (or `dvc repro validate` before `dvc repro -s ...`)")


def _get(params: dict[str, Any], key: str) -> Any:
    try:
        return lookup(params, key)
    except ConfigError:
        return _MISSING
