"""The source files each stage script runs, and one digest file per script.

A stage depends on ``reports/sources/<script>.json`` rather than on the ~20 source files it
imports: the file lists the script and every ``advgen`` module it imports, transitively (a
package's ``__init__`` too), each with its sha256, so it changes exactly when one of them does
and the stage reruns exactly as if it listed them. DVC rewrites the whole ``dvc.lock`` after
every stage, and those per-file entries were more than half of it.

No torch here: the ``sources`` stage runs on every change of the code and must stay cheap.
"""
from __future__ import annotations

import ast
import hashlib
from pathlib import Path

from .io import atomic_dir, dumps


def _module_file(src: Path, name: str) -> Path | None:
    path = src / Path(*name.split("."))
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    return None


def _imports(src: Path, path: Path, package: str | None) -> set[str]:
    """``advgen`` modules ``path`` imports (absolute or relative), as dotted names."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("advgen")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.startswith("advgen"):
                out.add(mod)
                out |= {f"{mod}.{a.name}" for a in node.names if _module_file(src, f"{mod}.{a.name}")}
    return out


def closure(script: Path, root: Path) -> list[str]:
    """Every file under ``root/src/advgen`` that ``script`` imports, transitively, as sorted
    paths relative to ``root``."""
    src = root / "src"
    seen: set[Path] = set()
    todo = [(script, None)]
    while todo:
        path, package = todo.pop()
        for mod in _imports(src, path, package):
            parts = mod.split(".")
            for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__
                f = _module_file(src, ".".join(parts[:i]))
                if f is not None and f not in seen:
                    seen.add(f)
                    pkg = ".".join(parts[:i]) if f.name == "__init__.py" else ".".join(parts[:i - 1])
                    todo.append((f, pkg))
    return sorted(f.relative_to(root).as_posix() for f in seen)


def digest(script: Path, root: Path) -> dict:
    """``{"script", "files": {path: sha256}, "sha256"}`` of ``script`` and its closure."""
    files = [script.relative_to(root).as_posix(), *closure(script, root)]
    hashes = {f: hashlib.sha256((root / f).read_bytes()).hexdigest() for f in files}
    whole = hashlib.sha256("".join(f"{f}\0{h}\n" for f, h in hashes.items()).encode()).hexdigest()
    return {"script": files[0], "files": hashes, "sha256": whole}


def write_digests(root: Path, out: Path) -> list[Path]:
    """Write ``out/<name>.json`` for every ``root/stages/<name>.py``, the folder atomically."""
    scripts = sorted((root / "stages").glob("*.py"))
    with atomic_dir(out) as tmp:
        for script in scripts:
            (tmp / f"{script.stem}.json").write_text(dumps(digest(script, root)))
    return [out / f"{s.stem}.json" for s in scripts]


def import_graph(root: Path) -> dict[str, set[str]]:
    """``{module file: advgen module files it imports directly}``, paths relative to ``root``,
    for every module under ``root/src/advgen`` (a package's ``__init__`` counts as imported)."""
    src = root / "src"
    graph: dict[str, set[str]] = {}
    for path in sorted((src / "advgen").rglob("*.py")):
        parts = path.relative_to(src).with_suffix("").parts
        package = ".".join(parts if path.name == "__init__.py" else parts[:-1]).removesuffix(".__init__")
        deps = set()
        for mod in _imports(src, path, package):
            f = _module_file(src, mod)
            if f is not None and f != path:
                deps.add(f.relative_to(root).as_posix())
        graph[path.relative_to(root).as_posix()] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import circles of ``graph``: its strongly connected components of more than one
    module (Tarjan), each sorted; a package ``__init__`` that only re-exports is not special."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)
