"""Every stage depends on the digest of the source files it runs, and no stage on a cost file."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from advgen.sources import closure, digest
from tests.conftest import ROOT


def source_closure(script: Path) -> set[str]:
    return set(closure(script, ROOT))


def _script(cmd: str) -> str:
    return next(t for t in cmd.split() if t.endswith(".py"))


def _args(cmd: str) -> list[str]:
    tokens = cmd.split()
    return tokens[tokens.index(_script(cmd)) + 1:]


def test_stage_commands_run_through_the_warm_runner():
    for name, stage in _stages():
        cmd = stage.get("do", stage)["cmd"]
        expected = "python" if name in ("validate", "sources") else "python -m advgen.warm"  # no torch there
        assert cmd.startswith(f"{expected} stages/{name}.py"), cmd


def _stages() -> list[tuple[str, dict]]:
    return list(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].items())


@pytest.mark.parametrize("name, stage", _stages(), ids=[n for n, _ in _stages()])
def test_stage_depends_on_its_source_digest_and_no_cost_file(name, stage):
    body = stage.get("do", stage)
    script = _script(body["cmd"])
    deps = list(body["deps"])
    assert not [d for d in deps if "cost" in Path(d).name or d.startswith("reports/cost")], name
    if name in ("validate", "sources"):  # they run first; validate is cheap and always runs
        return
    assert f"reports/sources/{Path(script).stem}.json" in deps, name
    listed = [d for d in deps if d.startswith(("src/", "stages/"))]
    assert not listed, f"{name}: lists {listed}; its digest covers them"


def test_sources_stage_covers_every_source_file():
    stage = dict(_stages())["sources"]
    assert sorted(stage["deps"]) == ["src/advgen", "stages"]
    assert list(stage["outs"][0]) == ["reports/sources"]


def test_validate_lists_what_it_imports():
    stage = dict(_stages())["validate"]
    closure_files = source_closure(ROOT / "stages/validate.py")
    covered = lambda f: any(f == d or f.startswith(d.rstrip("/") + "/") for d in stage["deps"])  # noqa: E731
    assert [f for f in closure_files if not covered(f)] == [] and "stages/validate.py" in stage["deps"]
    assert "src/advgen/generative/params.py" in closure_files  # every area's params, through advgen.areas


def test_digest_changes_exactly_with_the_files_a_script_imports(tmp_path):
    shutil.copytree(ROOT / "src", tmp_path / "src", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "stages", tmp_path / "stages", ignore=shutil.ignore_patterns("__pycache__"))
    before = digest(tmp_path / "stages/poison.py", tmp_path)
    assert "src/advgen/backdoors/poison.py" in before["files"] and "src/advgen/report.py" not in before["files"]
    (tmp_path / "src/advgen/report.py").write_text("# not imported by poison\n")
    assert digest(tmp_path / "stages/poison.py", tmp_path) == before
    with (tmp_path / "src/advgen/attacks/pgd.py").open("a") as f:  # imported by backdoors/dataset.py
        f.write("\n# changed\n")
    after = digest(tmp_path / "stages/poison.py", tmp_path)
    assert after["sha256"] != before["sha256"] and after["files"]["src/advgen/attacks/pgd.py"] != before["files"]["src/advgen/attacks/pgd.py"]


def test_committed_digests_are_current():
    for path in sorted((ROOT / "reports/sources").glob("*.json")):
        committed = json.loads(path.read_text())
        assert committed == digest(ROOT / committed["script"], ROOT), f"{path.name}: run `dvc repro sources`"


def test_closure_follows_relative_imports():
    closure = source_closure(ROOT / "stages/robustness.py")
    assert {"src/advgen/attacks/robustness.py", "src/advgen/attacks/apgd.py", "src/advgen/stats.py",
            "src/advgen/models.py"} <= closure
    assert "src/advgen/attacks/patch.py" not in closure


def test_every_stage_depends_on_its_params_file_from_the_always_run_validation():
    stages = dict(_stages())
    assert stages["validate"]["always_changed"] is True
    assert list(stages["validate"]["outs"][0]) == ["reports/params"]
    assert stages["validate"]["params"] == [{"params.yaml": None}]  # the whole file: dvc params diff, exp show
    for name, stage in stages.items():
        body = stage.get("do", stage)
        if name in ("validate", "sources"):
            continue
        assert "params" not in body, f"{name}: params go under meta (their values: reports/params/<stage>.json)"
        if name == "report":  # reads no params
            continue
        arg = _args(body["cmd"])
        assert f"reports/params/{name}{'@' + arg[0] if arg else ''}.json" in body["deps"], name
        assert body["meta"]["params"], name


def test_params_track_only_the_active_profile():
    for name, stage in _stages():
        params = [p for p in stage.get("do", stage).get("meta", {}).get("params", []) if isinstance(p, str)]
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


def test_lock_holds_only_current_stages():
    """DVC never drops the lock entry of a stage removed from dvc.yaml, and it rewrites the whole
    lock after every stage: stale entries only slow every repro down."""
    from dvc.repo import Repo

    names = {s.addressing for s in Repo(str(ROOT)).index.stages}
    stale = sorted(set(yaml.safe_load((ROOT / "dvc.lock").read_text())["stages"]) - names)
    assert not stale, f"dvc.lock has entries for stages dvc.yaml no longer has: {stale}"


@pytest.mark.parametrize("stage", ["transfer", "dimension"])
def test_single_stages_depend_on_exactly_the_models_they_load(stage):
    """transfer and dimension list their models one by one (depending on all of models/ would
    rerun them whenever any model, a GAN included, retrains): the list must follow params."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    deps = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][stage]["deps"]
    assert "models" not in deps
    assert sorted(d for d in deps if d.startswith("models/")) == sorted(f"models/{m}" for m in params[stage]["models"])


def test_lock_lists_each_dependency_once():
    lock = yaml.safe_load((ROOT / "dvc.lock").read_text())
    twice = {name: sorted({d["path"] for d in st.get("deps", []) if [e["path"] for e in st["deps"]].count(d["path"]) > 1})
             for name, st in lock["stages"].items()}
    assert not {n: t for n, t in twice.items() if t}


def test_a_stage_of_one_model_that_tracks_the_whole_list_names_it_own():
    """A foreach stage tracking a params key that holds its own items' list (``attack@`` tracks
    ``attack``, which holds ``attack.models``) declares ``own:`` for that list; otherwise adding
    a model would make every stage of the foreach stale."""
    checked = []
    for name, stage in _stages():
        if "foreach" not in stage:
            continue
        listed = stage["foreach"].removeprefix("${").removesuffix("}")
        tracked = stage["do"]["meta"]["params"]
        covers = any(listed == k or listed.startswith(k + ".") for k in tracked)
        assert stage["do"]["meta"].get("own") == (listed if covers else None), name
        checked += [name] if covers else []
    assert sorted(checked) == ["attack", "backdoor_defense", "certify", "robustness"]
