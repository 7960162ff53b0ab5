"""The schema framework of ``params.yaml``: the top-level keys, the base sections every area
builds on (``ingest``, ``train``) and :func:`validate_params`, which checks every key of the
file against every section's dataclass.

Each area owns its sections (``advgen.<area>.params``: ``SECTIONS`` and ``check``, its
cross-section rules); :mod:`advgen.areas` hands them to :func:`validate_params`, so this
module imports no area. Fields marked ``field(metadata=PROFILE)`` (:func:`sized`) are
size-like: they live under ``profiles.<profile>.<section>``. Range checks call
:func:`advgen.config.require` with field names; errors come out with the full key
(``profiles.smoke.train.epochs``).

No torch here (the validation stage runs on every ``dvc repro`` and must stay cheap), so the
registries' names are repeated; ``tests/test_schema.py`` checks that they match
:data:`advgen.models.ARCHS` and :data:`advgen.data.DATASETS`.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from .config import PROFILE, ConfigError, active_profile, from_dict, load_section, require

ARCH_KWARGS = {"cnn": ("width", "hidden", "dropout"), "logreg": (), "mlp": ("hidden",), "resnet": ("width",)}
ARCH_NAMES = tuple(sorted(ARCH_KWARGS))
DATASET_NAMES = ("cifar10", "digits", "fashion-mnist", "mnist")


MODELS = {"models": True}  # field metadata: names model(s) that some stage produces


def sized() -> Any:
    """A size-like field: its value lives under ``profiles.<profile>.<section>``."""
    return field(metadata=PROFILE)


def model_field(**kw: Any) -> Any:
    """A field that names model(s) some stage produces (checked by :func:`validate_params`)."""
    return field(metadata=MODELS, **kw)


@dataclass
class Common:
    """Top-level keys of params.yaml that every stage sees."""

    seed: int
    device: str
    profile: str

    def validate(self) -> None:
        require(self.seed >= 0, "seed", f"must be >= 0, found {self.seed}")
        require(self.device == "auto" or self.device in ("cpu", "cuda") or self.device.startswith("cuda:"),
                "device", f"must be auto, cpu, cuda or cuda:N, found {self.device!r}")


def load_common(params: dict[str, Any]) -> Common:
    keys = ("seed", "device", "profile")
    cfg = from_dict(Common, {k: params[k] for k in keys if k in params}, "<top level>", origins={k: k for k in keys})
    active_profile(params)
    return cfg


@dataclass
class IngestConfig:
    dataset: str
    mirrors: list[str] = field(default_factory=list)  # empty: the dataset's own list
    timeout_s: float = 30.0
    retries: int = 3
    backoff_s: float = 1.0
    max_bytes: int = 200_000_000

    def validate(self) -> None:
        require(self.dataset in DATASET_NAMES, "dataset", f"must be one of {list(DATASET_NAMES)}, found {self.dataset!r}")
        require(self.timeout_s > 0, "timeout_s", f"must be > 0, found {self.timeout_s}")
        require(self.retries >= 1, "retries", f"must be >= 1, found {self.retries}")
        require(self.backoff_s >= 0, "backoff_s", f"must be >= 0, found {self.backoff_s}")
        require(self.max_bytes > 0, "max_bytes", f"must be > 0, found {self.max_bytes}")


@dataclass
class ModelSpec:
    """One entry of ``train.models``."""

    arch: str
    data: str  # "prepared" (the ingested dataset), "poisoned/<name>" (poison.configs) or "scraped/<name>" (scrape)
    arch_kwargs: dict = field(default_factory=dict)
    lr: float | None = None  # overrides train.lr
    resolution: int | None = None  # train on area-downsampled images (C4)
    seed: int | None = None  # overrides the top-level seed (a second model of the same arch)
    epochs: int | None = None  # fewer epochs than the profile's train.epochs (which caps it)

    def validate(self) -> None:
        require(self.arch in ARCH_NAMES, "arch", f"must be one of {list(ARCH_NAMES)}, found {self.arch!r}")
        require(self.data == "prepared" or self.data.startswith(("poisoned/", "scraped/")), "data",
                f"must be 'prepared', 'poisoned/<name of a poison.configs entry>' or 'scraped/<purchase>_<policy>', "
                f"found {self.data!r}")
        require(self.epochs is None or self.epochs >= 1, "epochs", f"must be >= 1, found {self.epochs}")
        unknown = sorted(set(self.arch_kwargs) - set(ARCH_KWARGS[self.arch]))
        require(not unknown, "arch_kwargs", f"has unknown key(s) {unknown}; {self.arch} accepts {list(ARCH_KWARGS[self.arch])}")
        require(self.resolution is None or self.resolution >= 2, "resolution", f"must be >= 2, found {self.resolution}")
        require(self.lr is None or self.lr > 0, "lr", f"must be > 0, found {self.lr}")
        require(self.seed is None or self.seed >= 0, "seed", f"must be >= 0, found {self.seed}")


@dataclass
class TrainConfig:
    models: dict
    lr: float
    weight_decay: float
    nproc: int
    epochs: int = sized()
    batch_size: int = sized()
    n_train: int = sized()  # 0 = all
    n_test: int = sized()  # 0 = all

    def validate(self) -> None:
        require(len(self.models) >= 1, "models", "must name at least one model")
        require(self.lr > 0, "lr", f"must be > 0, found {self.lr}")
        require(self.weight_decay >= 0, "weight_decay", f"must be >= 0, found {self.weight_decay}")
        require(self.nproc >= 1, "nproc", f"must be >= 1, found {self.nproc}")
        require(self.epochs >= 1, "epochs", f"must be >= 1, found {self.epochs}")
        require(self.batch_size >= self.nproc, "batch_size", f"must be >= train.nproc ({self.nproc}), found {self.batch_size}")
        require(self.n_train >= 0, "n_train", f"must be >= 0 (0 = all), found {self.n_train}")
        require(self.n_test >= 0, "n_test", f"must be >= 0 (0 = all), found {self.n_test}")

    def spec(self, name: str) -> ModelSpec:
        """The validated entry ``train.models.<name>``."""
        if name not in self.models:
            raise ConfigError(f"params.yaml: model {name!r} is not in train.models {sorted(self.models)}")
        return from_dict(ModelSpec, self.models[name], f"train.models.{name}")

    def epochs_of(self, name: str) -> int:
        """Epochs of model ``name``: its own ``epochs``, capped by the profile's (smoke: 1)."""
        own = self.spec(name).epochs
        return self.epochs if own is None else min(own, self.epochs)



