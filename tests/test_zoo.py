"""Bring your own classifier (advgen.zoo): a safetensors + JSON folder loads into the zoo's
architecture exactly, anything else is refused with the file and the reason."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from advgen.models import build_model
from advgen.zoo import ModelImportError, load_folder, score

SHAPE = (1, 28, 28)


def _folder(tmp_path: Path, meta: dict | None = None, state: dict | None = None) -> Path:
    folder = tmp_path / "my_cnn"
    folder.mkdir(exist_ok=True)
    model = build_model("cnn", SHAPE, 10, generator=torch.Generator().manual_seed(3))
    save_file(state if state is not None else model.state_dict(), str(folder / "model.safetensors"))
    (folder / "model.json").write_text(json.dumps(meta if meta is not None else {"arch": "cnn", "claimed_accuracy": 0.9}))
    return folder


def test_weights_load_exactly_and_provenance_is_recorded(tmp_path):
    folder = _folder(tmp_path)
    ref = build_model("cnn", SHAPE, 10, generator=torch.Generator().manual_seed(3)).eval()
    imp = load_folder(folder, SHAPE, 10)
    x = torch.rand(4, *SHAPE, generator=torch.Generator().manual_seed(0))
    assert torch.equal(imp.model(x), ref(x)) and not imp.model.training
    assert imp.arch == "cnn" and imp.arch_kwargs == {} and imp.claimed_accuracy == 0.9
    assert len(imp.provenance["weights_sha256"]) == 64 and imp.provenance["path"] == str(folder)


def test_test_metrics_are_the_arithmetic_of_the_predictions():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3, bias=False))
    with torch.no_grad():
        model[1].weight.copy_(torch.eye(3, 4))  # logits = the first three pixels
    x = torch.tensor([[1., 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 0]]).reshape(4, 1, 2, 2)
    y = torch.tensor([0, 1, 0, 2])  # predictions 0, 1, 2, 0: two right
    m = score(model, x, y, 3, batch_size=3)
    assert m["test_accuracy"] == 0.5 and m["n_test"] == 4 and m["per_class_accuracy"] == [0.5, 1.0, 0.0]
    right, wrong = -math.log(math.e / (math.e + 2)), -math.log(1 / (math.e + 2))
    assert m["test_loss"] == pytest.approx((2 * right + 2 * wrong) / 4)
    lo, hi = m["test_accuracy_ci95"]
    assert lo < 0.5 < hi


@pytest.mark.parametrize("edit, needle", [
    (lambda f: (f / "model.json").write_text("{oops"), "model.json: not a readable JSON file"),
    (lambda f: (f / "model.json").write_text("[1]"), "expected a JSON object with 'arch', found list"),
    (lambda f: (f / "model.json").write_text('{"arch": "vit"}'), "'arch' = 'vit'; expected one of"),
    (lambda f: (f / "model.json").write_text('{"arch": "cnn", "lr": 1}'), "unknown key(s) ['lr']"),
    (lambda f: (f / "model.json").write_text('{"arch": "cnn", "claimed_accuracy": 93}'), "must be a fraction in [0, 1], found 93"),
    (lambda f: (f / "model.json").write_text('{"arch": "cnn", "arch_kwargs": {"width": 8}}'), "does not fit architecture 'cnn'"),
    (lambda f: (f / "model.json").write_text('{"arch": "cnn", "arch_kwargs": {"depth": 8}}'), "'arch_kwargs' has unknown key(s) ['depth']"),
    (lambda f: (f / "model.json").write_text('{"arch": "cnn", "arch_kwargs": {"generator": 1}}'), "unknown key(s) ['generator']"),
    (lambda f: (f / "model.json").write_text('{"arch": "cnn", "arch_kwargs": [8]}'), "'arch_kwargs' must be an object"),
    (lambda f: (f / "model.json").write_text('{"arch": "mlp"}'), "missing ["),
    (lambda f: (f / "model.json").unlink(), "model.json: not found"),
    (lambda f: (f / "model.safetensors").write_bytes(b"not safetensors"), "model.safetensors: not a safetensors file"),
    (lambda f: (f / "weights.pt").write_bytes(b"\x80\x04"), "holds ['weights.pt']; pickle-based files are never loaded"),
])
def test_bad_folders_are_refused_with_the_file_and_the_reason(tmp_path, edit, needle):
    folder = _folder(tmp_path)
    edit(folder)
    with pytest.raises(ModelImportError) as exc:
        load_folder(folder, SHAPE, 10)
    assert needle in str(exc.value) and str(folder) in str(exc.value)


def test_missing_extra_misshaped_and_non_finite_tensors(tmp_path):
    state = build_model("cnn", SHAPE, 10).state_dict()
    first = next(iter(state))
    for broken, needle in (({k: v for k, v in state.items() if k != first}, f"missing ['{first}']"),
                           ({**state, "extra.weight": torch.zeros(1)}, "unexpected ['extra.weight']"),
                           ({**state, first: torch.zeros(1)}, f"wrong shape: {first} (1,)"),
                           ({**state, first: torch.full_like(state[first], float("nan"))}, f"non-finite values in ['{first}']")):
        with pytest.raises(ModelImportError, match=None) as exc:
            load_folder(_folder(tmp_path, state=broken), SHAPE, 10)
        assert needle in str(exc.value), str(exc.value)
    with pytest.raises(ModelImportError, match="not a folder"):
        load_folder(tmp_path / "nowhere", SHAPE, 10)
