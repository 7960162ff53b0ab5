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
        cost = json.loads((repo / f"reports/cost/train/{name}.json").read_text())
        assert cost["wall_s"] > 0 and cost["peak_rss_mb"] > 0
        train = json.loads((repo / f"reports/train/{name}/metrics.json").read_text())
        lo, hi = train["test_accuracy_ci95"]
        assert train["n_test"] == 500 and lo < train["test_accuracy"] < hi and hi - lo < 0.1
    # 1 epoch (16 steps) on 2,000 images: the smoke run measures 60.4% for the cnn, 10% chance
    assert 0.55 < headline["test_accuracy"]["cnn"] < 0.7
    summary = (repo / "reports/summary.md").read_text()
    assert "## Claims" in summary and "| C3 |" in summary and "## Sanity checks" in summary
    assert "worst case (cascade)" in summary
    for name in ("logreg", "cnn", "resnet"):
        rob = json.loads((repo / f"reports/robustness/{name}/metrics.json").read_text())
        checks = {c["name"]: c["passed"] for c in rob["checks"]}
        assert checks["unbounded_pgd_reaches_zero"] and checks["logits_deterministic"]
        assert not any(c.startswith(("eps0_equals_clean", "robust_le_clean[worst_case]")) for c in checks)
        assert [c["eps"] for c in rob["cascade"]] == [0.025, 0.05, 0.1, 0.15, 0.2]
        worst = rob["linf"]["worst_case"]
        for attack in ("fgsm", "pgd"):
            assert all(worst[e] <= rob["linf"][attack][e] for e in worst)
        for attack in ("fgsm", "pgd", "pgd_l2", "square", "noise"):
            res = json.loads((repo / f"reports/attacks/{name}/{attack}.json").read_text())
            assert res["within_eps"], (name, attack)
            assert (repo / f"reports/attacks/{name}/{attack}.png").read_bytes()[:4] == b"\x89PNG"
    _claims_follow_their_criteria(repo, {c["id"]: c["verdict"] for c in claims})
    transfer = json.loads((repo / "reports/transfer/metrics.json").read_text())
    assert set(transfer["matrix"]) == set(transfer["clean"]) == {"logreg", "mlp", "cnn", "cnn_seed1", "resnet"}
    plots = dvc(repo, "plots", "show", "--json")
    assert "reports/train/cnn/curve.tsv" in plots


def _claims_follow_their_criteria(repo: Path, verdicts: dict[str, str]) -> None:
    """Recompute the smoke run's verdicts from the stage metrics with each criterion's arithmetic."""
    assert verdicts["C3"] == "supported"
    rob = json.loads((repo / "reports/robustness/cnn/metrics.json").read_text())
    test = rob["paired"]["vs_clean"]["fgsm"]["0.05"]
    c5 = rob["clean_accuracy"] - rob["linf"]["fgsm"]["0.05"] >= 0.2 and test["p_a_higher"] < 0.01
    assert verdicts["C5"] == ("supported" if c5 else "not_supported")
    tr = json.loads((repo / "reports/transfer/metrics.json").read_text())
    sources = {s: r["cnn"] for s, r in tr["matrix"].items() if s != "cnn"}
    best = min(sources, key=sources.get)
    drop, noise_drop = tr["clean"]["cnn"] - sources[best], tr["clean"]["cnn"] - rob["linf"]["noise"]["0.1"]
    c6 = drop >= 0.2 and drop >= 3 * noise_drop and rob["paired"]["transfer_vs_noise"][best]["p_a_higher"] < 0.01
    assert verdicts["C6"] == ("supported" if c6 else "not_supported")
    sq = json.loads((repo / "reports/attacks/cnn/square.json").read_text())["square"]
    succ = sq["success_at_budget"]
    c7 = succ[str(sq["window_budget"])] <= succ[str(max(map(int, succ)))] - 0.10
    assert verdicts["C7"] == ("supported" if c7 else "not_supported")
    dm = json.loads((repo / "reports/dimension/metrics.json").read_text())
    rows = sorted(dm["models"].values(), key=lambda r: r["dim"])
    c4 = all(a["accuracy_drop"] < b["accuracy_drop"] and a["mean_margin_drop"] < b["mean_margin_drop"]
             for a, b in zip(rows, rows[1:]))
    assert verdicts["C4"] == ("supported" if c4 else "not_supported")
    for cid in ("C1", "C2", "C8"):
        assert verdicts[cid] in ("supported", "not_supported"), cid


def test_second_repro_is_a_noop(repo: Path):
    assert json.loads(dvc(repo, "status", "--json")) == {}
    assert ran(dvc(repo, "repro")) == set()


def test_forced_rerun_is_byte_identical(repo: Path):
    files = ["reports/train/cnn/metrics.json", "reports/train/cnn/curve.tsv", "models/cnn/model.safetensors",
             "reports/robustness/cnn/linf.tsv", "reports/transfer/metrics.json", "data/transfer/correct.safetensors",
             "reports/ingest/metrics.json", "data/prepared/fashion-mnist/train.safetensors",
             "reports/attacks/cnn/pgd.json", "reports/attacks/cnn/pgd.png", "data/attacks/cnn/pgd.safetensors",
             "reports/attacks/cnn/square.json", "reports/robustness/cnn/metrics.json"]
    before = {f: (repo / f).read_bytes() for f in files}
    for stage in ("ingest", "train@cnn", "attack@cnn-pgd", "attack@cnn-square", "transfer", "robustness@cnn"):
        dvc(repo, "repro", "-f", "-s", stage)
    assert {f: (repo / f).read_bytes() for f in files} == before
    # Only the cost files changed (timings vary), and no stage depends on them.
    assert ran(dvc(repo, "repro")) == set()


def test_one_param_reruns_only_its_dependents(repo: Path):
    params = repo / "params.yaml"
    params.write_text(params.read_text().replace("  w_tv: 0.03125", "  w_tv: 0.0625"))
    assert set(json.loads(dvc(repo, "status", "--json"))) == {"patch"}
    assert ran(dvc(repo, "repro")) == {"patch", "report"}

    params.write_text(params.read_text().replace("logreg: {arch: logreg}", "logreg: {arch: logreg, lr: 0.01}"))
    assert set(json.loads(dvc(repo, "status", "--json"))) == {"train@logreg"}
    rerun = ran(dvc(repo, "repro"))
    assert {"train@logreg", "attack@logreg-pgd", "robustness@logreg", "transfer", "dimension", "report"} <= rerun
    untouched = {"ingest", "train@cnn", "train@resnet", "attack@cnn-pgd", "attack@resnet-square", "forge", "patch"}
    assert not rerun & untouched
