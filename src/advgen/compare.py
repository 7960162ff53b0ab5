"""``advgen compare``: the headline metrics of several revisions side by side.

Every pipeline stage declares one small JSON file of scalars as DVC ``metrics``
(``reports/headline/<stage>.json``). This module asks DVC for those metrics at several
revisions (commits, branches, tags, experiments, the workspace) and prints them as one table:
one row per metric, one column per revision, plus a ``change`` column when there are exactly
two. It reads whatever metrics DVC reports and does not depend on the list of files.

The data come from one ``dvc exp show --json -n 1 --rev <sha> ...`` call, which returns the
metrics of every requested commit, of the workspace, and of the experiments derived from each
commit (``dvc metrics show`` has no ``--rev``, and ``dvc metrics diff`` takes only two). The
pieces, each usable on its own:

- :func:`resolve_revision`: a name (``HEAD~1``, a branch, a tag, a sha, an experiment name,
  ``workspace``) to what ``dvc exp show`` keys its entries by, with git;
- :func:`run_dvc`: run dvc from this interpreter's environment, a failure as :class:`CompareError`;
- :func:`parse_exp_show`: dvc's JSON to ``{rev: Revision}`` whose ``metrics`` are ``{metric: value}``;
- :func:`collect`: the above, for the revisions of a command line: ``([(label, {metric: value})], notes)``;
- :func:`build_table`: the rows, hiding those that are the same in every column;
- :func:`render_text` and :func:`render_markdown`.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .io import venv_env

WORKSPACE = "workspace"
HEADLINE_PREFIX = "reports/headline/"
METRIC_SUFFIXES = (".json", ".yaml", ".yml", ".toml")
MISSING_CELL = "—"
SIGNIFICANT = 4


class _Missing:
    """The value of a metric a revision does not have (shown as "—")."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


class CompareError(Exception):
    """A one-line, user-facing failure (unknown revision, dvc error); the CLI exits 2 with it."""


# --------------------------------------------------------------------------- dvc JSON


@dataclass
class Revision:
    """One entry of ``dvc exp show --json``: a commit, the workspace or an experiment."""

    rev: str  # full sha, or "workspace"
    name: str | None = None  # branch/tag name of a commit, name of an experiment
    baseline: str | None = None  # for an experiment: the sha of the commit it derives from
    timestamp: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)  # "<file>: <key>" -> value
    error: str | None = None  # dvc could not read this revision at all
    file_errors: dict[str, str] = field(default_factory=dict)  # metrics file -> why it is unreadable


