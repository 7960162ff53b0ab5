"""params.yaml is validated whole: unknown keys anywhere fail, errors name the real key."""
from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys

import pytest
import yaml

from advgen.areas import validate_params
from advgen.attacks.params import ATTACK_NAMES
from advgen.config import ConfigError, load_params, load_section
from advgen.schema import ARCH_NAMES, DATASET_NAMES, TrainConfig
from tests.conftest import ROOT

PARAMS = load_params(ROOT / "params.yaml")


def _with(edit) -> dict:
    params = copy.deepcopy(PARAMS)
    edit(params)
    return params


def _error(params: dict) -> str:
    with pytest.raises(ConfigError) as err:
        validate_params(params)
    return str(err.value)


def test_the_committed_params_are_valid_in_every_profile():
    assert validate_params(PARAMS) == ["default", "smoke"]


@pytest.mark.parametrize("edit, key", [
    (lambda p: p["train"].update(lrr=0.01), "'train.lrr'"),  # a typo no stage reads
    (lambda p: p["profiles"]["default"]["train"].update(epoch=3), "'profiles.default.train.epoch'"),  # inactive
    (lambda p: p["profiles"]["smoke"].update(trian={}), "'profiles.smoke.trian'"),
    (lambda p: p.update(sead=1), "'sead'"),
    (lambda p: p["train"]["models"]["cnn"].update(arhc="cnn"), "'train.models.cnn.arhc'"),
    (lambda p: p["patch"].update(w_tvv=0.1), "'patch.w_tvv'"),
])
def test_unknown_keys_anywhere_fail_with_their_full_path(edit, key):
    msg = _error(_with(edit))
    assert f"unknown key {key}" in msg or f"unknown top-level key {key}" in msg


@pytest.mark.parametrize("edit, needle", [
    (lambda p: p["profiles"]["smoke"]["train"].update(epochs=0), "'profiles.smoke.train.epochs' must be >= 1, found 0"),
    (lambda p: p["profiles"]["default"]["attack"].update(n_eval="many"), "'profiles.default.attack.n_eval' = 'many' has the wrong type"),
    (lambda p: p["train"]["models"].update(foo={"arch": "vit", "data": "prepared"}), "'train.models.foo.arch' must be one of"),
    (lambda p: p["train"].update(lr=-1), "'train.lr' must be > 0, found -1"),
    (lambda p: p["profiles"]["smoke"]["train"].pop("epochs"), "missing key 'profiles.smoke.train.epochs'"),
    (lambda p: p["train"].update(epochs=3), "'train.epochs' is size-like: remove it from 'train' and set it in each profile"),
    (lambda p: p["train"].update(lrr=3), "'train' accepts ['lr', 'models', 'nproc', 'weight_decay'] (its size-like keys "
                                         "['batch_size', 'epochs', 'n_test', 'n_train'] go in each profile"),
    (lambda p: p["profiles"]["smoke"]["train"].update(epoch=1),
     "unknown key 'profiles.smoke.train.epoch'; 'profiles.smoke.train' accepts the size-like keys ['batch_size', 'epochs',"),
    (lambda p: p["profiles"]["smoke"]["train"].update(lr=0.1), "'profiles.smoke.train.lr' is not a size-like key: remove it from the profile"),
    (lambda p: p["profiles"]["smoke"]["patch"].update(lr=0.1), "'profiles.smoke.patch.lr' is not a size-like key"),
    (lambda p: p["train"]["models"]["cnn"].update(arch_kwargs={"widht": 8}), "'train.models.cnn.arch_kwargs' has unknown key(s) ['widht']; cnn accepts"),
    (lambda p: p.pop("seed"), "missing key 'seed'"),
    (lambda p: p["attack"]["attacks"].append("fgsm"), "'attack.attacks' names an attack twice"),
    (lambda p: p["attack"]["models"].append("cnn"), "'attack.models' names ['cnn'] more than once"),
    (lambda p: p.update(profile="fast"), "'profile' = 'fast' is not defined; expected one of ['default', 'smoke']"),
    (lambda p: p["imports"]["models"].update(x={"path": "/home/me/w"}), "'imports.models.x.path' must be a folder inside the repository"),
    (lambda p: p["imports"]["models"].update(x={"path": "../w"}), "'imports.models.x.path' must be a folder inside the repository"),
    (lambda p: p["imports"]["models"].update(x={"path": "."}), "'imports.models.x.path' must be a folder inside"),
    (lambda p: p["imports"]["models"].update(x={"path": "weights/.."}), "'imports.models.x.path' must be a folder inside"),
    (lambda p: p["imports"]["models"].update(x={"path": "~/w"}), "'imports.models.x.path' must be a folder inside"),
    (lambda p: p["imports"]["models"].update(x={"path": ""}), "'imports.models.x.path' must be a folder inside"),
    (lambda p: p["profiles"]["smoke"].update(imports={"n": 1}), "'profiles.smoke.imports' takes no keys ('imports' has no size-like key)"),
    (lambda p: (p["imports"]["models"].update(cnn={"path": "w"}), p["defend"]["defenses"].update(
        logreg={"method": "gaussian", "sigma": 0.25})),
     "['cnn'] named in both 'train.models' and 'imports.models'; ['logreg'] named in both 'train.models' and 'defend.defenses'"),
    (lambda p: p["imports"]["models"].update(x={"path": "w", "arch": "cnn"}), "unknown key 'imports.models.x.arch'"),
    (lambda p: p["imports"]["models"].update(cnn={"path": "w"}), "['cnn'] named in both 'train.models' and 'imports.models'"),
    (lambda p: p["attack"]["models"].append("mine"), "'attack.models' names ['mine'], which are not models"),
])
def test_errors_name_the_real_key(edit, needle):
    assert needle in _error(_with(edit))


