"""The train stage under torchrun: 2 processes, gloo on CPU; only rank 0 writes."""
import json
import subprocess
import sys
from pathlib import Path

import yaml

from advgen.cli import copy_repo, venv_env
from advgen.models import load_model
from tests.conftest import ROOT


def test_train_stage_with_two_processes(tmp_path: Path):
    copy_repo(ROOT, tmp_path)
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["profile"] = "smoke"
    params["device"] = "cpu"
    params["ingest"]["dataset"] = "digits"
    params["train"]["nproc"] = 2
    params["profiles"]["smoke"]["train"].update(epochs=3, n_train=0, n_test=0, batch_size=64)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    for cmd in (["stages/ingest.py"], ["stages/train.py", "mlp"]):
        proc = subprocess.run([sys.executable, *cmd], cwd=tmp_path, env=venv_env(), capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
    model = load_model(tmp_path / "models" / "mlp")
    assert model.sidecar["nproc"] == 2 and model.sidecar["in_shape"] == [1, 8, 8]
    metrics = json.loads((tmp_path / "reports/train/mlp/metrics.json").read_text())
    assert metrics["test_accuracy"] > 0.8, metrics
    assert set(json.loads((tmp_path / "reports/cost/train/mlp.json").read_text())) == {"wall_s", "cpu_s", "peak_rss_mb"}
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["mlp"]  # no temp folders left
    assert (tmp_path / "reports/train/mlp/curve.tsv").read_text().count("\n") == 4
