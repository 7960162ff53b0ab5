"""Every range rule of the base and attack params: the value just outside is refused with a
message naming the full key, the value at the edge is accepted (mutation testing found these
rules unpinned: a bound moved by one, a key name or a message changed, all passed)."""

from __future__ import annotations

import copy

import pytest

from advgen.attacks.params import AttackConfig, DimensionConfig, ForgeConfig, PatchConfig, TransferConfig
from advgen.config import ConfigError, load_params, load_section
from advgen.schema import IngestConfig, TrainConfig, load_common
from tests.conftest import ROOT

PARAMS = load_params(ROOT / "params.yaml")
prof = PARAMS["profile"]

CASES = [
    ("common", ("seed",), -1, 0, "params.yaml: 'seed' must be >= 0, found -1"),
    ("common", ("device",), "gpu", "cuda:1", "params.yaml: 'device' must be auto, cpu, cuda or cuda:N, found 'gpu'"),
    ("common", ("device",), "cuda0", "cpu", "params.yaml: 'device' must be auto, cpu, cuda or cuda:N, found 'cuda0'"),
    ("common", ("device",), "tpu", "cuda", "params.yaml: 'device' must be auto, cpu, cuda or cuda:N, found 'tpu'"),
    (
        "ingest",
        ("ingest", "dataset"),
        "svhn",
        "mnist",
        "params.yaml: 'ingest.dataset' must be one of ['cifar10', 'digits', 'fashion-mnist', 'mnist'], found 'svhn'",
    ),
    ("ingest", ("ingest", "timeout_s"), 0, 0.001, "params.yaml: 'ingest.timeout_s' must be > 0, found 0"),
    ("ingest", ("ingest", "retries"), 0, 1, "params.yaml: 'ingest.retries' must be >= 1, found 0"),
    ("ingest", ("ingest", "backoff_s"), -0.1, 0, "params.yaml: 'ingest.backoff_s' must be >= 0, found -0.1"),
    ("ingest", ("ingest", "max_bytes"), 0, 1, "params.yaml: 'ingest.max_bytes' must be > 0, found 0"),
    (
        "model",
        ("train", "models", "cnn", "arch"),
        "vit",
        "mlp",
        "params.yaml: 'train.models.cnn.arch' must be one of ['cnn', 'logreg', 'mlp', 'resnet'], found 'vit'",
    ),
    (
        "model",
        ("train", "models", "cnn", "data"),
        "raw",
        "poisoned/x",
        "params.yaml: 'train.models.cnn.data' must be 'prepared' or 'poisoned/<name of a poison.configs entry>', found 'raw'",
    ),
    (
        "model",
        ("train", "models", "cnn", "epochs"),
        0,
        1,
        "params.yaml: 'train.models.cnn.epochs' must be >= 1, found 0",
    ),
    (
        "model",
        ("train", "models", "cnn", "resolution"),
        1,
        2,
        "params.yaml: 'train.models.cnn.resolution' must be >= 2, found 1",
    ),
    ("model", ("train", "models", "cnn", "lr"), 0, 1e-09, "params.yaml: 'train.models.cnn.lr' must be > 0, found 0"),
    ("model", ("train", "models", "cnn", "seed"), -1, 0, "params.yaml: 'train.models.cnn.seed' must be >= 0, found -1"),
    (
        "model",
        ("train", "models", "cnn", "arch_kwargs"),
        {"depth": 3},
        {"width": 8},
        "params.yaml: 'train.models.cnn.arch_kwargs' has unknown key(s) ['depth']; cnn accepts ['width', 'hidden', 'dropout']",
    ),
    ("train", ("train", "lr"), 0, 1e-09, "params.yaml: 'train.lr' must be > 0, found 0"),
    ("train", ("train", "weight_decay"), -1e-09, 0, "params.yaml: 'train.weight_decay' must be >= 0, found -1e-09"),
    ("train", ("train", "nproc"), 0, 1, "params.yaml: 'train.nproc' must be >= 1, found 0"),
    (
        "train",
        ("profiles", prof, "train", "epochs"),
        0,
        1,
        "params.yaml: 'profiles.default.train.epochs' must be >= 1, found 0",
    ),
    (
        "train",
        ("profiles", prof, "train", "batch_size"),
        0,
        1,
        "params.yaml: 'profiles.default.train.batch_size' must be >= train.nproc (1), found 0",
    ),
    (
        "train",
        ("profiles", prof, "train", "n_train"),
        -1,
        0,
        "params.yaml: 'profiles.default.train.n_train' must be >= 0 (0 = all), found -1",
    ),
    (
        "train",
        ("profiles", prof, "train", "n_test"),
        -1,
        0,
        "params.yaml: 'profiles.default.train.n_test' must be >= 0 (0 = all), found -1",
    ),
    (
        "train",
        ("train", "models"),
        {},
        {"m": {"arch": "mlp", "data": "prepared"}},
        "params.yaml: 'train.models' must name at least one model",
    ),
    (
        "attack",
        ("attack", "eps_l2"),
        [0.0, -0.5],
        [0.0],
        "params.yaml: 'attack.eps_l2' must hold eps >= 0, found [-0.5]",
    ),
    (
        "attack",
        ("attack", "eps_linf"),
        [0.0, -0.1, 0.025, 0.05, 0.1],
        [0.0, 0.025, 0.05, 0.1],
        "params.yaml: 'attack.eps_linf' must hold eps >= 0, found [-0.1]",
    ),
    (
        "attack",
        ("attack", "square_eps"),
        0.3,
        0.05,
        "params.yaml: 'attack.square_eps' must be > 0 and one of attack.eps_linf [0.0, 0.025, 0.05, 0.1, 0.15, 0.2], found 0.3",
    ),
    (  # 0 is in eps_linf: only the "> 0" half refuses it
        "attack",
        ("attack", "square_eps"),
        0.0,
        0.05,
        "params.yaml: 'attack.square_eps' must be > 0 and one of attack.eps_linf [0.0, 0.025, 0.05, 0.1, 0.15, 0.2], found 0.0",
    ),
    (
        "attack",
        ("attack", "check_eps"),
        0.0,
        0.05,
        "params.yaml: 'attack.check_eps' must be > 0 and one of attack.eps_linf [0.0, 0.025, 0.05, 0.1, 0.15, 0.2], found 0.0",
    ),
    (
        "attack",
        ("attack", "check_eps"),
        0.3,
        0.05,
        "params.yaml: 'attack.check_eps' must be > 0 and one of attack.eps_linf [0.0, 0.025, 0.05, 0.1, 0.15, 0.2], found 0.3",
    ),
    (
        "attack",
        ("attack", "convergence_eps"),
        [0.0],
        [0.1],
        "params.yaml: 'attack.convergence_eps' must hold eps > 0 from attack.eps_linf [0.0, 0.025, 0.05, 0.1, 0.15, 0.2], found [0.0]",
    ),
    (
        "attack",
        ("attack", "attacks"),
        ["fgsm", "fgsm"],
        ["fgsm"],
        "params.yaml: 'attack.attacks' names an attack twice: ['fgsm', 'fgsm']",
    ),
    (
        "attack",
        ("attack", "attacks"),
        ["fgsm", "cw"],
        ["pgd"],
        "params.yaml: 'attack.attacks' names unknown attack(s) ['cw']; expected some of ['apgd_ce', 'apgd_dlr', 'fgsm', 'noise', 'pgd', 'pgd_l2', 'square']",
    ),
    ("attack", ("attack", "pgd_steps"), 0, 1, "params.yaml: 'attack.pgd_steps' must be >= 1, found 0"),
    ("attack", ("attack", "pgd_restarts"), 0, 1, "params.yaml: 'attack.pgd_restarts' must be >= 1, found 0"),
    ("attack", ("attack", "n_target_classes"), 0, 1, "params.yaml: 'attack.n_target_classes' must be >= 1, found 0"),
    (
        "attack",
        ("profiles", prof, "attack", "n_eval"),
        0,
        1,
        "params.yaml: 'profiles.default.attack.n_eval' must be >= 1, found 0",
    ),
    (
        "attack",
        ("profiles", prof, "attack", "n_square"),
        0,
        1,
        "params.yaml: 'profiles.default.attack.n_square' must be >= 1, found 0",
    ),
    (
        "attack",
        ("profiles", prof, "attack", "apgd_steps"),
        0,
        1,
        "params.yaml: 'profiles.default.attack.apgd_steps' must be >= 1, found 0",
    ),
    (
        "attack",
        ("profiles", prof, "attack", "more_restarts"),
        1,
        2,
        "params.yaml: 'profiles.default.attack.more_restarts' must be >= 2 (more than one), found 1",
    ),
    (
        "attack",
        ("profiles", prof, "attack", "square_budgets"),
        [0, 10],
        [1, 5000],
        "params.yaml: 'profiles.default.attack.square_budgets' must lie in (0, square_queries=5000], found [0, 10]",
    ),
    (
        "attack",
        ("profiles", prof, "attack", "square_budgets"),
        [10, 5001],
        [10, 5000],
        "params.yaml: 'profiles.default.attack.square_budgets' must lie in (0, square_queries=5000], found [10, 5001]",
    ),
    ("attack", ("attack", "square_p_init"), 0, 1, "params.yaml: 'attack.square_p_init' must lie in (0, 1], found 0"),
    (
        "attack",
        ("attack", "square_p_init"),
        1.01,
        0.01,
        "params.yaml: 'attack.square_p_init' must lie in (0, 1], found 1.01",
    ),
    (
        "attack",
        ("attack", "queries_per_minute"),
        0,
        0.01,
        "params.yaml: 'attack.queries_per_minute' must be > 0, found 0",
    ),
    ("attack", ("attack", "window_minutes"), 0, 0.01, "params.yaml: 'attack.window_minutes' must be > 0, found 0"),
    (
        "attack",
        ("attack", "defended"),
        {"n_eval": 5},
        {"pgd_steps": 5},
        "params.yaml: 'attack.defended' has unknown key(s) ['n_eval']; it may override ['attacks', 'check_eps', 'convergence_eps', 'eps_l2', 'eps_linf', 'n_target_classes', 'pgd_restarts', 'pgd_steps', 'queries_per_minute', 'square_eps', 'square_p_init', 'square_sweep', 'tolerance', 'window_minutes']",
    ),
    (
        "attack",
        ("profiles", prof, "attack", "defended_sizes"),
        {"pgd_steps": 5},
        {"n_eval": 5},
        "params.yaml: 'profiles.default.attack.defended_sizes' has unknown key(s) ['pgd_steps']; it may override ['apgd_steps', 'more_restarts', 'n_eval', 'n_square', 'square_budgets', 'square_queries']",
    ),
    (
        "attack",
        ("attack", "defended"),
        {"tolerance": 1.0},
        {"tolerance": 0.5},
        "params.yaml: 'attack.defended' gives an invalid config for defended models: tolerance must lie in [0, 1), found 1.0",
    ),
    (
        "transfer",
        ("transfer", "models"),
        ["cnn"],
        ["cnn", "mlp"],
        "params.yaml: 'transfer.models' needs at least two models, found ['cnn']",
    ),
    ("transfer", ("transfer", "eps"), -0.01, 0, "params.yaml: 'transfer.eps' must be >= 0, found -0.01"),
    ("transfer", ("transfer", "steps"), 0, 1, "params.yaml: 'transfer.steps' must be >= 1, found 0"),
    (
        "forge",
        ("profiles", prof, "forge", "noise_steps"),
        0,
        1,
        "params.yaml: 'profiles.default.forge.noise_steps' must be >= 1, found 0",
    ),
    (
        "forge",
        ("profiles", prof, "forge", "image_steps"),
        0,
        1,
        "params.yaml: 'profiles.default.forge.image_steps' must be >= 1, found 0",
    ),
    (
        "forge",
        ("profiles", prof, "forge", "n_per_class"),
        0,
        1,
        "params.yaml: 'profiles.default.forge.n_per_class' must be >= 1, found 0",
    ),
    ("forge", ("forge", "noise_lr"), 0, 1e-09, "params.yaml: 'forge.noise_lr' must be > 0, found 0"),
    ("forge", ("forge", "image_lr"), 0, 1e-09, "params.yaml: 'forge.image_lr' must be > 0, found 0"),
    ("forge", ("forge", "image_lam"), -1e-09, 0, "params.yaml: 'forge.image_lam' must be >= 0, found -1e-09"),
    (
        "forge",
        ("profiles", prof, "forge", "n_reference"),
        9,
        10,
        "params.yaml: 'profiles.default.forge.n_reference' must be >= 10, found 9",
    ),
    (
        "patch",
        ("patch", "sizes"),
        [],
        [1],
        "params.yaml: 'patch.sizes' must be a non-empty list of sizes >= 1, found []",
    ),
    (
        "patch",
        ("patch", "sizes"),
        [0, 4],
        [1, 4],
        "params.yaml: 'patch.sizes' must be a non-empty list of sizes >= 1, found [0, 4]",
    ),
    (
        "patch",
        ("patch", "sizes"),
        [4, 4],
        [3, 4],
        "params.yaml: 'patch.sizes' must be strictly increasing, found [4, 4]",
    ),
    ("patch", ("patch", "ablation_size"), 0, 1, "params.yaml: 'patch.ablation_size' must be >= 1, found 0"),
    (
        "patch",
        ("patch", "weight_scales"),
        [],
        [0],
        "params.yaml: 'patch.weight_scales' must be distinct values >= 0, found []",
    ),
    (
        "patch",
        ("patch", "weight_scales"),
        [-1, 1],
        [0, 1],
        "params.yaml: 'patch.weight_scales' must be distinct values >= 0, found [-1, 1]",
    ),
    (
        "patch",
        ("patch", "weight_scales"),
        [1, 1],
        [1, 2],
        "params.yaml: 'patch.weight_scales' must be distinct values >= 0, found [1, 1]",
    ),
    ("patch", ("patch", "target"), -1, 0, "params.yaml: 'patch.target' must be >= 0 or null, found -1"),
    ("patch", ("patch", "lr"), 0, 1e-09, "params.yaml: 'patch.lr' must be > 0, found 0"),
    ("patch", ("patch", "batch_size"), 0, 1, "params.yaml: 'patch.batch_size' must be > 0, found 0"),
    (
        "patch",
        ("profiles", prof, "patch", "epochs"),
        0,
        1,
        "params.yaml: 'profiles.default.patch.epochs' must be > 0, found 0",
    ),
    (
        "patch",
        ("profiles", prof, "patch", "n_train"),
        -1,
        0,
        "params.yaml: 'profiles.default.patch.n_train' must be >= 0 (0 = all), found -1",
    ),
    (
        "patch",
        ("profiles", prof, "patch", "n_test"),
        -1,
        0,
        "params.yaml: 'profiles.default.patch.n_test' must be >= 0 (0 = all), found -1",
    ),
    ("patch", ("patch", "w_nps"), -1e-09, 0, "params.yaml: 'patch.w_nps' must be >= 0, found -1e-09"),
    ("patch", ("patch", "w_tv"), -1e-09, 0, "params.yaml: 'patch.w_tv' must be >= 0, found -1e-09"),
    (
        "patch",
        ("patch", "palette"),
        [],
        [0.0],
        "params.yaml: 'patch.palette' must hold grey levels in [0, 1], found []",
    ),
    (
        "patch",
        ("patch", "palette"),
        [-0.1],
        [1.0],
        "params.yaml: 'patch.palette' must hold grey levels in [0, 1], found [-0.1]",
    ),
    (
        "patch",
        ("patch", "palette"),
        [1.1],
        [0.0, 1.0],
        "params.yaml: 'patch.palette' must hold grey levels in [0, 1], found [1.1]",
    ),
    (
        "dimension",
        ("dimension", "models"),
        ["logreg"],
        ["logreg", "logreg_r7"],
        "params.yaml: 'dimension.models' needs at least two models, found ['logreg']",
    ),
    ("dimension", ("dimension", "eps"), 0, 1e-09, "params.yaml: 'dimension.eps' must be > 0, found 0"),
    (
        "dimension",
        ("profiles", prof, "dimension", "n_eval"),
        0,
        1,
        "params.yaml: 'profiles.default.dimension.n_eval' must be >= 1, found 0",
    ),
]


def _load(target: str, params: dict):
    if target == "common":
        return load_common(params)
    if target == "ingest":
        return load_section(IngestConfig, params, "ingest")
    if target in ("train", "model"):
        train = load_section(TrainConfig, params, "train")
        return train.spec("cnn") if target == "model" else train
    other = {"transfer": TransferConfig, "forge": ForgeConfig, "patch": PatchConfig, "dimension": DimensionConfig}
    return load_section(other.get(target, AttackConfig), params, target if target in other else "attack")


def _with(path: tuple, value) -> dict:
    params = copy.deepcopy(PARAMS)
    node = params
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    return params


@pytest.mark.parametrize(
    "target, path, bad, good, message", CASES, ids=[f"{'.'.join(map(str, c[1]))}={c[2]!r}" for c in CASES]
)
def test_a_value_just_outside_is_refused_by_name_and_the_edge_is_accepted(target, path, bad, good, message):
    with pytest.raises(ConfigError) as exc:
        _load(target, _with(path, bad))
    assert str(exc.value) == message
    _load(target, _with(path, good))