def test_size_like_keys_live_in_the_profile_and_others_in_the_section():
    params = _with(lambda p: (p["profiles"]["smoke"]["train"].pop("epochs"), p["profiles"]["default"]["train"].pop("epochs"),
                              p["train"].update(epochs=2)))
    assert "'train.epochs' is size-like: remove it from 'train' and set it in each profile, as " \
           "'profiles.<profile>.train.epochs'" in _error(params)
    params = _with(lambda p: (p["train"].pop("nproc"), p["profiles"]["smoke"]["train"].update(nproc=1),
                              p["profiles"]["default"]["train"].update(nproc=1)))
    assert "'profiles.default.train.nproc' is not a size-like key: remove it from the profile (set it in 'train.nproc')" \
        in _error(params)


def test_a_misplaced_key_of_a_section_is_reported_once_not_once_per_profile():
    msg = _error(_with(lambda p: p["train"].update(epochs=3)))
    assert msg.count("'train.epochs' is size-like") == 1 and msg.startswith("params.yaml is not valid:")


@pytest.mark.parametrize("edit, key", [
    (lambda p: p["attack"]["models"].append("vit"), "attack.models"),
    (lambda p: p["transfer"]["models"].append("vit"), "transfer.models"),
    (lambda p: p["dimension"]["models"].append("vit"), "dimension.models"),
    (lambda p: p["forge"].update(model="vit"), "forge.model"),
    (lambda p: p["patch"].update(model="vit"), "patch.model"),
])
def test_model_names_are_checked_against_train_models(edit, key):
    msg = _error(_with(edit))
    assert f"'{key}' names ['vit'], which are not models; expected some of train.models" in msg


def test_every_field_that_names_models_is_checked():
    from advgen.areas import sections
    from advgen.schema import model_fields

    SECTIONS = sections()

    # train.models and imports.models produce models; backdoor_defense.models maps poisoned models to defenses (checked by _check_backdoors);
    # its reference names a model; evaluate_generative.models names generative models (checked
    # by _check_generative); the feature networks are classifiers
    named = [(s, f.name) for s, cls in SECTIONS.items() for f in __import__("dataclasses").fields(cls)
             if f.name in ("model", "models") and s not in ("train", "imports", "backdoor_defense", "evaluate_generative")]
    named += [("backdoor_defense", "reference"), ("gan", "feature_model"), ("diffusion", "feature_model"),
              ("evaluate_generative", "feature_model")]
    assert sorted(model_fields(SECTIONS)) == sorted(named) and len(named) == 12


def test_arch_kwargs_match_the_constructors():
    import inspect

    from advgen.models import ARCHS
    from advgen.schema import ARCH_KWARGS

    for arch, cls in ARCHS.items():
        accepted = [n for n in inspect.signature(cls).parameters if n not in ("in_shape", "num_classes")]
        assert list(ARCH_KWARGS[arch]) == accepted, arch


def test_every_problem_is_listed_at_once():
    msg = _error(_with(lambda p: (p["train"].update(lrr=1), p["patch"].update(model="vit"),
                                   p["profiles"]["smoke"]["forge"].update(noise_steps=0))))
    assert msg.startswith("params.yaml has 3 problems")
    assert "'train.lrr'" in msg and "'patch.model'" in msg and "'profiles.smoke.forge.noise_steps'" in msg


