"""The areas of the benchmark, in report order: the one registry that ties them to the core.

Each area is a package (``advgen.<area>``) that owns its whole slice: ``params`` (its params.yaml
sections and their cross-checks), ``claims`` (its claims and how they are judged), ``headline``
(what ``dvc metrics diff`` shows of its stages) and ``report`` (its sections and figures). The
core (:mod:`advgen.config`, :mod:`advgen.schema`, :mod:`advgen.claims`, :mod:`advgen.report`,
:mod:`advgen.headline`) imports no area; what needs every area (the ``validate`` and ``report``
stages, ``advgen claims``) imports this module. Adding an area: its folder, its line in
:data:`AREAS` and in :func:`report_parts`, its stages in dvc.yaml.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

from . import schema
from .attacks import claims as attacks_claims
from .attacks import params as attacks_params
from .backdoors import claims as backdoors_claims
from .backdoors import params as backdoors_params
from .claims import Claims
from .defenses import claims as defenses_claims
from .defenses import params as defenses_params
from .generative import claims as generative_claims
from .generative import params as generative_params
from .scrape import claims as scrape_claims
from .scrape import params as scrape_params
from .seeds import claims as seeds_claims
from .seeds import params as seeds_params


@dataclass(frozen=True)
class Area:
    """One area: its name, its params module and its claims."""

    name: str
    params: ModuleType  # SECTIONS: {section: dataclass}; check(cfgs): cross-section rules; PRODUCES, ENTRIES (optional)
    claims: Claims


AREAS: tuple[Area, ...] = (
    Area("attacks", attacks_params, attacks_claims.CLAIMS),
    Area("defenses", defenses_params, defenses_claims.CLAIMS),
    Area("backdoors", backdoors_params, backdoors_claims.CLAIMS),
    Area("scrape", scrape_params, scrape_claims.CLAIMS),
    Area("generative", generative_params, generative_claims.CLAIMS),
    Area("seeds", seeds_params, seeds_claims.CLAIMS),
)


def report_parts() -> list[ModuleType]:
    """Every area's report module (``SECTIONS``, ``FIGURES``, ``CLAIM_SECTIONS``), in
    :data:`AREAS` order. Imported here rather than at the top: the report modules import
    plotting and torch, and the ``validate`` stage, which runs on every ``dvc repro``, imports
    this module for the params alone."""
    from .attacks import report as attacks
    from .backdoors import report as backdoors
    from .defenses import report as defenses
    from .generative import report as generative
    from .scrape import report as scrape
    from .seeds import report as seeds

    parts = {"attacks": attacks, "defenses": defenses, "backdoors": backdoors, "scrape": scrape,
             "generative": generative, "seeds": seeds}
    return [parts[a.name] for a in AREAS]


def claim_registries() -> list[Claims]:
    """Every area's claims, in table order (C1-C8, C9, C9a, C9b, C10, C10a, C11-C18)."""
    return [a.claims for a in AREAS]


def sections() -> dict[str, type]:
    """Every section of params.yaml (name -> dataclass): the base ones, then each area's."""
    out = dict(schema.SECTIONS)
    for a in AREAS:
        out.update(a.params.SECTIONS)
    return out


def validate_params(params: dict[str, Any]) -> list[str]:
    """Check every key of params.yaml against every area's schema and cross-checks
    (see :func:`advgen.schema.validate_params`); returns the profiles checked."""
    producers = [schema.PRODUCES, schema.IMPORTS] + [a.params.PRODUCES for a in AREAS if hasattr(a.params, "PRODUCES")]
    entries = dict(schema.ENTRIES)
    for a in AREAS:
        entries.update(getattr(a.params, "ENTRIES", {}))
    return schema.validate_params(params, sections(), [a.params.check for a in AREAS], producers, entries)
