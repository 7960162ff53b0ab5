"""End to end: `dvc repro` on the smoke profile in a scratch git repo.

Checks the outputs, that a second repro is a no-op, that a forced rerun is byte-identical
(determinism), and that changing one param reruns only the stages that depend on it.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from advgen.cli import copy_repo, set_profile, venv_env
from advgen.models import load_model
from tests.conftest import FMNIST_LOCAL, ROOT

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not FMNIST_LOCAL.is_dir(), reason="needs the Debian package dataset-fashion-mnist")]


def dvc(repo: Path, *args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=repo, env=venv_env(), capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, f"dvc {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pipeline")
    copy_repo(ROOT, path)
    set_profile(path, "smoke")
    out = dvc(path, "repro")
    assert {"ingest", "train@cnn", "report"} <= ran(out)
    return path


def test_outputs(repo: Path):
    manifest = json.loads((repo / "data/prepared/fashion-mnist/manifest.json").read_text())
    assert manifest["splits"]["train"]["count"] == 60000
    assert all(f["url"].startswith("file:///usr/share/datasets/fashion-mnist/") for f in manifest["files"].values())
    claims = json.loads((repo / "reports/claims.json").read_text())
    assert [c["id"] for c in claims] == [f"C{i}" for i in range(1, 19)]
    headline = json.loads((repo / "reports/metrics.json").read_text())
    for name in ("logreg", "mlp", "cnn", "resnet"):
        model = load_model(repo / "models" / name)
        assert model.sidecar["profile"] == "smoke"
        cost = json.loads((repo / f"reports/train/{name}/cost.json").read_text())
        assert cost["wall_s"] > 0 and cost["peak_rss_mb"] > 0
    assert headline["test_accuracy"]["cnn"] > 0.4  # 1 epoch on 2000 images: well above 10% chance
    summary = (repo / "reports/summary.md").read_text()
    assert "## Claims" in summary and "| C3 |" in summary and "## Sanity checks" in summary
    verdicts = {c["id"]: c["verdict"] for c in claims}
    for cid in ("C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8"):
        assert verdicts[cid] != "not_measured", cid
    for name in ("logreg", "cnn", "resnet"):
        rob = json.loads((repo / f"reports/robustness/{name}/metrics.json").read_text())
        checks = {c["name"]: c["passed"] for c in rob["checks"]}
        assert checks["unbounded_pgd_reaches_zero"] and checks["logits_deterministic"]
        assert checks["eps0_equals_clean[pgd]"] and checks["robust_le_clean[worst_case]"]
        for attack in ("fgsm", "pgd", "pgd_l2", "apgd_ce", "apgd_dlr", "square", "noise"):
            res = json.loads((repo / f"reports/attacks/{name}/{attack}.json").read_text())
            assert res["within_eps"], (name, attack)
            assert (repo / f"reports/attacks/{name}/{attack}.png").read_bytes()[:4] == b"\x89PNG"
    transfer = json.loads((repo / "reports/transfer/metrics.json").read_text())
    assert set(transfer["matrix"]) == set(transfer["clean"]) == {"logreg", "mlp", "cnn", "cnn_seed1", "resnet"}
    plots = dvc(repo, "plots", "show", "--json")
    assert "reports/train/cnn/curve.tsv" in plots


def test_second_repro_is_a_noop(repo: Path):
    assert json.loads(dvc(repo, "status", "--json")) == {}
    assert ran(dvc(repo, "repro")) == set()


def test_forced_rerun_is_byte_identical(repo: Path):
    files = ["reports/train/cnn/metrics.json", "reports/train/cnn/curve.tsv", "models/cnn/model.safetensors",
             "reports/ingest/metrics.json", "data/prepared/fashion-mnist/train.safetensors",
             "reports/attacks/cnn/pgd.json", "reports/attacks/cnn/pgd.png", "data/attacks/cnn/pgd.safetensors",
             "reports/attacks/cnn/square.json", "reports/robustness/cnn/metrics.json"]
    before = {f: (repo / f).read_bytes() for f in files}
    for stage in ("ingest", "train@cnn", "attack@cnn-pgd", "attack@cnn-square", "robustness@cnn"):
        dvc(repo, "repro", "-f", "-s", stage)
    assert {f: (repo / f).read_bytes() for f in files} == before
    # Only cost.json files changed (timings vary), so only the report is stale.
    assert ran(dvc(repo, "repro")) == {"report"}


def test_one_param_reruns_only_its_dependents(repo: Path):
    params = repo / "params.yaml"
    params.write_text(params.read_text().replace("  w_tv: 0.5", "  w_tv: 0.25"))
    assert set(json.loads(dvc(repo, "status", "--json"))) == {"patch"}
    assert ran(dvc(repo, "repro")) == {"patch", "report"}

    params.write_text(params.read_text().replace("logreg: {arch: logreg}", "logreg: {arch: logreg, lr: 0.01}"))
    assert set(json.loads(dvc(repo, "status", "--json"))) == {"train@logreg"}
    rerun = ran(dvc(repo, "repro"))
    assert {"train@logreg", "attack@logreg-pgd", "robustness@logreg", "transfer", "dimension", "report"} <= rerun
    untouched = {"ingest", "train@cnn", "train@resnet", "attack@cnn-pgd", "attack@resnet-square", "forge", "patch"}
    assert not rerun & untouched