def test_load_config_uses_the_requested_profile():
    assert load_section(TrainConfig, PARAMS, "train", "smoke").n_train == 2000
    assert load_section(TrainConfig, PARAMS, "train", "default").n_train == 0


def test_schema_names_match_the_registries():
    from advgen.attacks.robustness import ATTACKS
    from advgen.data import DATASETS
    from advgen.models import ARCHS

    assert ARCH_NAMES == tuple(sorted(ARCHS))
    assert ATTACK_NAMES == tuple(sorted(ATTACKS))
    assert DATASET_NAMES == tuple(sorted([*DATASETS, "digits"]))


def _validate_stage(tmp_path, text: str) -> subprocess.CompletedProcess:
    (tmp_path / "params.yaml").write_text(text)
    (tmp_path / "dvc.yaml").write_text((ROOT / "dvc.yaml").read_text())
    code = ("import runpy, sys\ntry:\n    runpy.run_path(sys.argv[1], run_name='__main__')\nexcept SystemExit as e:\n"
            "    print('exit', e.code)\nprint('torch imported:', 'torch' in sys.modules)")
    return subprocess.run([sys.executable, "-c", code, str(ROOT / "stages/validate.py")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)


def test_validate_stage_fails_on_a_typo_without_importing_torch(tmp_path):
    good = (ROOT / "params.yaml").read_text()
    proc = _validate_stage(tmp_path, good)
    assert "torch imported: False" in proc.stdout and "exit" not in proc.stdout, proc.stderr
    written = json.loads((tmp_path / "reports/params/train@cnn.json").read_text())
    params = yaml.safe_load(good)
    assert written["train.models.cnn"] == params["train"]["models"]["cnn"] and written["train.lr"] == params["train"]["lr"]
    assert written[f"profiles.{params['profile']}.train"] == params["profiles"][params["profile"]]["train"]
    shutil.rmtree(tmp_path / "reports/params")
    proc = _validate_stage(tmp_path, good.replace("  lr: 0.003\n", "  lr: 0.003\n  lrr: 0.01\n", 1))
    assert "exit 2" in proc.stdout and "unknown key 'train.lrr'" in proc.stderr
    assert not (tmp_path / "reports/params").exists()


def test_a_params_file_changes_only_with_the_values_its_stage_reads(tmp_path):
    good = (ROOT / "params.yaml").read_text()
    _validate_stage(tmp_path, good)
    before = {p.name: p.read_bytes() for p in (tmp_path / "reports/params").iterdir()}
    assert "report.json" not in before and "train@cnn.json" in before and "attack@cnn.json" in before
    proc = _validate_stage(tmp_path, good.replace("  lr: 0.003\n", "  lr: 0.004\n", 1))
    assert "exit" not in proc.stdout, proc.stderr
    after = {p.name: p.read_bytes() for p in (tmp_path / "reports/params").iterdir()}
    changed = sorted(n for n in before if before[n] != after[n])
    train_like = sorted(n for n in before if n.startswith(("train@", "defend@", "replicate_")) or n == "split_view.json")
    # train.lr: the train and defend stages, split_view's cnns and the seed replicates' trainings
    assert changed == train_like and "replicate_c9@1.json" in changed, changed


def test_a_stage_refuses_params_that_changed_since_validate(tmp_path):
    from advgen.config import ConfigError
    from advgen.params_digest import check_current, stage_name

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    _validate_stage(tmp_path, (ROOT / "params.yaml").read_text())
    out = tmp_path / "reports/params"
    assert stage_name("stages/train.py", ["cnn"]) == "train@cnn" and stage_name("stages/forge.py", []) == "forge"
    check_current(params, "train@cnn", out)  # as written: fine
    check_current(params, "no_such_stage", out)  # no file (run outside DVC): nothing to check
    params["train"]["models"]["cnn"]["lr"] = 0.1
    with pytest.raises(ConfigError, match=r"train@cnn.json: params.yaml changed since .*\(train.models.cnn\)"):
        check_current(params, "train@cnn", out)
    check_current(params, "attack@cnn", out)  # attack@cnn does not read it


def _defense(name: str, **kw):
    return lambda p: p["defend"]["defenses"].update({name: kw})


@pytest.mark.parametrize("edit, needle", [
    (_defense("x", method="mixup", eps=0.1), "'defend.defenses.x.method' must be one of"),
    (_defense("x", method="pgd", eps=0.0, steps=7, step=0.02), "'defend.defenses.x.eps' must be > 0, found 0.0"),
    (_defense("x", method="pgd", eps=-0.1, steps=7, step=0.02), "'defend.defenses.x.eps' must be > 0, found -0.1"),
    (_defense("x", method="fgsm", eps=0.1, alpha=1.5), "'defend.defenses.x.alpha' must lie in [0, 1], found 1.5"),
    (_defense("x", method="fgsm", eps=0.1, alpha=-0.1), "'defend.defenses.x.alpha' must lie in [0, 1], found -0.1"),
    (_defense("x", method="trades", eps=0.1, steps=7, step=0.02, beta=-1.0), "'defend.defenses.x.beta' must be >= 0"),
    (_defense("x", method="gaussian", sigma=0.0), "'defend.defenses.x.sigma' must be > 0, found 0.0"),
    (_defense("x", method="pgd", eps=0.1, steps=7), "'defend.defenses.x.step' must be set for method 'pgd'"),
    (_defense("x", method="gaussian", sigma=0.25, eps=0.1), "'defend.defenses.x.eps' is not used by method 'gaussian'"),
    (_defense("x", method="pgd", eps=0.1, steps=0, step=0.02), "'defend.defenses.x.steps' must be >= 1, found 0"),
    (_defense("cnn", method="gaussian", sigma=0.25), "['cnn'] named in both 'train.models' and 'defend.defenses'"),
    (lambda p: p["certify"].update(alpha=1.0), "'certify.alpha' must lie in (0, 1), found 1.0"),
    (lambda p: p["certify"].update(alpha=0), "'certify.alpha' must lie in (0, 1), found 0"),
    (lambda p: p["certify"].update(n0=0), "'certify.n0' must be >= 1, found 0"),
    (lambda p: p["certify"].update(n=0), "'certify.n' must be >= 1, found 0"),
    (lambda p: p["certify"].update(models=["cnn_pgd_at"]), "'certify.models' names ['cnn_pgd_at'], which are not gaussian"),
    (lambda p: p["certify"].update(models=["cnn"]), "'certify.models' names ['cnn'], which are not gaussian"),
    (lambda p: p["sanitize"].update(bit_depth=0), "'sanitize.bit_depth' must lie in 1-8, found 0"),
    (lambda p: p["sanitize"].update(bit_depth=9), "'sanitize.bit_depth' must lie in 1-8, found 9"),
    (lambda p: p["sanitize"].update(median=2), "'sanitize.median' must be an odd window >= 1, found 2"),
    (lambda p: p["sanitize"].update(model="vit"), "'sanitize.model' names ['vit'], which are not models"),
    (lambda p: p["defend"].update(base="vit"), "'defend.base' = 'vit' is not a model of the train stage"),
    (lambda p: p["defend"].update(base="cnn_pgd_at"), "'defend.base' = 'cnn_pgd_at' is not a model of the train stage"),
    (lambda p: p["attack"].update(defended={"eps_linf": [0.05]}), "'attack.defended' gives an invalid config for defended"),
    (lambda p: p["attack"].update(defended={"n_eval": 5}), "'attack.defended' has unknown key(s) ['n_eval']"),
])
def test_defense_params_are_checked(edit, needle):
    assert needle in _error(_with(edit))


def test_a_median_window_larger_than_the_image_is_rejected():
    from advgen.defenses.params import SanitizeConfig
    cfg = load_section(SanitizeConfig, _with(lambda p: p["sanitize"].update(median=29)), "sanitize")
    with pytest.raises(ConfigError, match="'sanitize.median' = 29 is larger than the 28x28 image"):
        cfg.check_image(28)
    cfg.check_image(29)


def test_defended_models_get_their_evaluation_overrides():
    from advgen.attacks.params import load_attack_config
    std, dfd = load_attack_config(PARAMS), load_attack_config(PARAMS, defended=True)
    assert std.eps_linf == PARAMS["attack"]["eps_linf"] and not std.square_sweep
    assert dfd.eps_linf == PARAMS["attack"]["defended"]["eps_linf"] and dfd.square_sweep
    assert dfd.n_eval == PARAMS["profiles"]["default"]["attack"]["defended_sizes"]["n_eval"]


def _own_edits(text: str) -> str:
    """params.yaml with a model added (trained and defended), one dropped from the leaderboard and
    one poisoned model's defenses removed."""
    text = text.replace("    cnn: {arch: cnn, data: prepared}\n",
                        "    cnn: {arch: cnn, data: prepared}\n    cnn_wide: {arch: cnn, data: prepared, seed: 2}\n", 1)
    text = text.replace("    cnn_gaussian: {method: gaussian, sigma: 0.25}",
                        "    cnn_gaussian: {method: gaussian, sigma: 0.25}\n    cnn_gaussian_b: {method: gaussian, sigma: 0.5}", 1)
    text = text.replace("  models: [logreg, cnn, resnet, cnn_augment,", "  models: [logreg, cnn, cnn_wide, resnet,", 1)
    text = text.replace("cnn_trades, cnn_gaussian]", "cnn_trades, cnn_gaussian, cnn_gaussian_b]", 1)
    text = text.replace("  models: [cnn_gaussian]\n", "  models: [cnn_gaussian, cnn_gaussian_b]\n", 1)
    return text.replace("    badnets_05: []\n", "", 1)


def test_an_imported_model_is_a_model_every_section_may_name():
    from advgen.areas import validate_params

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["imports"]["models"]["mine"] = {"path": "weights/mine"}
    params["attack"]["models"].append("mine")
    params["transfer"]["models"].append("mine")
    validate_params(params)


def test_adding_a_model_changes_only_its_own_stages_params(tmp_path):
    """A stage of one model tracks its own entry of the models list, not the list: adding a model
    (trained or defended) adds its stages' files and changes no other file; removing one removes
    its files only."""
    good = (ROOT / "params.yaml").read_text()
    edited = _own_edits(good)
    assert edited.count("cnn_wide") == 2 and "cnn_augment, cnn_fgsm_at" not in edited and "badnets_05: []" not in edited
    _validate_stage(tmp_path, good)
    before = {p.name: p.read_bytes() for p in (tmp_path / "reports/params").iterdir()}
    proc = _validate_stage(tmp_path, edited)
    assert "exit" not in proc.stdout, proc.stderr
    after = {p.name: p.read_bytes() for p in (tmp_path / "reports/params").iterdir()}
    assert sorted(set(after) - set(before)) == [
        "attack@cnn_gaussian_b.json", "attack@cnn_wide.json", "certify@cnn_gaussian_b.json",
        "defend@cnn_gaussian_b.json", "robustness@cnn_gaussian_b.json", "robustness@cnn_wide.json",
        "train@cnn_wide.json"]
    assert sorted(set(before) - set(after)) == [
        "attack@cnn_augment.json", "backdoor_defense@badnets_05.json", "robustness@cnn_augment.json"]
    assert [n for n in set(before) & set(after) if before[n] != after[n]] == []
    own = json.loads(after["attack@cnn_wide.json"])
    assert own["@own"] == "attack.models" and own["attack"]["models"] == ["cnn_wide"]
    assert json.loads(after["backdoor_defense@badnets_1.json"])["backdoor_defense"]["models"] == {
        "badnets_1": ["spectral", "clustering", "strip", "fine_pruning", "fine_tuning"]}


def test_a_stage_of_one_model_sees_only_its_own_entry(tmp_path):
    from advgen.config import ConfigError
    from advgen.params_digest import check_current, own_view

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    _validate_stage(tmp_path, (ROOT / "params.yaml").read_text())
    out = tmp_path / "reports/params"
    view = check_current(params, "attack@resnet", out)
    assert view["attack"]["models"] == ["resnet"] and len(params["attack"]["models"]) == 9  # a copy, cut down
    assert view["attack"]["eps_linf"] == params["attack"]["eps_linf"]
    assert check_current(params, "train@cnn", out) is params  # no own list: params as they are
    bd = check_current(params, "backdoor_defense@badnets_05", out)["backdoor_defense"]["models"]
    assert bd == {"badnets_05": []}
    assert own_view(params, "attack", None) is params
    with pytest.raises(ConfigError, match=r"'attack.models' does not name 'vit' \(stage attack@vit"):
        own_view(params, "attack@vit", "attack.models")
    params["attack"]["models"].remove("resnet")  # dropped from params.yaml since validate ran
    with pytest.raises(ConfigError, match=r"attack@resnet.json: params.yaml: 'attack.models' does not name 'resnet'"):
        check_current(params, "attack@resnet", out)
    params["attack"]["models"].append("resnet")  # another order of the list: still this stage's entry
    check_current(params, "attack@resnet", out)
    params["attack"]["pgd_steps"] += 1
    with pytest.raises(ConfigError, match=r"attack@resnet.json: params.yaml changed since .*\(attack\)"):
        check_current(params, "attack@resnet", out)