@dataclass
class ImportSpec:
    """One entry of ``imports.models``: a classifier trained outside the pipeline (:mod:`advgen.zoo`)."""

    path: str  # a folder in the repository holding model.safetensors and model.json

    def validate(self) -> None:
        parts = PurePosixPath(self.path).parts
        inside = bool(parts) and not self.path.startswith(("/", "~", "\\")) and not {".", ".."} & set(parts)
        require(inside and ":" not in parts[0], "path",
                f"must be a folder inside the repository (a relative path without '.' or '..'), found {self.path!r}")


@dataclass
class ImportConfig:
    models: dict = field(default_factory=dict)  # name -> ImportSpec

    def spec(self, name: str) -> ImportSpec:
        """The validated entry ``imports.models.<name>``."""
        if name not in self.models:
            raise ConfigError(f"params.yaml: model {name!r} is not in imports.models {sorted(self.models)}")
        return from_dict(ImportSpec, self.models[name], f"imports.models.{name}")


#: The base sections, checked with every area's.
SECTIONS: dict[str, type] = {"ingest": IngestConfig, "train": TrainConfig, "imports": ImportConfig}
#: (section, key) whose entries are the models the train stage produces
PRODUCES = ("train", "models")
#: the same for the import_model stage (models trained outside the pipeline)
IMPORTS = ("imports", "models")
#: section -> its field whose entries ``spec(name)`` validates one by one (areas add theirs: ``ENTRIES``)
ENTRIES = {"train": "models", "imports": "models"}


def dataset(params: dict[str, Any]) -> str:
    """The validated ``ingest.dataset``."""
    return load_section(IngestConfig, params, "ingest").dataset


def section_keys(params: dict[str, Any], section: str, key: str) -> list[str]:
    """The sorted keys of ``params[section][key]`` (a mapping), or [] when absent."""
    value = (params.get(section) or {}).get(key) or {}
    return sorted(value) if isinstance(value, dict) else []


def trained_names(params: dict[str, Any]) -> list[str]:
    """The models of the ``train`` stage (the keys of ``train.models``)."""
    return section_keys(params, *PRODUCES)


