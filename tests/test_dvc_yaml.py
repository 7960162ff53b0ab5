"""dvc.yaml lists every source file a stage imports, and no stage depends on a cost file."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

SRC = ROOT / "src"


def _module_file(name: str) -> Path | None:
    path = SRC / Path(*name.split("."))
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    return None


def _imports(path: Path, package: str | None) -> set[str]:
    """advgen modules ``path`` imports (absolute or relative), as dotted names."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
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
                out |= {f"{mod}.{a.name}" for a in node.names if _module_file(f"{mod}.{a.name}")}
    return out


def source_closure(script: Path) -> set[str]:
    """Every file under src/advgen that ``script`` imports, transitively (packages' __init__ too)."""
    seen: set[Path] = set()
    todo = [(script, None)]
    while todo:
        path, package = todo.pop()
        for mod in _imports(path, package):
            parts = mod.split(".")
            for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__
                f = _module_file(".".join(parts[:i]))
                if f is not None and f not in seen:
                    seen.add(f)
                    pkg = ".".join(parts[:i]) if f.name == "__init__.py" else ".".join(parts[:i - 1])
                    todo.append((f, pkg))
    return {f.relative_to(ROOT).as_posix() for f in seen}


def _stages() -> list[tuple[str, dict]]:
    return list(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].items())


@pytest.mark.parametrize("name, stage", _stages(), ids=[n for n, _ in _stages()])
def test_stage_deps_cover_its_imports_and_no_cost_file(name, stage):
    body = stage.get("do", stage)
    script = body["cmd"].split()[1]
    deps = [d for d in body["deps"]]
    closure = source_closure(ROOT / script)
    missing = sorted(f for f in closure if not any(f == d or f.startswith(d.rstrip("/") + "/") for d in deps))
    assert not missing, f"{name}: imports {missing} but does not list them as deps"
    assert script in deps
    assert not [d for d in deps if "cost" in Path(d).name or d.startswith("reports/cost")], name
    assert "src/advgen/attacks" not in deps, f"{name}: depend on the attack files imported, not the folder"
    extra = sorted(d for d in deps if d.startswith("src/") and d not in closure)
    assert not extra, f"{name}: lists {extra} it does not import"


def test_closure_follows_relative_imports():
    closure = source_closure(ROOT / "stages/robustness.py")
    assert {"src/advgen/robustness.py", "src/advgen/attacks/apgd.py", "src/advgen/stats.py",
            "src/advgen/models.py"} <= closure
    assert "src/advgen/attacks/patch.py" not in closure


def test_every_stage_depends_on_the_always_run_validation():
    stages = dict(_stages())
    assert stages["validate"]["always_changed"] is True
    assert list(stages["validate"]["outs"][0]) == ["reports/params.ok"]
    for name, stage in stages.items():
        if name != "validate":
            assert "reports/params.ok" in stage.get("do", stage)["deps"], name


def test_params_track_only_the_active_profile():
    for name, stage in _stages():
        params = [p for p in stage.get("do", stage).get("params", []) if isinstance(p, str)]
        literal = [p for p in params if p.startswith("profiles.") and not p.startswith("profiles.${profile}.")]
        assert not literal, f"{name}: tracks {literal}; use profiles.${{profile}}.<section>"


def test_metrics_are_the_headline_files_only():
    for name, stage in _stages():
        for entry in stage.get("do", stage).get("metrics", []):
            path = next(iter(entry)) if isinstance(entry, dict) else entry
            assert path.startswith("reports/headline/") and path.endswith(".json"), f"{name}: {path}"
            assert "cost" not in path


def test_top_level_plots_use_existing_templates():
    plots = yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"]
    for entry in plots:
        (title, spec), = entry.items()
        assert spec.get("x_label") and spec.get("y_label"), title
        template = spec.get("template")
        if template and template not in ("linear", "simple", "scatter", "smooth"):
            assert (ROOT / ".dvc/plots" / f"{template}.json").is_file(), template
