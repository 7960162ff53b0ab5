"""The claims framework: how a testable claim of the lecture is registered, judged and tabled.

Each area owns its claims (``advgen.<area>.claims``: the statement, the evaluator and its
criterion, fixed there before any run) in a :class:`Claims` registry; :mod:`advgen.areas`
lists the registries in report order. An evaluator reads the collected metrics and returns a
:class:`Finding`, or None while its experiment has not run (``not_measured``). When the run
lacks a coordinate the claim needs (an ε, a model), the evaluator raises :class:`MissingRun`
and the table says which one, instead of a silent ``not_measured``.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
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
    seeds: str = ""  # the per-seed figures and the seed rule's outcome (:func:`over_seeds`), when replicated

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
            "criterion": found.criterion, "seeds": found.seeds, "verdict": found.verdict}


def claims_table(collected: dict, registries: Iterable[Claims]) -> list[dict]:
    """One row per claim of ``registries``, in order: ``{id, claim, experiment, measured, criterion, seeds,
    verdict}`` (``seeds`` is empty for a claim judged on one run)."""
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


# ---------------------------------------------------------------------------------------------
# Verdicts over seeds (issue 23)

#: How a replicated claim is judged over its seeds. Fixed before the seed runs; an evaluator that
#: has per-seed figures gives this verdict instead of its single-run one.
SEED_RULE = ("over the seeds: each figure of the criterion holds for its mean with the whole two-sided 95% "
             "t-interval on the passing side, AND the per-seed criterion holds for at least 2 of every 3 seeds")


@dataclass(frozen=True)
class SeedFigure:
    """One figure of a criterion, per seed: it passes at ``>= threshold`` (``higher``) or ``<= threshold``."""

    label: str
    values: tuple[float, ...]
    threshold: float
    higher: bool = True
    scale: float = 100.0  # shown in points (a fraction x 100) unless told otherwise
    unit: str = "%"


@dataclass(frozen=True)
class SeedJudgement:
    """:func:`over_seeds`'s outcome: the verdict and the text of the claims table's seeds cell."""

    verdict: str
    text: str


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """Mean and two-sided Student-t interval of ``values`` (at least 2); (mean, low, high)."""
    from scipy.stats import t

    n = len(values)
    if n < 2:
        raise ValueError(f"a t-interval needs at least 2 values, found {n}")
    mean = sum(values) / n
    sd = (sum((v - mean) ** 2 for v in values) / (n - 1)) ** 0.5
    half = float(t.ppf(0.5 + level / 2, n - 1)) * sd / n ** 0.5
    return mean, mean - half, mean + half


def needed(n: int) -> int:
    """Seeds whose own criterion must hold: at least 2 of every 3 (ceil(2n / 3))."""
    return -(-2 * n // 3)


def over_seeds(seeds: Sequence[int], figures: Sequence[SeedFigure], per_seed_ok: Sequence[bool]) -> SeedJudgement:
    """Judge a replicated claim by :data:`SEED_RULE`. ``figures``: the criterion's figures, one
    value per seed in ``seeds`` order; ``per_seed_ok``: whether the whole criterion held on each seed."""
    n = len(seeds)
    if n < 2 or len(per_seed_ok) != n or any(len(f.values) != n for f in figures):
        raise ValueError(f"over_seeds needs >= 2 seeds and one value per seed; seeds {list(seeds)}, "
                         f"{[len(f.values) for f in figures]} values, {len(per_seed_ok)} outcomes")
    parts, mean_ok = [], True
    for f in figures:
        mean, lo, hi = t_interval(f.values)
        ok = lo >= f.threshold if f.higher else hi <= f.threshold
        mean_ok &= ok
        per = " / ".join(f"{f.scale * v:.1f}" for v in f.values)
        side = ">=" if f.higher else "<="
        parts.append(f"{f.label} {per}{f.unit}: mean {f.scale * mean:.1f} [{f.scale * lo:.1f}, {f.scale * hi:.1f}] "
                     f"({'on' if ok else 'not all on'} the {side} {f.scale * f.threshold:g} side)")
    held = sum(bool(x) for x in per_seed_ok)
    ok = mean_ok and held >= needed(n)
    text = (f"seeds {' / '.join(map(str, seeds))}: " + "; ".join(parts)
            + f"; criterion holds on {held} of {n} seeds (needs {needed(n)})")
    return SeedJudgement(verdict(ok), text)


def seed_runs(collected: dict, prefix: str) -> dict[int, dict]:
    """seed -> metrics of the replicate stages under ``prefix`` (``replicate/c9``), in seed order."""
    out = {}
    for key, v in collected.items():
        head, _, seed = key.rpartition("/")
        if head == prefix and seed.isdigit() and "metrics" in v:
            out[int(seed)] = v["metrics"]
    return dict(sorted(out.items()))
