"""Atomic, deterministic file writes (no torch: the validation stage uses them).

A stage never leaves half-written output: every write goes to a temp file beside the target
and is renamed into place.
"""
from __future__ import annotations

import contextlib
import json
import numbers
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator


def venv_env() -> dict[str, str]:
    """The environment with this interpreter's folder first on PATH, so dvc's ``python`` is ours."""
    return {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}


def dumps(obj: Any) -> str:
    """Canonical JSON: sorted keys, fixed indentation, trailing newline."""
    return json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n"


def tsv(rows: list[dict[str, Any]], float_format: str = "%.6f") -> str:
    """Rows (dicts) as a tab-separated table with a header, byte for byte what
    ``pandas.DataFrame(rows).to_csv(sep="\t", index=False, float_format=float_format)`` writes,
    without importing pandas (half a second of every stage that writes a curve).

    Columns in order of first appearance; a column of numbers with a float or a gap is a float
    column (``float_format``, gaps empty), one of integers only is written as integers; any other
    column is written as text (gaps empty). Fields holding a tab, quote or newline are quoted."""
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise TypeError(f"tsv() takes a list of dicts, found {type(rows).__name__}")
    cols = list(dict.fromkeys(k for r in rows for k in r))
    columns = [[r.get(c) for r in rows] for c in cols]
    cells = [_column(values, float_format) for values in columns]
    lines = ["\t".join(_quote(c) for c in cols)] + ["\t".join(_quote(col[i]) for col in cells) for i in range(len(rows))]
    lines = [line if line or len(cols) != 1 else '""' for line in lines]  # csv quotes a lone empty field
    return "\n".join(lines) + "\n"


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, numbers.Real) and v != v)


def _column(values: list[Any], float_format: str) -> list[str]:
    number = lambda v: isinstance(v, numbers.Real) and not isinstance(v, bool)  # noqa: E731
    if values and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in values):
        return [str(int(v)) for v in values]
    if values and all(number(v) or v is None for v in values) and not all(v is None for v in values):
        return ["" if _missing(v) else float_format % v for v in values]
    return ["" if _missing(v) else str(v) for v in values]


def _quote(field: str) -> str:
    if any(ch in field for ch in '\t"\n\r'):
        return '"' + field.replace('"', '""') + '"'
    return field


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to a temp file beside ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, dumps(obj))


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temp folder beside ``path``; on success it replaces ``path`` whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
