"""The claims framework: how a testable claim of the lecture is registered, judged and tabled.

Each area owns its claims (``advgen.<area>.claims``: the statement, the evaluator and its
criterion, fixed there before any run) in a :class:`Claims` registry; :mod:`advgen.areas`
lists the registries in report order. An evaluator reads the collected metrics and returns a
:class:`Finding`, or None while its experiment has not run (``not_measured``). When the run
lacks a coordinate the claim needs (an ε, a model), the evaluator raises :class:`MissingRun`
and the table says which one, instead of a silent ``not_measured``.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar

VERDICTS = ("supported", "not_supported", "not_measured")
T = TypeVar("T")


@dataclass(frozen=True)
class Finding:
    """One evaluated claim; ``measured`` is a short human-readable figure."""

    experiment: str
    measured: str
    criterion: str
    verdict: str

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict {self.verdict!r} is not one of {VERDICTS}")


class MissingRun(LookupError):
    """The run lacks what a claim needs, e.g. ``C5 needs eps = 0.05 in attack.eps_linf``."""


Evaluator = Callable[[dict], "Finding | None"]


class Claims:
    """An area's claims, in table order: ``{id: statement}`` and one evaluator each."""

    def __init__(self, statements: dict[str, str]):
        self.statements = dict(statements)
        self.evaluators: dict[str, Evaluator] = {}

    def evaluator(self, claim_id: str) -> Callable[[Evaluator], Evaluator]:
        """Register the evaluator of ``claim_id`` (one of this registry's statements)."""
        if claim_id not in self.statements:
            raise KeyError(f"unknown claim {claim_id!r}; expected one of {list(self.statements)}")

        def wrap(fn: Evaluator) -> Evaluator:
            self.evaluators[claim_id] = fn
            return fn
        return wrap


def metrics(collected: dict, key: str) -> dict | None:
    """The detailed metrics collected under ``key`` (e.g. ``robustness/cnn``), or None."""
    return collected.get(key, {}).get("metrics")


def verdict(ok: bool) -> str:
    return "supported" if ok else "not_supported"


def at(table: Mapping[str, T], value: float, need: str) -> T:
    """The entry of ``table`` (keyed by numbers written as text, e.g. ``{"0.05": ...}``) whose key
    equals ``value`` as a number; raises :class:`MissingRun` with ``need`` and the values the
    run has when there is none. Selecting by value keeps ``0.05`` and ``"5e-2"`` the same."""
    for key, entry in table.items():
        try:
            if float(key) == float(value):
                return entry
        except ValueError:
            continue
    have = ", ".join(sorted(table, key=lambda k: float(k) if _number(k) else float("inf"))) or "none"
    raise MissingRun(f"{need} (this run has {have})")


def at_or(table: Mapping[str, T], value: float, default: T | None = None) -> T | None:
    """As :func:`at`, but ``default`` when the run lacks ``value`` (for tables that show what ran)."""
    try:
        return at(table, value, "")
    except MissingRun:
        return default


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _row(cid: str, text: str, found: Finding) -> dict:
    return {"id": cid, "claim": text, "experiment": found.experiment, "measured": found.measured,
            "criterion": found.criterion, "verdict": found.verdict}


def claims_table(collected: dict, registries: Iterable[Claims]) -> list[dict]:
    """One row per claim of ``registries``, in order: ``{id, claim, experiment, measured, criterion, verdict}``."""
    rows = []
    for reg in registries:
        for cid, text in reg.statements.items():
            try:
                found = reg.evaluators[cid](collected) if cid in reg.evaluators else None
            except MissingRun as exc:
                found = Finding(experiment="(not run with what the claim needs)", measured=f"{cid} needs {exc}",
                                criterion="", verdict="not_measured")
            if found is None:
                found = Finding(experiment="(not implemented yet)", measured="", criterion="", verdict="not_measured")
            rows.append(_row(cid, text, found))
    return rows
