"""Typed, validated configuration read from ``params.yaml``.

Every stage reads one section of ``params.yaml`` into a dataclass (the schemas live in each
area's ``params.py`` and :mod:`advgen.schema`). Size-like keys, the fields marked ``field(metadata=PROFILE)``,
live under ``profiles.<profile>.<section>`` and are merged over the section, so one switch
(``profile: smoke``) resizes the whole pipeline while the code stays the same.

Every error names the full key as written in params.yaml (``profiles.smoke.train.epochs``,
``train.models.foo.arch``), never a pattern. This module imports no torch, so the validation
stage that runs on every ``dvc repro`` stays cheap.
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
PROFILE = {"profile": True}  # field metadata: the key lives under profiles.<profile>.<section>


class ConfigError(ValueError):
    """A value in params.yaml is missing, unknown or out of range.

    ``keys`` holds the offending field names relative to the dataclass being validated, so
    that :func:`from_dict` can rewrite them into full params.yaml paths.
    """

    def __init__(self, message: str, keys: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.keys = keys


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


def active_profile(params: dict[str, Any]) -> str:
    """The name in ``profile:``, checked against ``profiles``."""
    profile = params.get("profile", "default")
    profiles = params.get("profiles") or {}
    if not isinstance(profiles, dict) or profile not in profiles:
        raise ConfigError(f"params.yaml: 'profile' = {profile!r} is not defined; expected one of "
                          f"{sorted(profiles) if isinstance(profiles, dict) else []} (the keys of 'profiles')")
    return profile


def section_with_origins(params: dict[str, Any], name: str,
                         profile: str | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    """``params[name]`` with ``profiles.<profile>.<name>`` merged over it, and for each key the
    full params.yaml path it came from. ``profile`` defaults to the active one."""
    profile = active_profile(params) if profile is None else profile
    base = params.get(name) or {}
    sized = (params["profiles"][profile] or {}).get(name) or {}
    for where, part in ((name, base), (f"profiles.{profile}.{name}", sized)):
        if not isinstance(part, dict):
            raise ConfigError(f"params.yaml: '{where}' must be a mapping, found {type(part).__name__}")
    clash = sorted(set(base) & set(sized))
    if clash:
        raise ConfigError(
            f"params.yaml: {', '.join(repr(f'{name}.{k}') for k in clash)} also set in 'profiles.{profile}.{name}'; "
            "size-like keys belong to the profile only")
    origins = {k: f"{name}.{k}" for k in base} | {k: f"profiles.{profile}.{name}.{k}" for k in sized}
    return {**base, **sized}, origins


def section(params: dict[str, Any], name: str) -> dict[str, Any]:
    """Return ``params[name]`` with ``params.profiles[profile][name]`` merged over it."""
    return section_with_origins(params, name)[0]


def load_section(cls: type[T], params: dict[str, Any], name: str, profile: str | None = None) -> T:
    """Build dataclass ``cls`` from section ``name`` merged with its profile; errors name the
    full key (``profiles.smoke.train.epochs``). Size-like fields (``metadata=PROFILE``) must
    come from the profile, every other field from the section itself."""
    profile = active_profile(params) if profile is None else profile
    fields = dataclasses.fields(cls)
    names = [f.name for f in fields]
    sized = {f.name for f in fields if f.metadata.get("profile")}
    base, extra = params.get(name) or {}, (params["profiles"][profile] or {}).get(name) or {}
    # A misplaced key in the section itself reads the same for every profile (validation
    # checks each profile and reports a problem once); one in a profile names that profile.
    if isinstance(base, dict):
        for key in sorted(set(base) & sized):
            raise ConfigError(f"params.yaml: '{name}.{key}' is size-like: remove it from '{name}' and set it in "
                              f"each profile, as 'profiles.<profile>.{name}.{key}'")
    if isinstance(extra, dict):
        for key in sorted(set(extra) - sized):
            where = f"set it in '{name}.{key}'" if key not in (base or {}) else f"it is set in '{name}.{key}'"
            raise ConfigError(f"params.yaml: 'profiles.{profile}.{name}.{key}' is not a size-like key: "
                              f"remove it from the profile ({where})" if key in names else
                              f"params.yaml: unknown key 'profiles.{profile}.{name}.{key}'; 'profiles.{profile}.{name}' "
                              + (f"accepts the size-like keys {sorted(sized)}" if sized else
                                 f"takes no keys ('{name}' has no size-like key)"))
    if isinstance(base, dict):
        unknown = sorted(set(base) - set(names))
        if unknown:
            raise ConfigError(f"params.yaml: unknown key {', '.join(repr(f'{name}.{k}') for k in unknown)}; '{name}' "
                              f"accepts {sorted(set(names) - sized)}"
                              + (f" (its size-like keys {sorted(sized)} go in each profile, "
                                 f"'profiles.<profile>.{name}')" if sized else ""))
    data, origins = section_with_origins(params, name, profile)
    defaults = {k: f"profiles.{profile}.{name}.{k}" for k in sized}
    return from_dict(cls, data, name, {**defaults, **origins})


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


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) if typing.get_origin(hint) is None else str(hint).replace("typing.", "")


def from_dict(cls: type[T], data: dict[str, Any], where: str, origins: dict[str, str] | None = None) -> T:
    """Build dataclass ``cls`` from ``data``, rejecting unknown keys and wrong types.

    ``where`` names the params.yaml section (e.g. ``"train"``, ``"train.models.cnn"``);
    ``origins`` maps a field to its full path where that differs from ``<where>.<field>``
    (keys merged in from a profile). The dataclass may define ``validate(self)`` for range
    checks; it calls :func:`require` with field names, which are reported as full paths.
    """
    origins = origins or {}

    def path(key: str) -> str:
        return origins.get(key, f"{where}.{key}")

    if not isinstance(data, dict):
        raise ConfigError(f"params.yaml: '{where}' must be a mapping, found {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"params.yaml: unknown key {', '.join(repr(path(k)) for k in unknown)}; "
                          f"'{where}' accepts {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    for key, value in data.items():
        if not _type_ok(value, hints[key]):
            raise ConfigError(f"params.yaml: '{path(key)}' = {value!r} has the wrong type; "
                              f"expected {_type_name(hints[key])}")
    missing = [n for n, f in fields.items() if n not in data
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"params.yaml: missing key {', '.join(repr(path(k)) for k in missing)}")
    obj = cls(**data)
    check = getattr(obj, "validate", None)
    if check is not None:
        try:
            check()
        except ConfigError as exc:
            if not exc.keys:
                raise
            raise ConfigError(f"params.yaml: {' / '.join(repr(path(k)) for k in exc.keys)} {exc}") from None
    return obj


def require(cond: bool, keys: str | tuple[str, ...], message: str) -> None:
    """Raise ConfigError about field(s) ``keys`` of the dataclass being validated unless ``cond``.

    :func:`from_dict` turns the field names into full params.yaml paths.
    """
    if not cond:
        raise ConfigError(message, keys=(keys,) if isinstance(keys, str) else tuple(keys))
