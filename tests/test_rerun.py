"""The regression gate of `advgen rerun` (src/advgen/rerun.py) on small git repositories; the
whole rerun (pull, repro, push, gate) runs in tests/test_pipeline.py against a moto S3 remote."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from advgen.rerun import RerunError, Tree, gate, intervals, rerun, show

ENV = {"torch": "2.14.1", "cpu_capability": "AVX2", "threads": 2, "device": "cpu", "machine": "x86_64"}


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=root, check=True,
                   capture_output=True)


def _write(root: Path, rel: str, data) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(data if isinstance(data, str) else json.dumps(data))


def _lock(out_md5: str, dep_md5: str = "d1", cost_md5: str = "c1") -> str:
    return yaml.safe_dump({"schema": "2.0", "stages": {"train@cnn": {
        "cmd": "python stages/train.py cnn",
        "deps": [{"path": "data/prepared", "md5": dep_md5}],
        "outs": [{"path": "models/cnn", "md5": out_md5}, {"path": "reports/cost/train/cnn.json", "md5": cost_md5}]}}})


def _state(root: Path, *, verdict="supported", acc=0.9, passed=True, out_md5="m1", dep_md5="d1", env=ENV,
           fid=20.0, cost_md5="c1") -> None:
    _write(root, "params.yaml", "profile: smoke\n")
    _write(root, "reports/claims.json", [{"id": "C1", "verdict": verdict}, {"id": "C2", "verdict": "supported"}])
    _write(root, "reports/train/cnn/metrics.json", {
        "robust": {"pgd": {"accuracy": acc, "ci95": [round(acc - 0.05, 4), round(acc + 0.04, 4)], "n": 500}},
        "checks": [{"name": "robust_le_clean", "passed": passed}]})
    _write(root, "reports/gan/metrics.json", {"fid": fid, "fid_lo": fid - 2, "fid_hi": fid + 2})
    _write(root, "reports/cost/train/cnn.json", {"wall_s": 1.0, **({"env": env} if env else {})})
    _write(root, "dvc.lock", _lock(out_md5, dep_md5, cost_md5))


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    _git(tmp_path, "init", "-q")
    _state(tmp_path)
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-qm", "reference")
    _git(tmp_path, "tag", "v1")
    return tmp_path


def _findings(repo: Path) -> list[tuple[str, str]]:
    found, _ = gate(Tree(repo, "v1"), Tree(repo))
    return [(f.kind, f.where) for f in found]


def test_a_faithful_rerun_passes_and_is_held_byte_for_byte(repo: Path):
    found, compared = gate(Tree(repo, "v1"), Tree(repo))
    assert found == [] and compared == []  # nothing was rebuilt: its cost file is the reference's
    _state(repo, cost_md5="c2")  # rebuilt (new timings), same bytes
    found, compared = gate(Tree(repo, "v1"), Tree(repo))
    assert found == [] and compared == ["train@cnn"]


def test_overlapping_intervals_are_no_regression(repo: Path):
    """The reference's pgd accuracy is 0.9 [0.85, 0.94], its FID 20 [18, 22]."""
    _state(repo, acc=0.95, fid=23.5, out_md5="m1")  # points outside, intervals overlapping: two draws of one figure
    assert _findings(repo) == []


@pytest.mark.parametrize("change, expected", [
    ({"verdict": "not_supported"}, [("verdict", "reports/claims.json:C1")]),
    ({"acc": 0.80}, [("interval", "reports/train/cnn/metrics.json:robust.pgd.accuracy")]),
    ({"acc": 1.0}, [("interval", "reports/train/cnn/metrics.json:robust.pgd.accuracy")]),
    ({"fid": 26.5}, [("interval", "reports/gan/metrics.json:fid")]),
    ({"passed": False}, [("sanity", "reports/train/cnn/metrics.json")]),
    ({"out_md5": "m2"}, [("bytes", "train@cnn:models/cnn")]),
])
def test_each_regression_is_named(repo: Path, change: dict, expected: list):
    _state(repo, **change)
    assert _findings(repo) == expected


def test_bytes_are_compared_only_on_the_same_inputs_and_environment(repo: Path):
    _state(repo, out_md5="m2", dep_md5="d2")  # other inputs: other bytes are expected
    assert _findings(repo) == []
    _state(repo, out_md5="m2", env={**ENV, "cpu_capability": "AVX512"})  # other kernels: intervals only
    assert _findings(repo) == []
    _state(repo, out_md5="m2", env=None)  # no record: intervals only
    assert _findings(repo) == []


