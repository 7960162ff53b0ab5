"""Architectures and the safetensors checkpoint format."""
import json

import pytest
import torch

from advgen.models import ARCHS, Dropout, build_model, load_model, save_model, to_layout


@pytest.mark.parametrize("arch", sorted(ARCHS))
@pytest.mark.parametrize("shape", [(1, 28, 28), (1, 8, 8), (3, 32, 32)])
def test_shapes(arch, shape):
    model = build_model(arch, shape, 10).eval()
    assert model(torch.rand(4, *shape)).shape == (4, 10)


def _saved(tmp_path, arch="cnn"):
    torch.manual_seed(0)
    model = build_model(arch, (1, 28, 28), 10, **({"width": 8} if arch == "cnn" else {})).eval()
    save_model(model, tmp_path, {"arch": arch, "arch_kwargs": {"width": 8} if arch == "cnn" else {},
                                 "in_shape": [1, 28, 28], "num_classes": 10})
    return model


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_round_trip_gives_identical_logits(tmp_path, arch):
    model = to_layout(_saved(tmp_path, arch))  # the loader puts conv models in channels_last
    loaded = load_model(tmp_path)
    x = torch.rand(5, 1, 28, 28)
    assert torch.equal(model(x), loaded(x)) and not loaded.training
    assert loaded.sidecar["arch"] == arch


def test_missing_files_and_foreign_sidecars(tmp_path):
    with pytest.raises(FileNotFoundError, match="model.json: not found; it is written by the train stage"):
        load_model(tmp_path)
    _saved(tmp_path)
    meta = json.loads((tmp_path / "model.json").read_text())
    (tmp_path / "model.json").write_text(json.dumps({**meta, "format": "other"}))
    with pytest.raises(ValueError, match=r"expected format 'advgen-model/1' produced by 'train', found \('other', None\)"):
        load_model(tmp_path)
    (tmp_path / "model.json").write_text(json.dumps(meta))
    data = bytearray((tmp_path / "model.safetensors").read_bytes())
    data[-1] ^= 1
    (tmp_path / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="does not match the sidecar"):
        load_model(tmp_path)


def test_unknown_arch():
    with pytest.raises(ValueError, match="unknown architecture 'vgg'"):
        build_model("vgg", (1, 28, 28), 10)
    with pytest.raises(ValueError, match="architecture 'cnn': bad arguments"):
        build_model("cnn", (1, 28, 28), 10, depth=3)


def test_init_from_generator_is_reproducible_and_leaves_global_rng_alone():
    state = torch.get_rng_state()
    a = build_model("cnn", (1, 28, 28), 10, generator=torch.Generator().manual_seed(3))
    torch.manual_seed(123)  # a different global state must not matter
    b = build_model("cnn", (1, 28, 28), 10, generator=torch.Generator().manual_seed(3))
    c = build_model("cnn", (1, 28, 28), 10, generator=torch.Generator().manual_seed(4))
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["features.0.weight"], sc["features.0.weight"])
    # torch's default bound for a conv weight: 1/sqrt(fan_in) with fan_in = 1*3*3.
    assert float(sa["features.0.weight"].abs().max()) <= 1 / 3 + 1e-6
    torch.set_rng_state(state)


def test_dropout_uses_its_generator():
    d = Dropout(0.5).train()
    x = torch.ones(1000)
    d.generator = torch.Generator().manual_seed(0)
    a = d(x)
    d.generator = torch.Generator().manual_seed(0)
    torch.manual_seed(99)
    assert torch.equal(a, d(x))
    assert set(a.unique().tolist()) == {0.0, 2.0} and 400 < int((a == 0).sum()) < 600
    assert torch.equal(d.eval()(x), x)