def metric_file_label(path: str) -> str:
    """``reports/headline/train/cnn.json`` -> ``train/cnn``; other paths lose only their suffix."""
    path = path.replace(os.sep, "/").removeprefix("./").removeprefix(HEADLINE_PREFIX)
    for suffix in METRIC_SUFFIXES:
        if path.endswith(suffix):
            return path[: -len(suffix)]
    return path


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts to ``{"a.b": value}``; lists and scalars are values. ``{}`` for an empty dict."""
    if not isinstance(data, dict):
        return {prefix: data}
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            out.update(flatten(value, name))
        else:
            out[name] = value
    return out


def _error_message(error: Any) -> str:
    if isinstance(error, dict):
        return str(error.get("msg") or error.get("type") or error)
    return str(error)


def parse_metrics(metrics: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, str]]:
    """dvc's ``{"<path>": {"data": {...}} | {"error": {...}}}`` to ``({"<file>: <key>": value}, {path: error})``.

    A file that does not exist at a revision (a stage added later) is no error: its metrics are
    simply missing. Any other unreadable file is reported in the second dict.
    """
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for path, entry in (metrics or {}).items():
        entry = entry or {}
        if "error" in entry and "data" not in entry:
            err = entry["error"]
            if not (isinstance(err, dict) and err.get("type") == "FileNotFoundError"):
                errors[path] = _error_message(err)
            continue
        label = metric_file_label(path)
        data = entry.get("data")
        if isinstance(data, dict):
            for key, value in flatten(data).items():
                values[f"{label}: {key}"] = value
        elif data is not None:
            values[label] = data
    return values, errors


def _revision(entry: dict[str, Any], baseline: str | None) -> Revision:
    data = entry.get("data") or {}
    metrics, file_errors = parse_metrics(data.get("metrics"))
    error = entry.get("error")
    if not data and not error:
        error = "no data (queued, running or failed experiment?)"
    return Revision(rev=entry["rev"], name=entry.get("name"), baseline=baseline, timestamp=data.get("timestamp"),
                    metrics=metrics, error=_error_message(error) if error else None, file_errors=file_errors)


def parse_exp_show(data: list[dict[str, Any]]) -> dict[str, Revision]:
    """``dvc exp show --json`` output to ``{rev: Revision}``, in dvc's order.

    Keys are ``"workspace"`` and the full sha of every commit and experiment; an experiment's
    ``baseline`` is the sha of the commit it was run from and its ``name`` the experiment name.
    """
    out: dict[str, Revision] = {}
    for entry in data:
        out[entry["rev"]] = _revision(entry, None)
        for exp in entry.get("experiments") or []:
            for rev_entry in exp.get("revs") or []:
                out[rev_entry["rev"]] = _revision(rev_entry, entry["rev"])
    return out


def experiments_of(revisions: dict[str, Revision], baseline: str) -> list[Revision]:
    """The experiments derived from commit ``baseline``, oldest first."""
    exps = [r for r in revisions.values() if r.baseline == baseline]
    return sorted(exps, key=lambda r: r.timestamp or "")


# --------------------------------------------------------------------------- talking to git and dvc


def dvc_command() -> list[str]:
    """The dvc installed next to this interpreter (``python -m dvc`` if there is no script)."""
    script = Path(sys.executable).with_name("dvc")
    return [str(script)] if script.exists() else [sys.executable, "-m", "dvc"]


def run_dvc(args: Sequence[str], cwd: Path | str | None = None, what: str = "") -> str:
    """Run ``dvc <args>`` in ``cwd`` with this venv first on PATH; return stdout.

    A failure raises :class:`CompareError` with dvc's last error line, prefixed by ``what``.
    """

    proc = subprocess.run([*dvc_command(), *args], cwd=cwd, env=venv_env(), capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        raise CompareError(f"{what}{_last_error_line(proc.stderr or proc.stdout)}")
    return proc.stdout


def _last_error_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("ERROR")]
    line = (errors or lines or ["dvc failed with no message"])[-1]
    return line.removeprefix("ERROR:").strip()


def _git(args: Sequence[str], cwd: Path | str | None) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)


def experiment_refs(cwd: Path | str | None = None) -> dict[str, list[tuple[str, str]]]:
    """``{experiment name: [(sha, baseline sha), ...]}`` from git's ``refs/exps/``."""
    proc = _git(["for-each-ref", "--format=%(objectname) %(refname)", "refs/exps/"], cwd)
    out: dict[str, list[tuple[str, str]]] = {}
    for line in proc.stdout.splitlines():
        sha, _, ref = line.partition(" ")
        parts = ref.split("/")  # refs/exps/ab/<38 hex>/<name>
        if len(parts) == 5 and len(parts[2]) == 2 and len(parts[3]) == 38:
            out.setdefault(parts[4], []).append((sha, parts[2] + parts[3]))
    return out


def resolve_revision(rev: str, cwd: Path | str | None = None, head: str | None = None) -> str:
    """The key of ``rev`` in :func:`parse_exp_show`'s result: ``"workspace"`` or a full sha.

    ``rev`` is anything git resolves to a commit (sha, branch, tag, ``HEAD~1``,
    ``refs/exps/...``) or the name of a ``dvc exp run`` experiment (one of ``head``'s first,
    when the name is taken on several commits). Raises :class:`CompareError` naming ``rev``.
    """
    if rev == WORKSPACE:
        return WORKSPACE
    proc = _git(["rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}"], cwd)
    if proc.returncode == 0:
        return proc.stdout.strip()
    if proc.returncode not in (0, 1):  # 128: not a git repository, and the like
        why = (proc.stderr.strip().splitlines() or ["git rev-parse failed"])[-1]
        raise CompareError(f"cannot resolve revision {rev!r}: {why}")
    matches = experiment_refs(cwd).get(rev, [])
    if head is not None and len(matches) > 1:
        matches = [m for m in matches if m[1] == head] or matches
    if len(matches) == 1:
        return matches[0][0]
    if matches:
        raise CompareError(f"experiment name {rev!r} is ambiguous: it exists on {len(matches)} commits; "
                           f"give its sha or refs/exps/... ref")
    raise CompareError(f"unknown revision or experiment {rev!r}")


def default_revisions(revs: Sequence[str], experiments: bool = False) -> list[str]:
    """The revisions a command line means: none -> HEAD vs workspace, one -> it vs workspace,
    several -> those; with ``experiments``, the given ones (default HEAD) before HEAD's experiments."""
    revs = list(revs)
    if experiments:
        return revs or ["HEAD"]
    if not revs:
        return ["HEAD", WORKSPACE]
    if len(revs) == 1:
        return revs + [WORKSPACE] if revs[0] != WORKSPACE else ["HEAD", WORKSPACE]
    return revs


def short_label(rev: str) -> str:
    """A column name: the revision as given, a full sha shortened to 7 characters."""
    if len(rev) == 40 and all(c in "0123456789abcdef" for c in rev.lower()):
        return rev[:7]
    return rev


