"""Typed, validated configuration read from ``params.yaml``.

Every stage reads one section of ``params.yaml``. Size-like keys live under
``profiles.<profile>.<section>`` and are merged over the section, so that one switch
(``profile: smoke``) resizes the whole pipeline while the code stays the same.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")
PARAMS_FILE = Path("params.yaml")


class ConfigError(ValueError):
    """A value in params.yaml is missing, unknown or out of range."""


def load_params(path: str | Path = PARAMS_FILE) -> dict[str, Any]:
    """Read ``params.yaml`` and return it as a dict (error names the file on failure)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found; run from the repository root") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, found {type(data).__name__}")
    return data


def section(params: dict[str, Any], name: str) -> dict[str, Any]:
    """Return ``params[name]`` with ``params.profiles[profile][name]`` merged over it."""
    profile = params.get("profile", "default")
    profiles = params.get("profiles", {})
    if profile not in profiles:
        raise ConfigError(
            f"params.yaml: profile {profile!r} is not defined; expected one of {sorted(profiles)}"
        )
    base = dict(params.get(name) or {})
    sized = (profiles[profile] or {}).get(name) or {}
    clash = set(base) & set(sized)
    if clash:
        raise ConfigError(
            f"params.yaml: keys {sorted(clash)} are set both in '{name}' and in "
            f"'profiles.{profile}.{name}'; size-like keys belong to the profile only"
        )
    base.update(sized)
    return base


def _type_ok(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin in (list, tuple):
        args = typing.get_args(hint)
        return isinstance(value, (list, tuple)) and all(_type_ok(v, args[0]) for v in value) if args else isinstance(value, (list, tuple))
    if origin is dict:
        return isinstance(value, dict)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def from_dict(cls: type[T], data: dict[str, Any], where: str) -> T:
    """Build dataclass ``cls`` from ``data``, rejecting unknown keys and wrong types.

    ``where`` names the params.yaml section for error messages (e.g. ``"train"``).
    The dataclass may define ``validate(self)`` for range checks; it raises ConfigError.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"params.yaml: '{where}' must be a mapping, found {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"params.yaml: unknown key(s) {unknown} in '{where}'; expected some of {sorted(fields)}"
        )
    hints = typing.get_type_hints(cls)
    for key, value in data.items():
        if not _type_ok(value, hints[key]):
            raise ConfigError(
                f"params.yaml: '{where}.{key}' = {value!r} has the wrong type; expected {hints[key]}"
            )
    missing = [
        n for n, f in fields.items()
        if n not in data and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"params.yaml: '{where}' is missing required key(s) {missing}")
    obj = cls(**data)
    check = getattr(obj, "validate", None)
    if check is not None:
        check()
    return obj


def require(cond: bool, where: str, message: str) -> None:
    """Raise ConfigError naming ``where`` (a params key) unless ``cond`` holds."""
    if not cond:
        raise ConfigError(f"params.yaml: '{where}' {message}")