def test_a_check_that_already_failed_is_not_new(repo: Path):
    _state(repo, passed=False)
    _git(repo, "commit", "-qam", "failing check")
    _git(repo, "tag", "-f", "v1")
    assert _findings(repo) == []


def test_intervals_are_found_wherever_they_are():
    data = {"a": [{"value": 0.5, "ci95": [0.4, 0.6]}], "b": {"success_rate": 0.2, "ci95": [0.1, 0.3], "n": 9},
            "c": {"fid": 3.0, "fid_lo": 2.0, "fid_hi": 4.0}, "d": {"ci95": [0, 1]}, "e": {"accuracy": True, "ci95": [0, 1]}}
    assert intervals(data) == {("a", 0, "value"): (0.5, 0.4, 0.6), ("b", "success_rate"): (0.2, 0.1, 0.3),
                               ("c", "fid"): (3.0, 2.0, 4.0)}
    assert show(("conv", "0.05", 1, "accuracy")) == "conv.0.05[1].accuracy"


def test_keys_with_dots_are_followed(repo: Path):
    """Dict keys such as an eps ("0.05") hold dots: a path is a tuple, not a dotted string."""
    _write(repo, "reports/r.json", {"conv": {"0.05": [{"accuracy": 0.5, "ci95": [0.4, 0.6]}]}})
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "eps")
    _git(repo, "tag", "-f", "v1")
    assert _findings(repo) == []
    _write(repo, "reports/r.json", {"conv": {"0.05": [{"accuracy": 0.7, "ci95": [0.65, 0.8]}]}})
    assert _findings(repo) == [("interval", "reports/r.json:conv.0.05[0].accuracy")]


def test_rerun_refuses_a_reference_of_another_profile_or_none(repo: Path):
    calls = []
    with pytest.raises(RerunError, match="profile 'smoke', this rerun on 'default'"):
        rerun(repo, "default", "v1", dvc=calls.append)
    with pytest.raises(RerunError, match="not a revision"):
        rerun(repo, "smoke", "nope", dvc=calls.append)
    _git(repo, "tag", "-d", "v1")
    with pytest.raises(RerunError, match="no tag"):
        rerun(repo, "smoke", None, dvc=calls.append)
    assert calls == []  # nothing ran


def test_rerun_runs_pull_repro_push_and_gates(repo: Path, tmp_path_factory):
    calls: list[list[str]] = []

    def fake_dvc(args: list[str]) -> None:
        calls.append(args)
        if args[0] == "repro":  # the rerun computes a worse figure
            _state(repo, acc=0.5)

    summary = tmp_path_factory.mktemp("out") / "summary.md"
    code, text = rerun(repo, "smoke", "v1", remote="team", force=True, single_item=True, targets=["train@cnn"],
                       summary_path=summary, dvc=fake_dvc)
    assert calls == [["pull", "--run-cache", "--allow-missing", "-r", "team"], ["repro", "-s", "validate"],
                     ["repro", "-f", "-s", "train@cnn"], ["push", "--run-cache", "-r", "team"]]
    assert code == 1
    assert ("`reports/train/cnn/metrics.json:robust.pgd.accuracy`: 0.5 [0.45, 0.54] does not overlap the "
            "reference's 95% interval [0.85, 0.94]") in text
    assert summary.read_text().strip() == text.strip()


def test_a_persist_cache_is_not_held_to_bytes_and_a_differing_stage_is_not_listed(repo: Path):
    lock = yaml.safe_load(_lock("m2", cost_md5="c2"))
    lock["stages"]["train@cnn"]["outs"].append({"path": "data/cache", "md5": "x2"})
    ref_lock = yaml.safe_load(_lock("m1"))
    ref_lock["stages"]["train@cnn"]["outs"].append({"path": "data/cache", "md5": "x1"})
    _write(repo, "dvc.lock", yaml.safe_dump(ref_lock))
    _write(repo, "dvc.yaml", yaml.safe_dump({"stages": {"train": {"outs": [{"data/cache": {"persist": True}}]}}}))
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "persist")
    _git(repo, "tag", "-f", "v1")
    _write(repo, "dvc.lock", yaml.safe_dump(lock))
    found, compared = gate(Tree(repo, "v1"), Tree(repo))
    assert [(f.kind, f.where) for f in found] == [("bytes", "train@cnn:models/cnn")]  # not data/cache
    assert compared == []  # rebuilt, but not identical