def model_fields(sections: dict[str, type]) -> list[tuple[str, str]]:
    """(section, field) of every field of ``sections`` that names models (:func:`model_field`)."""
    return [(name, f.name) for name, cls in sections.items() for f in dataclasses.fields(cls)
            if f.metadata.get("models")]


def check_models(params: dict[str, Any], sections: dict[str, type], producers: Iterable[tuple[str, str]]) -> None:
    """Every field that names models refers to models some stage produces (the entries of
    ``producers``' (section, key) mappings), each produced once and named once."""
    owners: dict[str, list[str]] = {}
    for section, key in producers:
        for n in section_keys(params, section, key):
            owners.setdefault(n, []).append(f"{section}.{key}")
    both = sorted(n for n, o in owners.items() if len(o) > 1)
    if both:
        clashes = {}
        for n in both:  # grouped by the producers they clash between
            clashes.setdefault(" and ".join(f"'{o}'" for o in owners[n]), []).append(n)
        raise ConfigError("params.yaml: " + "; ".join(f"{ns} named in both {where}" for where, ns in clashes.items())
                          + "; a model has one producer")
    known = sorted(owners)
    for section, key in model_fields(sections):
        value = (params.get(section) or {}).get(key)
        names = [value] if isinstance(value, str) else value if isinstance(value, list) else []
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ConfigError(f"params.yaml: '{section}.{key}' names {unknown}, which are not models; expected some of "
                              f"{' and '.join(f'{s}.{k}' for s, k in producers)} {known}")
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ConfigError(f"params.yaml: '{section}.{key}' names {twice} more than once")


Check = Callable[[dict[str, Any]], None]


def validate_params(params: dict[str, Any], sections: dict[str, type], checks: Iterable[Check] = (),
                    producers: Iterable[tuple[str, str]] = (PRODUCES,),
                    entries: dict[str, str] | None = None) -> list[str]:
    """Check every key of params.yaml against ``sections`` (name -> dataclass), for every profile.

    ``checks`` are the cross-section rules, each called with every section loaded
    (``{name: config}``) once all load; ``producers`` the (section, key) mappings whose entries
    are models; ``entries`` the sections whose mapping field is checked entry by entry
    (default: :data:`ENTRIES`). Returns the profiles checked; raises ConfigError listing every problem found,
    each with its full key. Unknown keys anywhere (a typo such as ``train.lrr`` or
    ``profiles.smoke.train.epoch``) are errors even though no stage reads them.
    """
    problems: list[str] = []
    checks, producers = list(checks), list(producers)

    def attempt(check) -> Any:
        try:
            return check()
        except ConfigError as exc:
            if str(exc) not in problems:
                problems.append(str(exc))
            return None

    top_level = ("profile", "seed", "device", *sections, "profiles")
    unknown = sorted(set(params) - set(top_level))
    if unknown:
        problems.append(f"params.yaml: unknown top-level key {', '.join(map(repr, unknown))}; expected some of "
                        f"{list(top_level)}")
    attempt(lambda: load_common(params))
    profiles = params.get("profiles")
    if not isinstance(profiles, dict) or not profiles:
        problems.append("params.yaml: 'profiles' must map profile names to their size-like keys")
        profiles = {}
    for profile, body in profiles.items():
        if not isinstance(body, dict):
            problems.append(f"params.yaml: 'profiles.{profile}' must be a mapping, found {type(body).__name__}")
            continue
        extra = sorted(set(body) - set(sections))
        if extra:
            problems.append(f"params.yaml: unknown key {', '.join(repr(f'profiles.{profile}.{k}') for k in extra)}; "
                            f"a profile holds some of {list(sections)}")
        cfgs = {name: attempt(lambda n=name, c=cls: load_section(c, params, n, profile))
                for name, cls in sections.items()}
        for name, key in (ENTRIES if entries is None else entries).items():
            if cfgs.get(name) is not None:
                for entry in sorted(getattr(cfgs[name], key)):
                    attempt(lambda c=cfgs[name], e=entry: c.spec(e))
        if all(c is not None for c in cfgs.values()):
            attempt(lambda: [check(cfgs) for check in checks])
    attempt(lambda: check_models(params, sections, producers))
    if problems:
        head = "params.yaml is not valid" if len(problems) == 1 else f"params.yaml has {len(problems)} problems"
        raise ConfigError(head + ":\n" + "\n".join(f"  - {p.removeprefix('params.yaml: ')}" for p in problems))
    return list(profiles)