Column = tuple[str, dict[str, Any]]


def collect(revs: Sequence[str], experiments: bool = False,
            cwd: Path | str | None = None) -> tuple[list[Column], list[str]]:
    """``([(label, {metric: value}), ...], notes)`` for the revisions of a command line.

    ``experiments`` adds one column per experiment of HEAD (``dvc exp run`` results), labelled
    with its name. ``notes`` lists metrics files dvc could not read (other than missing ones).
    Raises :class:`CompareError` naming the revision for an unknown revision or a dvc failure.
    """
    wanted = default_revisions(revs, experiments)
    head = None
    if experiments or any(r != WORKSPACE for r in wanted):
        proc = _git(["rev-parse", "--verify", "--quiet", "HEAD^{commit}"], cwd)
        head = proc.stdout.strip() if proc.returncode == 0 else None
    keys = [resolve_revision(r, cwd, head) for r in wanted]
    if experiments and head is None:
        raise CompareError("--exp: HEAD is not a commit, so it has no experiments")
    shas = list(dict.fromkeys(k for k in [*keys, *([head] if experiments else [])] if k != WORKSPACE))
    named = ", ".join(wanted)
    args = ["exp", "show", "--json", "-n", "1"] + [a for sha in shas for a in ("--rev", sha)]
    out = run_dvc(args, cwd, what=f"dvc exp show failed for {named}: ")
    try:
        revisions = parse_exp_show(json.loads(out))
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise CompareError(f"cannot parse the output of dvc exp show for {named}: {exc}") from exc

    selected: list[tuple[str, Revision | None]] = []
    for rev, key in zip(wanted, keys):
        selected.append((short_label(rev), revisions.get(key)))
    notes: list[str] = []
    if experiments:
        exps = [e for e in experiments_of(revisions, head) if e.rev not in set(keys)]
        notes += [f"experiment {e.name or short_label(e.rev)} left out: {e.error}" for e in exps if e.error]
        exps = [e for e in exps if not e.error]
        if not exps:
            raise CompareError("--exp: HEAD has no experiments (run `dvc exp run` first; `dvc exp show` lists them)")
        selected += [(e.name or short_label(e.rev), e) for e in exps]

    columns: list[Column] = []
    for label, revision in selected:
        if revision is None:
            raise CompareError(f"dvc exp show returned nothing for revision {label!r}")
        if revision.error:
            raise CompareError(f"dvc cannot read revision {label!r}: {revision.error}")
        notes += [f"{label}: cannot read {path}: {msg}" for path, msg in revision.file_errors.items()]
        columns.append((label, revision.metrics))
    return columns, notes


# --------------------------------------------------------------------------- the table


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _key(value: Any) -> tuple:
    """Equality that tells True from 1 and a missing value from null, and 1 == 1.0."""
    if value is MISSING:
        return ("missing",)
    if isinstance(value, bool):
        return ("bool", value)
    if _is_number(value):
        return ("number", "nan") if isinstance(value, float) and math.isnan(value) else ("number", value)
    return (type(value).__name__, json.dumps(value, sort_keys=True, default=str))


def _decimals(x: float, significant: int = SIGNIFICANT) -> int:
    """Decimals that show ``significant`` significant digits of ``x`` (0 for ints and big numbers)."""
    if isinstance(x, int) or not math.isfinite(x) or x == 0:
        return 0
    return min(max(0, significant - 1 - math.floor(math.log10(abs(x)))), 30)


def _fixed(x: float, decimals: int, sign: bool = False) -> str:
    text = f"{x:+.{decimals}f}" if sign else f"{x:.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "+0", "") else text


def format_number(x: float, significant: int = SIGNIFICANT) -> str:
    """A number for the table: ints as they are; floats to ``significant`` significant digits,
    without exponent notation and never rounding away the integer part, trailing zeros dropped:
    0.9123 -> 0.9123, 0.926 -> 0.926, 0.49412 -> 0.4941, 0.00012346 -> 0.0001235, 12.3456 -> 12.35;
    exponent notation only below 1e-12 and from 1e15."""
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, int) or not math.isfinite(x):
        return str(x)
    if x != 0 and not 1e-12 <= abs(x) < 1e15:
        return f"{x:.{significant}g}"
    return _fixed(x, _decimals(x, significant))


def format_value(value: Any) -> str:
    """A table cell: "—" when missing, numbers via :func:`format_number`, bools as true/false,
    None as null, lists and dicts as compact JSON, strings as they are."""
    if value is MISSING:
        return MISSING_CELL
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if _is_number(value):
        return format_number(value)
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(", ", ": "), default=str)


