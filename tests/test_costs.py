"""`advgen cost`: the stages a target pulls in (DVC's graph) and their recorded wall time."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from advgen.costs import CostError, fmt_duration, plan, render

DVC_YAML = {"stages": {
    "a": {"cmd": "true", "outs": ["a.txt", {"reports/cost/a.json": {"cache": False}}]},
    "b": {"cmd": "true", "deps": ["a.txt"], "outs": ["b.txt", {"reports/cost/b.json": {"cache": False}},
                                                     {"reports/cost/b.detail.json": {"cache": False}}]},
    "c": {"cmd": "true", "deps": ["a.txt"], "outs": ["c.txt"]},
    "d": {"cmd": "true", "deps": ["b.txt", "c.txt"], "outs": ["d.txt", {"reports/cost/d.json": {"cache": False}}]},
    "e": {"cmd": "true", "outs": ["e.txt", {"reports/cost/e.json": {"cache": False}}]},
}}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(DVC_YAML))
    cost = tmp_path / "reports/cost"
    cost.mkdir(parents=True)
    for name, wall in (("a", 60.0), ("b", 600.0), ("d", 7200.0), ("e", 1.0)):
        (cost / f"{name}.json").write_text(json.dumps({"wall_s": wall, "cpu_s": 2 * wall}))
    (cost / "b.detail.json").write_text(json.dumps({"wall_s": 500.0}))  # a breakdown of b: not added
    return tmp_path


def test_a_target_pulls_in_everything_upstream_in_run_order(repo: Path):
    p = plan(["d"], repo)
    names = [n for n, _ in p.stages]
    assert set(names) == {"a", "b", "c", "d"} and names[0] == "a" and names[-1] == "d"
    assert dict(p.stages) == {"a": 60.0, "b": 600.0, "c": None, "d": 7200.0}
    assert p.seconds == 7860.0 and p.uncosted == ["c"]
    assert render(p) == "d: 4 stages, 2.2 h of recorded stage time (+ c: no cost file)\n"
    assert [n for n, _ in plan(["b"], repo).stages] == ["a", "b"]


def test_single_counts_the_targets_alone_and_no_target_the_whole_pipeline(repo: Path):
    assert sorted(plan(["b", "e"], repo, single=True).stages) == [("b", 600.0), ("e", 1.0)]
    assert render(plan(["e"], repo, single=True)) == "e: 1 stage, 1 s of recorded stage time\n"
    assert plan(None, repo).seconds == 60 + 600 + 7200 + 1
    assert render(plan(["b"], repo), verbose=True).splitlines()[1:] == [f"  {'a':<32} {'60 s':>8}", f"  {'b':<32} {'10 min':>8}"]


def test_a_bare_foreach_name_means_all_of_its_stages(repo: Path, monkeypatch):
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": {**DVC_YAML["stages"], "m": {
        "foreach": ["x", "y"], "do": {"cmd": "true", "deps": ["a.txt"], "outs": ["m_${item}.txt"]}}}}))
    assert [n for n, _ in plan(["m"], repo).stages] == ["a", "m@x", "m@y"]
    assert [n for n, _ in plan(["m@y"], repo, single=True).stages] == ["m@y"]
    monkeypatch.chdir(repo / "reports")  # from a subfolder: the repository's root, as dvc does
    assert plan(["b"], ".").seconds == 660.0


def test_unknown_target_is_a_clear_error(repo: Path):
    with pytest.raises(CostError, match=r"unknown stage\(s\) \['x@1'\]; expected one of \['a', 'b'"):
        plan(["x@1"], repo)


def test_durations():
    assert [fmt_duration(s) for s in (5, 89, 91, 3600, 5399, 5400, 15120)] == [
        "5 s", "89 s", "2 min", "60 min", "90 min", "1.5 h", "4.2 h"]


def test_readme_costs_are_the_committed_cost_files():
    """Every `dvc repro` row of the README's "Run part of it" table states what `advgen cost`
    computes from reports/cost/ (a stale line fails here after a rerun changes the costs)."""
    from tests.conftest import ROOT

    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Run part of it"):].split("\n## ", 1)[0]
    rows = re.findall(r"^\| [^|]+ \| `dvc repro( -s)?( [^`]+)?` \| ([^|]+) \| ([^|]+) \|$", table, re.M)
    assert len(rows) >= 6
    for single, target, runs, stated in rows:
        if target.strip() == "report":
            continue  # no cost file: the README says so
        p = plan(target.split() or None, ROOT, single=bool(single))
        assert stated.strip() == fmt_duration(p.seconds), (target, stated)
        counted = re.search(r"(\d+) stages", runs)
        if counted:  # the rows that state a count
            assert int(counted.group(1)) == len(p.stages), target
    assert "make repro   # ≈ " + fmt_duration(plan(None, ROOT).seconds) in readme
