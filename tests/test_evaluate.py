"""``advgen evaluate PATH`` (advgen.attacks.benchmark): a model the user brings loads from a
safetensors folder or a TorchScript archive (never a pickle), and comes out as a RobustBench-style
entry whose figures are those of the robustness stage's cascade; AutoAttack's flags fire on the
models they are meant for and on no other."""
from __future__ import annotations

import copy
import dataclasses
import json
import pickle
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import save_file
from torch import nn

from advgen.attacks.benchmark import EvaluateError, entry, flags, load_user_model
from advgen.attacks.params import load_attack_config
from advgen.cli import main as cli
from advgen.models import build_model

SHAPE = (1, 28, 28)
PARAMS = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())


def _cnn(seed: int = 3) -> nn.Module:
    return build_model("cnn", SHAPE, 10, generator=torch.Generator().manual_seed(seed)).eval()


def _folder(tmp_path: Path, model: nn.Module) -> Path:
    folder = tmp_path / "mine"
    folder.mkdir()
    save_file(model.state_dict(), str(folder / "model.safetensors"))
    (folder / "model.json").write_text(json.dumps({"arch": "cnn", "claimed_accuracy": 0.9}))
    return folder


def _scripted(tmp_path: Path, model: nn.Module, name: str = "mine.pt") -> Path:
    path = tmp_path / name
    torch.jit.save(torch.jit.script(model), str(path))
    return path


class Boom:
    """Unpickling this writes a file: the proof that a loader unpickled it."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "unpickled"))


def test_a_folder_and_a_torchscript_archive_of_the_same_weights_load_to_the_same_function(tmp_path):
    model = _cnn()
    a = load_user_model(_folder(tmp_path, model), SHAPE, 10)
    b = load_user_model(_scripted(tmp_path, model), SHAPE, 10)
    x = torch.rand(8, *SHAPE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(a.model(x), model(x)) and torch.allclose(b.model(x), model(x), atol=1e-6)
    assert a.kind == "safetensors" and a.claimed == 0.9 and b.kind == "torchscript" and len(b.provenance["sha256"]) == 64


def test_pickles_are_refused_and_never_unpickled(tmp_path):
    marker = tmp_path / "marker"
    saved = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(1), "payload": Boom(marker)}, str(saved))
    with pytest.raises(EvaluateError, match=r"model\.pt: a torch\.save archive .* never loaded"):
        load_user_model(saved, SHAPE, 10)
    raw = tmp_path / "model.pkl"
    raw.write_bytes(pickle.dumps(Boom(marker)))
    with pytest.raises(EvaluateError, match=r"model\.pkl: not a TorchScript archive \(not a zip file\)"):
        load_user_model(raw, SHAPE, 10)
    folder = tmp_path / "with_pickle"
    folder.mkdir()
    (folder / "weights.pkl").write_bytes(pickle.dumps(Boom(marker)))
    with pytest.raises(EvaluateError, match=r"with_pickle: holds \['weights\.pkl'\]; pickle-based files are never loaded"):
        load_user_model(folder, SHAPE, 10)
    assert not marker.exists()


def test_bad_files_name_the_file_and_what_was_expected(tmp_path):
    with pytest.raises(EvaluateError, match=r"nowhere\.pt: not found; expected a model folder"):
        load_user_model(tmp_path / "nowhere.pt", SHAPE, 10)
    five = nn.Sequential(nn.Flatten(), nn.Linear(784, 5)).eval()
    with pytest.raises(EvaluateError, match=r"five\.pt: the model maps \(2, 1, 28, 28\) to \(2, 5\); expected \(2, 10\)"):
        load_user_model(_scripted(tmp_path, five, "five.pt"), SHAPE, 10)
    small = nn.Sequential(nn.Flatten(), nn.Linear(100, 10)).eval()
    with pytest.raises(EvaluateError, match=r"small\.pt: the model fails on a batch of shape \(2, 1, 28, 28\)"):
        load_user_model(_scripted(tmp_path, small, "small.pt"), SHAPE, 10)


def test_a_failed_evaluation_writes_no_entry(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    torch.save({"w": torch.zeros(1)}, str(tmp_path / "m.pt"))
    with pytest.raises(SystemExit) as exc:
        cli(["evaluate", "m.pt", "--out", "entry.json"])
    assert exc.value.code == 2 and not (tmp_path / "entry.json").exists()
    # the dataset is checked before any model is loaded, with the command to run
    (tmp_path / "ok").mkdir()
    with pytest.raises(SystemExit):
        cli(["evaluate", "ok", "--out", "entry.json"])
    assert not (tmp_path / "entry.json").exists()


class Softmaxed(nn.Module):
    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x).softmax(1)


class Quantised(nn.Module):
    """Rounds its input to 4 grey levels: the input gradient is exactly zero everywhere."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(torch.round(x * 3) / 3)


def test_flags_fire_on_the_models_they_describe_and_only_there():
    x = torch.rand(20, *SHAPE, generator=torch.Generator().manual_seed(1))
    y = torch.arange(20) % 10
    plain = flags(_cnn(), x, y)
    assert not plain["zero_gradient"]["raised"] and not plain["softmax_output"]["raised"]
    soft = flags(Softmaxed(_cnn()), x, y)
    assert soft["softmax_output"]["raised"] and not soft["zero_gradient"]["raised"]
    quant = flags(Quantised(_cnn()), x, y, batch_size=7)
    assert quant["zero_gradient"] == {"share": 1.0, "count": 20, "n": 20, "raised": True}


def _smoke_cfg(eps: list[float]):
    p = copy.deepcopy(PARAMS)
    p["profile"] = "smoke"
    cfg = load_attack_config(p)
    return dataclasses.replace(cfg, eps_linf=[0.0, *eps], convergence_eps=eps[:1], check_eps=eps[-1])


def test_the_entry_is_the_cascade_worst_case_and_never_above_any_attack():
    model = _cnn(5)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(24, *SHAPE, generator=gen)
    with torch.no_grad():
        y = model(x).argmax(1)  # every image clean-correct: the attacks have something to break
    y[:4] = (y[:4] + 1) % 10  # and four that are not
    cfg = _smoke_cfg([0.05, 0.1])
    e = entry(model, x, y, cfg, name="mine", dataset="fashion-mnist", generator=torch.Generator().manual_seed(0),
              claimed=0.9)
    assert e["clean_acc"] == pytest.approx(20 / 24) and e["claimed_acc"] == 0.9 and e["eps"] == [0.05, 0.1]
    assert e["threat_model"] == "Linf" and e["number_forward_passes"] == 1 and e["n_eval"] == 24
    assert "attack.cascade = advgen" in e["attack"] and "APGD-T" in e["attack"] and "FAB-T" not in e["attack"]
    for eps in ("0.05", "0.1"):
        worst = e["autoattack_acc"][eps]
        assert worst <= min(e["linf"][a][eps] for a in ("fgsm", "pgd", "noise")) and worst <= e["clean_acc"]
        cascade = next(c for c in e["cascade"] if f"{c['eps']:g}" == eps)
        assert cascade["robust"]["accuracy"] == worst and cascade["n"] == 24
        lo, hi = e["autoattack_acc_ci95"][eps]
        assert lo <= worst <= hi
    assert e["autoattack_acc"]["0.1"] <= e["autoattack_acc"]["0.05"]
    assert e["checks_failed"] == len(e["failed_checks"]) and not e["invariant_violations"]
