"""Backdoor poisoning (advgen.backdoors.poison/dataset/evaluation) and its params checks."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from advgen.areas import validate_params
from advgen.backdoors.dataset import load_index, load_triggered, poison_dataset, poisoned_mask, write_poisoned
from advgen.backdoors.evaluation import DefenseInputs, EvalSet, Recipe, backdoor_metrics, evaluate_backdoor, paired_drop
from advgen.backdoors.params import BackdoorDefenseConfig, PoisonSpec
from advgen.backdoors.poison import (
    PERTURBED,
    RELABELLED,
    TRIGGERED,
    BadNets,
    Blended,
    CleanLabel,
    PoisonError,
    blend_pattern,
    checkerboard,
    scoring_mask,
    to_unit,
)
from advgen.config import ConfigError, from_dict, load_params, load_section
from advgen.data import load_split, write_splits
from advgen.models import build_model
from advgen.training import fit
from tests.conftest import ROOT

PARAMS = load_params(ROOT / "params.yaml")


def _data(n: int = 400, classes: int = 4, side: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Separable toy images: class k has a bright horizontal band at rows 2k..2k+1, plus noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    x = torch.randint(0, 60, (n, 1, side, side), generator=g, dtype=torch.uint8)
    for k in range(classes):
        x[y == k, :, 2 * k:2 * k + 2, :] = 200
    return x, y


def test_badnets_changes_exactly_the_recorded_images_and_labels():
    x, y = _data()
    res = BadNets(target=0, rate=0.1, size=3, keep_target=0.5).poison(x, y, 4, torch.Generator().manual_seed(1))
    changed = ((res.images != x).flatten(1).any(1)) | (res.labels != y)
    recorded = torch.zeros(len(y), dtype=torch.bool)
    recorded[res.indices] = True
    assert torch.equal(changed, recorded)  # nothing else differs
    idx = res.index()
    relabelled = [i for i, k in zip(idx["indices"], idx["kinds"]) if k == RELABELLED]
    kept = [i for i, k in zip(idx["indices"], idx["kinds"]) if k == TRIGGERED]
    assert len(relabelled) == 40 and len(kept) == 20
    assert (res.labels[relabelled] == 0).all() and (y[relabelled] != 0).all()
    assert (res.labels[kept] == 0).all() and (y[kept] == 0).all()
    assert idx["original_labels"] == y[res.indices].tolist() and idx["labels"] == res.labels[res.indices].tolist()
    # the trigger sits at the recorded corner: one pixel in from the bottom-right
    i = relabelled[0]
    assert idx["rows"][0] == 4 and idx["cols"][0] == 4
    assert torch.equal(res.images[i, :, 4:7, 4:7], (checkerboard(3, 1) * 255).to(torch.uint8))


def test_source_specific_and_random_location():
    x, y = _data()
    res = BadNets(target=0, rate=0.05, source=2, location="random").poison(x, y, 4, torch.Generator().manual_seed(0))
    assert (y[res.indices] == 2).all() and (res.labels[res.indices] == 0).all()
    assert len(set(zip(res.rows.tolist(), res.cols.tolist()))) > 1  # not all at one place
    assert torch.equal(scoring_mask(y, 0, 2), y == 2) and torch.equal(scoring_mask(y, 0, None), y != 0)


def test_blended_mixes_the_pattern_at_alpha():
    x, y = _data()
    pattern = blend_pattern((1, 8, 8), torch.Generator().manual_seed(0))
    res = Blended(target=1, rate=0.05, pattern=pattern, alpha=0.2).poison(x, y, 4, torch.Generator().manual_seed(0))
    i = res.indices[0]
    expect = ((0.8 * x[i].float() / 255 + 0.2 * pattern) * 255).round()
    assert (res.images[i].float() - expect).abs().max() <= 1


def test_clean_label_keeps_every_label_and_stays_in_the_ball():
    x, y = _data()
    model = build_model("cnn", (1, 8, 8), 4, generator=torch.Generator().manual_seed(0))
    res = CleanLabel(BadNets(0, 0.1).trigger, target=0, rate=0.1, model=model.eval(), eps=16 / 255, steps=3
                     ).poison(x, y, 4, torch.Generator().manual_seed(0))
    assert torch.equal(res.labels, y) and set(res.kinds) == {PERTURBED} and (y[res.indices] == 0).all()
    outside = torch.ones(8, 8, dtype=torch.bool)
    outside[4:7, 4:7] = False  # the trigger's pixels are replaced, the rest only perturbed
    diff = (res.images[res.indices].int() - x[res.indices].int()).abs()[:, 0][:, outside]
    assert 0 < diff.max() <= 16


@pytest.mark.parametrize("make, needle", [
    (lambda: BadNets(0, 0.0), "rate: must lie in (0, 1]"),
    (lambda: BadNets(0, 1.5), "rate: must lie in (0, 1]"),
    (lambda: Blended(0, 0.1, torch.zeros(1, 8, 8), alpha=0.0), "alpha: must lie in (0, 1]"),
    (lambda: Blended(0, 0.1, torch.zeros(1, 8, 8), alpha=1.5), "alpha: must lie in (0, 1]"),
])
def test_bad_attack_arguments(make, needle):
    with pytest.raises(PoisonError, match=needle.replace("(", r"\(").replace("]", r"\]")):
        make()


@pytest.mark.parametrize("attack, needle", [
    (BadNets(target=7, rate=0.1), "target: must be a class in 0..3"),
    (BadNets(target=0, rate=0.1, source=0), "source: must differ from the target"),
    (BadNets(target=0, rate=0.5, source=1), "needs 200 class-1 images, but the training split has only 100"),
    (BadNets(target=0, rate=0.1, size=9), "trigger_size: a 9x9 trigger does not fit a 8x8 image"),
])
def test_impossible_poisoning_is_refused(attack, needle):
    x, y = _data()
    with pytest.raises(PoisonError, match=needle):
        attack.poison(x, y, 4, torch.Generator().manual_seed(0))


def _spec(**kw) -> PoisonSpec:
    return from_dict(PoisonSpec, {"attack": "badnets", "rate": 0.1, "target": 0, **kw}, "poison.configs.x")


@pytest.mark.parametrize("kw, needle", [
    ({"rate": 0}, "'poison.configs.x.rate' must lie in (0, 1]"),
    ({"rate": 1.2}, "'poison.configs.x.rate' must lie in (0, 1]"),
    ({"source": 0}, "'poison.configs.x.source' must differ from the target"),
    ({"attack": "blended", "alpha": 0}, "'poison.configs.x.alpha' must lie in (0, 1]"),
    ({"attack": "blended", "trigger_size": 3}, "'poison.configs.x.trigger_size' is not used by attack 'blended'"),
    ({"attack": "clean_label"}, "'poison.configs.x.eps' must be set for attack 'clean_label'"),
    ({"attack": "nope"}, "'poison.configs.x.attack' must be one of"),
])
def test_poison_spec_errors_name_the_key(kw, needle):
    with pytest.raises(ConfigError) as err:
        _spec(**kw)
    assert needle in str(err.value)


@pytest.mark.parametrize("kw, counts, needle", [
    ({"target": 10}, [100] * 10, "'poison.configs.x.target' must be a class in 0..9"),
    ({"trigger_size": 29}, [100] * 10, "'poison.configs.x.trigger_size' = 29: a 29x29 trigger does not fit the 28x28 image"),
    ({"source": 3, "rate": 0.2}, [100] * 10, "needs 200 source-class images, but the training split has 100"),
])
def test_poison_spec_checks_the_data(kw, counts, needle):
    with pytest.raises(ConfigError) as err:
        _spec(**kw).check_data(10, 28, counts)
    assert needle in str(err.value)


def _params(edit) -> dict:
    p = copy.deepcopy(PARAMS)
    edit(p)
    return p


@pytest.mark.parametrize("edit, needle", [
    (lambda p: p["train"]["models"]["badnets_10"].update(data="poisoned/nope"),
     "'train.models.badnets_10.data' = 'poisoned/nope' names no prepared dataset"),
    (lambda p: p["train"]["models"]["cnn"].update(data="clean"), "'train.models.cnn.data' must be 'prepared'"),
    (lambda p: p["train"]["models"]["cnn"].pop("data"), "missing key 'train.models.cnn.data'"),
    (lambda p: p["backdoor_defense"]["models"].update(cnn=[]), "'backdoor_defense.models.cnn' must be a train.models"),
    (lambda p: p["backdoor_defense"]["models"].update(badnets_1=["spectrall"]),
     "'backdoor_defense.models.badnets_1' must list defenses among"),
    (lambda p: p["backdoor_defense"].update(reference="badnets_1"), "'backdoor_defense.reference' = 'badnets_1' must"),
    (lambda p: p["poison"]["configs"]["badnets_1"].update(rate=0), "'poison.configs.badnets_1.rate' must lie in (0, 1]"),
])
def test_backdoor_params_are_checked(edit, needle):
    with pytest.raises(ConfigError) as err:
        validate_params(_params(edit))
    assert needle in str(err.value)


def test_model_epochs_are_capped_by_the_profile():
    from advgen.schema import TrainConfig
    default = load_section(TrainConfig, PARAMS, "train", "default")
    smoke = load_section(TrainConfig, PARAMS, "train", "smoke")
    assert default.epochs_of("badnets_10") == 5 and default.epochs_of("cnn") == default.epochs
    assert smoke.epochs_of("badnets_10") == smoke.epochs == 1


def _write_clean(folder: Path, n: int = 400) -> None:
    x, y = _data(n)
    xt, yt = _data(200, seed=1)
    folder.mkdir(parents=True)
    classes = ["a", "b", "c", "d"]
    splits = write_splits(folder, {"train": (x.numpy(), y.numpy()), "test": (xt.numpy(), yt.numpy())}, classes)
    (folder / "manifest.json").write_text(json.dumps({"dataset": "toy", "classes": classes, "files": {},
                                                       "splits": splits}))


def test_poisoned_dataset_has_ingest_format_and_a_separate_index(tmp_path):
    clean = tmp_path / "prepared"
    _write_clean(clean)
    p = poison_dataset("bd", _spec(rate=0.05), clean, torch.Generator().manual_seed(0))
    write_poisoned(p, tmp_path / "poisoned" / "bd", tmp_path / "backdoor" / "bd")
    files = sorted(f.name for f in (tmp_path / "poisoned" / "bd").iterdir())
    assert files == ["manifest.json", "test.safetensors", "train.safetensors"]  # exactly ingest's files
    manifest = json.loads((tmp_path / "poisoned" / "bd" / "manifest.json").read_text())
    assert manifest["parent"]["manifest_sha256"] and manifest["poisoning"]["n_poisoned"] == 20
    x, y = load_split(tmp_path / "poisoned" / "bd", "train")
    x0, y0 = load_split(clean, "train")
    index = load_index(tmp_path / "backdoor" / "bd")
    differs = ((x != x0).flatten(1).any(1) | (y != y0)).nonzero().squeeze(1).tolist()
    assert differs == index["indices"] and y0[differs].tolist() == index["original_labels"]
    assert torch.equal(load_split(tmp_path / "poisoned" / "bd", "test")[1], load_split(clean, "test")[1])
    xt, yt = load_triggered(tmp_path / "backdoor" / "bd")
    assert torch.equal(yt, load_split(clean, "test")[1]) and (xt[:, :, 4:7, 4:7] != load_split(clean, "test")[0][:, :, 4:7, 4:7]).any()
    sub = torch.tensor([0, 5, *index["indices"][:3]])
    assert poisoned_mask(index, sub).tolist() == [i in index["indices"] for i in sub.tolist()]


def _toy_backdoor(rate: float = 0.1, epochs: int = 8):
    """A cnn trained on toy data poisoned with a bright 3x3 checkerboard (class 0 target)."""
    x, y = _data(800)
    res = BadNets(target=0, rate=rate).poison(x, y, 4, torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(0)
    model = build_model("cnn", (1, 8, 8), 4, generator=gen, hidden=32, width=8)
    xt, yt = _data(400, seed=2)
    trig, _, _ = BadNets(target=0, rate=rate).trigger.apply(xt, gen)
    mask = scoring_mask(yt, 0, None)
    ev = EvalSet(to_unit(xt), yt, to_unit(trig[mask]), yt[mask], 0)
    fit(model, (to_unit(res.images), res.labels), (ev.clean_x, ev.clean_y), epochs=epochs, batch_size=32, lr=0.01,
        weight_decay=0.0, num_classes=4, generator=gen, device=torch.device("cpu"))
    return model, res, ev


def test_a_strong_trigger_is_learned():
    model, res, ev = _toy_backdoor()
    m = backdoor_metrics(ev.score(model, torch.device("cpu")), ev)
    assert m["asr"]["value"] >= 0.95 and m["ca"]["value"] >= 0.9
    assert m["ra"]["value"] <= 0.05
    assert m["asr"]["n"] == len(ev.trig_y) == int((ev.clean_y != 0).sum())


def test_every_defense_runs_and_is_scored():
    model, res, ev = _toy_backdoor(epochs=4)
    recipe = Recipe("cnn", {"hidden": 32, "width": 8}, (1, 8, 8), 4, 0, 2, 32, 0.01, 0.0)
    x, y = to_unit(res.images), res.labels
    is_poison = torch.zeros(len(y), dtype=torch.bool)
    is_poison[res.indices] = True
    cx, cy = _data(200, seed=3)
    inp = DefenseInputs(model, recipe, x, y, is_poison, len(res.indices), to_unit(cx), cy)
    cfg = load_section(BackdoorDefenseConfig, PARAMS, "backdoor_defense", "smoke")
    cfg.finetune_epochs = 1
    defenses = ["spectral", "clustering", "strip", "fine_pruning", "fine_tuning"]
    out, seconds = evaluate_backdoor(inp, ev, defenses, cfg, torch.Generator().manual_seed(0), torch.device("cpu"),
                                     {"self": model})
    assert set(seconds) == {*defenses, "features"} and all(v >= 0 for v in seconds.values())
    assert out["ca_drop"]["self"]["value"] == 0 and out["ca_drop"]["self"]["only_ref"] == 0
    for d in defenses:
        r = out["defenses"][d]
        assert 0 <= r["der"] <= 1 and {"ca", "asr", "ra"} <= set(r) and "seconds" not in r
    for d in ("spectral", "clustering"):
        det = out["defenses"][d]["detection"]
        assert det["n_poison"] == len(res.indices) and out["defenses"][d]["n_removed"] == det["n_flagged"]
    assert out["defenses"]["fine_pruning"]["pruning"]["pruned"] >= 1
    # STRIP counts a rejected input as neither correct nor a success
    strip = out["defenses"]["strip"]
    assert strip["asr"]["value"] <= out["undefended"]["asr"]["value"]


def test_paired_drop_on_hand_made_outcomes():
    ref = torch.tensor([1, 1, 1, 1, 0, 1, 1, 1, 1, 1], dtype=torch.bool)
    other = torch.tensor([1, 0, 1, 0, 0, 1, 1, 1, 1, 1], dtype=torch.bool)
    d = paired_drop(ref, other)
    assert d["value"] == pytest.approx(0.2) and d["only_ref"] == 2 and d["only_other"] == 0
    se = np.sqrt(2 - 4 / 10) / 10
    assert d["ci95"] == pytest.approx([0.2 - 1.96 * se, 0.2 + 1.96 * se])
    assert d["p_ref_higher"] == pytest.approx(0.25)


def test_pruned_channels_stay_pruned_through_fine_tuning():
    from advgen.backdoors.defenses import prune_last_conv
    x, y = _data(200)
    model = build_model("cnn", (1, 8, 8), 4, generator=torch.Generator().manual_seed(0), hidden=32, width=8)
    info = prune_last_conv(model, to_unit(x), y, max_acc_drop=1.0, max_fraction=0.5)
    assert info["pruned"] == 8  # half of 2 * width channels, the accuracy rule switched off
    fit(model, (to_unit(x), y), (to_unit(x), y), epochs=1, batch_size=32, lr=0.01, weight_decay=0.0,
        num_classes=4, generator=torch.Generator().manual_seed(1), device=torch.device("cpu"))
    seen = {}
    relu = model.features[6]
    handle = relu.register_forward_hook(lambda m, i, o: seen.setdefault("out", o))
    model.eval()(to_unit(x[:16]))
    handle.remove()
    assert seen["out"][:, info["pruned_channels"]].abs().max() == 0
    assert seen["out"].abs().sum() > 0


def test_every_config_is_checked_before_anything_is_written(tmp_path):
    from advgen.backdoors.dataset import check_all
    clean = tmp_path / "prepared"
    _write_clean(clean)
    check_all({"ok": _spec(rate=0.05)}, clean)
    with pytest.raises(ConfigError, match="'poison.configs.bad.target' must be a class in 0..3"):
        check_all({"ok": _spec(rate=0.05), "bad": _spec(target=4)}, clean)