def format_delta(old: Any, new: Any) -> str:
    """``new - old`` with its sign when both are numbers, else "": to the decimals the two values
    are shown with (0.9 -> 0.9123 gives +0.0123, 5 -> 6 gives +1), or more when the change is
    smaller than that (0.44031 -> 0.44034 gives +0.00003); ``0`` when equal."""
    if not (_is_number(old) and _is_number(new)):
        return ""
    delta = new - old
    if delta == 0:
        return "0"
    if not math.isfinite(delta) or not 1e-12 <= abs(delta) < 1e15:
        return f"{delta:+.{SIGNIFICANT}g}"
    decimals = max(_decimals(old), _decimals(new))
    if round(delta, decimals) == 0:
        decimals = _decimals(delta, 1)
    return _fixed(delta, decimals, sign=True)


@dataclass
class Row:
    metric: str
    values: list[Any]  # one per column; MISSING where a revision lacks the metric
    change: str | None = None  # only with exactly two columns

    @property
    def changed(self) -> bool:
        return len({_key(v) for v in self.values}) > 1


@dataclass
class Table:
    labels: list[str]
    rows: list[Row]  # the rows to show
    hidden: int = 0  # unchanged rows left out
    notes: list[str] = field(default_factory=list)

    @property
    def has_change(self) -> bool:
        return len(self.labels) == 2

    @property
    def title(self) -> str:
        return "Headline metrics: " + " → ".join(self.labels)

    @property
    def footer(self) -> str:
        if not self.hidden:
            return ""
        noun = "metric" if self.hidden == 1 else "metrics"
        pronoun = "it" if self.hidden == 1 else "them"
        return f"{self.hidden} unchanged {noun} hidden; --all shows {pronoun}"


def build_table(columns: Sequence[Column], show_all: bool = False, notes: Sequence[str] = ()) -> Table:
    """One row per metric found in any column (first-seen order), one value per column.

    Rows whose values are the same in every column are left out unless ``show_all`` (their
    number is ``Table.hidden``). With exactly two columns each row gets ``change``: new - old.
    """
    labels = [label for label, _ in columns]
    names: dict[str, None] = {}
    for _, metrics in columns:
        names.update(dict.fromkeys(metrics))
    rows, hidden = [], 0
    for name in names:
        values = [metrics.get(name, MISSING) for _, metrics in columns]
        row = Row(name, values, format_delta(*values) if len(values) == 2 else None)
        if row.changed or show_all:
            rows.append(row)
        else:
            hidden += 1
    return Table(labels, rows, hidden, list(notes))


def _cells(table: Table) -> tuple[list[str], list[list[str]]]:
    header = ["metric", *table.labels] + (["change"] if table.has_change else [])
    body = []
    for row in table.rows:
        cells = [row.metric, *(format_value(v) for v in row.values)]
        if table.has_change:
            cells.append(row.change or "")
        body.append(cells)
    return header, body


def _empty_message(table: Table) -> str:
    if table.hidden:
        return "No metric differs."
    return "DVC reports no metrics for these revisions."


def render_text(table: Table) -> str:
    """Plain text: a title, aligned columns (metric left, values right), a footer. No colours,
    no terminal-width truncation: the whole table prints when piped."""
    lines = [table.title, ""]
    if table.rows:
        header, body = _cells(table)
        widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

        def line(cells: list[str]) -> str:
            parts = [cells[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(cells[1:], widths[1:])]
            return "  ".join(parts).rstrip()

        lines += [line(header), line(["-" * w for w in widths]), *(line(r) for r in body)]
    else:
        lines.append(_empty_message(table))
    if table.footer:
        lines += ["", table.footer]
    lines += [f"note: {n}" for n in table.notes]
    return "\n".join(lines) + "\n"


def _md_cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def render_markdown(table: Table) -> str:
    """A GitHub-flavoured Markdown table for a pull request, under a one-line bold title."""
    lines = [f"**{_md_cell(table.title)}**", ""]
    if table.rows:
        header, body = _cells(table)
        lines.append("| " + " | ".join(_md_cell(c) for c in header) + " |")
        lines.append("|" + "|".join([":---"] + ["---:"] * (len(header) - 1)) + "|")
        lines += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in body]
    else:
        lines.append(_empty_message(table))
    if table.footer:
        lines += ["", f"_{table.footer.replace('--all', '`--all`')}._"]
    lines += [f"- note: {_md_cell(n)}" for n in table.notes]
    return "\n".join(lines) + "\n"


def compare(revs: Sequence[str], markdown: bool = False, show_all: bool = False, experiments: bool = False,
            cwd: Path | str | None = None) -> str:
    """What ``advgen compare`` prints. Raises :class:`CompareError`."""
    columns, notes = collect(revs, experiments=experiments, cwd=cwd)
    table = build_table(columns, show_all=show_all, notes=notes)
    return render_markdown(table) if markdown else render_text(table)
