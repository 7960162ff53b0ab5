"""Every range rule of the base and attack params: the value just outside is refused with a
message naming the full key, the value at the edge is accepted (mutation testing found these
rules unpinned: a bound moved by one, a key name or a message changed, all passed)."""

from __future__ import annotations

import copy

import pytest

from advgen.attacks.params import AttackConfig, DimensionConfig, ForgeConfig, PatchConfig, TransferConfig
from advgen.backdoors.params import BackdoorDefenseConfig, PoisonConfig
from advgen.defenses.params import CertifyConfig, DefendConfig, SanitizeConfig
from advgen.generative.params import AutoencoderConfig, DiffusionConfig, EvaluateGenerativeConfig, GANConfig
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


# The defenses and backdoors areas: (target, path, bad, good, message); None removes the key.
# A target "defspec:<name>" / "pspec:<name>" is one entry of defend.defenses / poison.configs.
CASES2 = [
    (
        "defspec:cnn_fgsm_at",
        ("defend", "defenses", "cnn_fgsm_at", "method"),
        "cutout",
        "fgsm",
        "params.yaml: 'defend.defenses.cnn_fgsm_at.method' must be one of ['augment', 'fgsm', 'fgsm_rs', 'pgd', 'trades', 'gaussian'], found 'cutout'",
    ),
    (
        "defspec:cnn_fgsm_at",
        ("defend", "defenses", "cnn_fgsm_at", "eps"),
        0,
        1e-09,
        "params.yaml: 'defend.defenses.cnn_fgsm_at.eps' must be > 0, found 0",
    ),
    (
        "defspec:cnn_fgsm_at",
        ("defend", "defenses", "cnn_fgsm_at", "alpha"),
        -0.01,
        0,
        "params.yaml: 'defend.defenses.cnn_fgsm_at.alpha' must lie in [0, 1], found -0.01",
    ),
    (
        "defspec:cnn_fgsm_at",
        ("defend", "defenses", "cnn_fgsm_at", "alpha"),
        1.01,
        1,
        "params.yaml: 'defend.defenses.cnn_fgsm_at.alpha' must lie in [0, 1], found 1.01",
    ),
    (
        "defspec:cnn_fgsm_at",
        ("defend", "defenses", "cnn_fgsm_at", "beta"),
        1.0,
        None,
        "params.yaml: 'defend.defenses.cnn_fgsm_at.beta' is not used by method 'fgsm' (it takes ['eps', 'alpha'])",
    ),
    (
        "defspec:cnn_fast_at",
        ("defend", "defenses", "cnn_fast_at", "step"),
        0,
        1e-09,
        "params.yaml: 'defend.defenses.cnn_fast_at.step' must be > 0, found 0",
    ),
    (
        "defspec:cnn_fast_at",
        ("defend", "defenses", "cnn_fast_at", "step"),
        None,
        0.1,
        "params.yaml: 'defend.defenses.cnn_fast_at.step' must be set for method 'fgsm_rs'",
    ),
    (
        "defspec:cnn_trades",
        ("defend", "defenses", "cnn_trades", "steps"),
        0,
        1,
        "params.yaml: 'defend.defenses.cnn_trades.steps' must be >= 1, found 0",
    ),
    (
        "defspec:cnn_trades",
        ("defend", "defenses", "cnn_trades", "beta"),
        -0.01,
        0,
        "params.yaml: 'defend.defenses.cnn_trades.beta' must be >= 0, found -0.01",
    ),
    (
        "defspec:cnn_gaussian",
        ("defend", "defenses", "cnn_gaussian", "sigma"),
        0,
        1e-09,
        "params.yaml: 'defend.defenses.cnn_gaussian.sigma' must be > 0, found 0",
    ),
    (
        "defend",
        ("defend", "defenses"),
        {},
        {"x": {"method": "gaussian", "sigma": 0.1}},
        "params.yaml: 'defend.defenses' must name at least one defense",
    ),
    ("defend", ("defend", "monitor_steps"), 0, 1, "params.yaml: 'defend.monitor_steps' must be >= 1, found 0"),
    ("defend", ("defend", "monitor_drop"), 0, 0.001, "params.yaml: 'defend.monitor_drop' must lie in (0, 1), found 0"),
    ("defend", ("defend", "monitor_drop"), 1, 0.999, "params.yaml: 'defend.monitor_drop' must lie in (0, 1), found 1"),
    (
        "defend",
        ("profiles", prof, "defend", "epochs"),
        0,
        1,
        "params.yaml: 'profiles.default.defend.epochs' must be >= 1, found 0",
    ),
    (
        "defend",
        ("profiles", prof, "defend", "batch_size"),
        0,
        1,
        "params.yaml: 'profiles.default.defend.batch_size' must be >= 1, found 0",
    ),
    (
        "defend",
        ("profiles", prof, "defend", "n_monitor"),
        0,
        1,
        "params.yaml: 'profiles.default.defend.n_monitor' must be >= 1, found 0",
    ),
    (
        "defend",
        ("profiles", prof, "defend", "n_train"),
        -1,
        0,
        "params.yaml: 'profiles.default.defend.n_train' must be >= 0 (0 = all), found -1",
    ),
    ("sanitize", ("sanitize", "bit_depth"), 0, 1, "params.yaml: 'sanitize.bit_depth' must lie in 1-8, found 0"),
    ("sanitize", ("sanitize", "bit_depth"), 9, 8, "params.yaml: 'sanitize.bit_depth' must lie in 1-8, found 9"),
    ("sanitize", ("sanitize", "median"), 2, 1, "params.yaml: 'sanitize.median' must be an odd window >= 1, found 2"),
    ("sanitize", ("sanitize", "median"), -1, 5, "params.yaml: 'sanitize.median' must be an odd window >= 1, found -1"),
    ("sanitize", ("sanitize", "eps"), 0, 1e-09, "params.yaml: 'sanitize.eps' must be > 0, found 0"),
    ("sanitize", ("sanitize", "fpr"), 0, 0.001, "params.yaml: 'sanitize.fpr' must lie in (0, 1), found 0"),
    ("sanitize", ("sanitize", "fpr"), 1, 0.999, "params.yaml: 'sanitize.fpr' must lie in (0, 1), found 1"),
    ("sanitize", ("sanitize", "pgd_steps"), 0, 1, "params.yaml: 'sanitize.pgd_steps' must be >= 1, found 0"),
    ("sanitize", ("sanitize", "square_queries"), 0, 1, "params.yaml: 'sanitize.square_queries' must be >= 1, found 0"),
    (
        "sanitize",
        ("profiles", prof, "sanitize", "n_eval"),
        0,
        1,
        "params.yaml: 'profiles.default.sanitize.n_eval' must be >= 1, found 0",
    ),
    (
        "sanitize",
        ("profiles", prof, "sanitize", "n_val"),
        0,
        1,
        "params.yaml: 'profiles.default.sanitize.n_val' must be >= 1, found 0",
    ),
    (
        "sanitize",
        ("sanitize", "detector_weight"),
        -0.01,
        0,
        "params.yaml: 'sanitize.detector_weight' must be >= 0, found -0.01",
    ),
    (
        "certify",
        ("certify", "models"),
        [],
        ["cnn_gaussian"],
        "params.yaml: 'certify.models' must name at least one model",
    ),
    ("certify", ("certify", "n0"), 0, 1, "params.yaml: 'certify.n0' must be >= 1, found 0"),
    ("certify", ("certify", "n"), 0, 1, "params.yaml: 'certify.n' must be >= 1, found 0"),
    ("certify", ("certify", "pgd_steps"), 0, 1, "params.yaml: 'certify.pgd_steps' must be >= 1, found 0"),
    ("certify", ("certify", "eot"), 0, 1, "params.yaml: 'certify.eot' must be >= 1, found 0"),
    ("certify", ("certify", "n_predict"), 0, 1, "params.yaml: 'certify.n_predict' must be >= 1, found 0"),
    ("certify", ("certify", "batch_size"), 0, 1, "params.yaml: 'certify.batch_size' must be >= 1, found 0"),
    (
        "certify",
        ("profiles", prof, "certify", "n_eval"),
        0,
        1,
        "params.yaml: 'profiles.default.certify.n_eval' must be >= 1, found 0",
    ),
    ("certify", ("certify", "alpha"), 0, 0.001, "params.yaml: 'certify.alpha' must lie in (0, 1), found 0"),
    ("certify", ("certify", "alpha"), 1, 0.999, "params.yaml: 'certify.alpha' must lie in (0, 1), found 1"),
    (
        "certify",
        ("certify", "radii"),
        [],
        [0.1],
        "params.yaml: 'certify.radii' must be a non-empty list of radii > 0, found []",
    ),
    (
        "certify",
        ("certify", "radii"),
        [0.0, 0.5],
        [0.001, 0.5],
        "params.yaml: 'certify.radii' must be a non-empty list of radii > 0, found [0.0, 0.5]",
    ),
    (
        "pspec:badnets_1",
        ("poison", "configs", "badnets_1", "rate"),
        0,
        1e-09,
        "params.yaml: 'poison.configs.badnets_1.rate' must lie in (0, 1], found 0",
    ),
    (
        "pspec:badnets_1",
        ("poison", "configs", "badnets_1", "rate"),
        1.01,
        1,
        "params.yaml: 'poison.configs.badnets_1.rate' must lie in (0, 1], found 1.01",
    ),
    (
        "pspec:badnets_1",
        ("poison", "configs", "badnets_1", "target"),
        -1,
        0,
        "params.yaml: 'poison.configs.badnets_1.target' must be a class index >= 0, found -1",
    ),
    (
        "pspec:badnets_1",
        ("poison", "configs", "badnets_1", "source"),
        -1,
        1,
        "params.yaml: 'poison.configs.badnets_1.source' must be a class index >= 0, found -1",
    ),
    (
        "pspec:badnets_1",
        ("poison", "configs", "badnets_1", "source"),
        0,
        2,
        "params.yaml: 'poison.configs.badnets_1.source' must differ from the target (0) in a source-specific attack",
    ),
    (
        "pspec:badnets_1",
        ("poison", "configs", "badnets_1", "trigger_size"),
        0,
        1,
        "params.yaml: 'poison.configs.badnets_1.trigger_size' must be >= 1, found 0",
    ),
    (
        "pspec:badnets_1",
        ("poison", "configs", "badnets_1", "location"),
        "center",
        "random",
        "params.yaml: 'poison.configs.badnets_1.location' must be corner or random, found 'center'",
    ),
    (
        "pspec:badnets_1",
        ("poison", "configs", "badnets_1", "keep_target"),
        -0.1,
        0,
        "params.yaml: 'poison.configs.badnets_1.keep_target' must be >= 0, found -0.1",
    ),
    (
        "pspec:badnets_1",
        ("poison", "configs", "badnets_1", "alpha"),
        0.5,
        None,
        "params.yaml: 'poison.configs.badnets_1.alpha' is not used by attack 'badnets' (it takes ['source', 'trigger_size', 'location', 'keep_target'])",
    ),
    (
        "pspec:blended_1",
        ("poison", "configs", "blended_1", "alpha"),
        0,
        1e-09,
        "params.yaml: 'poison.configs.blended_1.alpha' must lie in (0, 1], found 0",
    ),
    (
        "pspec:blended_1",
        ("poison", "configs", "blended_1", "alpha"),
        1.01,
        1,
        "params.yaml: 'poison.configs.blended_1.alpha' must lie in (0, 1], found 1.01",
    ),
    (
        "pspec:clean_label",
        ("poison", "configs", "clean_label", "eps"),
        0,
        1e-09,
        "params.yaml: 'poison.configs.clean_label.eps' must be > 0, found 0",
    ),
    (
        "pspec:clean_label",
        ("poison", "configs", "clean_label", "eps"),
        None,
        0.1,
        "params.yaml: 'poison.configs.clean_label.eps' must be set for attack 'clean_label'",
    ),
    (
        "pspec:clean_label",
        ("poison", "configs", "clean_label", "steps"),
        0,
        1,
        "params.yaml: 'poison.configs.clean_label.steps' must be >= 1, found 0",
    ),
    (
        "pspec:clean_label",
        ("poison", "configs", "clean_label", "step"),
        0,
        1e-09,
        "params.yaml: 'poison.configs.clean_label.step' must be > 0, found 0",
    ),
    (
        "poison",
        ("poison", "configs"),
        {},
        {"x": {"attack": "badnets", "rate": 0.1, "target": 0}},
        "params.yaml: 'poison.configs' must name at least one poisoning config",
    ),
    ("poison", ("poison", "batch_size"), 0, 1, "params.yaml: 'poison.batch_size' must be >= 1, found 0"),
    (
        "poison",
        ("profiles", prof, "poison", "n_train"),
        -1,
        0,
        "params.yaml: 'profiles.default.poison.n_train' must be >= 0 (0 = all), found -1",
    ),
    (
        "poison",
        ("profiles", prof, "poison", "n_test"),
        -1,
        0,
        "params.yaml: 'profiles.default.poison.n_test' must be >= 0 (0 = all), found -1",
    ),
    (
        "bdd",
        ("backdoor_defense", "models"),
        {},
        {"badnets_1": []},
        "params.yaml: 'backdoor_defense.models' must name at least one poisoned model",
    ),
    (
        "bdd",
        ("backdoor_defense", "models"),
        {"badnets_1": ["spectral", "magic"]},
        {"badnets_1": ["spectral", "strip"]},
        "params.yaml: 'backdoor_defense.models.badnets_1' must list defenses among ['spectral', 'clustering', 'strip', 'fine_pruning', 'fine_tuning'], found ['spectral', 'magic']",
    ),
    (
        "bdd",
        ("backdoor_defense", "models"),
        {"badnets_1": "spectral"},
        {"badnets_1": ["spectral"]},
        "params.yaml: 'backdoor_defense.models.badnets_1' must list defenses among ['spectral', 'clustering', 'strip', 'fine_pruning', 'fine_tuning'], found 'spectral'",
    ),
    (
        "bdd",
        ("backdoor_defense", "spectral_factor"),
        0,
        1e-09,
        "params.yaml: 'backdoor_defense.spectral_factor' must be > 0, found 0",
    ),
    (
        "bdd",
        ("backdoor_defense", "spectral_max_class_fraction"),
        0,
        0.001,
        "params.yaml: 'backdoor_defense.spectral_max_class_fraction' must lie in (0, 1], found 0",
    ),
    (
        "bdd",
        ("backdoor_defense", "spectral_max_class_fraction"),
        1.01,
        1,
        "params.yaml: 'backdoor_defense.spectral_max_class_fraction' must lie in (0, 1], found 1.01",
    ),
    (
        "bdd",
        ("backdoor_defense", "clustering_dims"),
        0,
        1,
        "params.yaml: 'backdoor_defense.clustering_dims' must be >= 1, found 0",
    ),
    (
        "bdd",
        ("backdoor_defense", "clustering_size"),
        0,
        0.001,
        "params.yaml: 'backdoor_defense.clustering_size' must lie in (0, 1), found 0",
    ),
    (
        "bdd",
        ("backdoor_defense", "clustering_size"),
        1,
        0.999,
        "params.yaml: 'backdoor_defense.clustering_size' must lie in (0, 1), found 1",
    ),
    (
        "bdd",
        ("profiles", prof, "backdoor_defense", "strip_overlays"),
        0,
        1,
        "params.yaml: 'profiles.default.backdoor_defense.strip_overlays' must be >= 1, found 0",
    ),
    (
        "bdd",
        ("backdoor_defense", "strip_frr"),
        0,
        0.001,
        "params.yaml: 'backdoor_defense.strip_frr' must lie in (0, 1), found 0",
    ),
    (
        "bdd",
        ("backdoor_defense", "strip_frr"),
        1,
        0.999,
        "params.yaml: 'backdoor_defense.strip_frr' must lie in (0, 1), found 1",
    ),
    (
        "bdd",
        ("backdoor_defense", "prune_acc_drop"),
        -0.01,
        0,
        "params.yaml: 'backdoor_defense.prune_acc_drop' must lie in [0, 1), found -0.01",
    ),
    (
        "bdd",
        ("backdoor_defense", "prune_acc_drop"),
        1,
        0.999,
        "params.yaml: 'backdoor_defense.prune_acc_drop' must lie in [0, 1), found 1",
    ),
    (
        "bdd",
        ("backdoor_defense", "prune_max_fraction"),
        0,
        0.001,
        "params.yaml: 'backdoor_defense.prune_max_fraction' must lie in (0, 1), found 0",
    ),
    (
        "bdd",
        ("backdoor_defense", "prune_max_fraction"),
        1,
        0.999,
        "params.yaml: 'backdoor_defense.prune_max_fraction' must lie in (0, 1), found 1",
    ),
    (
        "bdd",
        ("profiles", prof, "backdoor_defense", "finetune_epochs"),
        0,
        1,
        "params.yaml: 'profiles.default.backdoor_defense.finetune_epochs' must be >= 1, found 0",
    ),
    (
        "bdd",
        ("backdoor_defense", "finetune_lr"),
        0,
        1e-09,
        "params.yaml: 'backdoor_defense.finetune_lr' must be > 0, found 0",
    ),
    (
        "bdd",
        ("profiles", prof, "backdoor_defense", "n_clean"),
        9,
        10,
        "params.yaml: 'profiles.default.backdoor_defense.n_clean' must be >= 10, found 9",
    ),
    (
        "bdd",
        ("profiles", prof, "backdoor_defense", "n_eval"),
        -1,
        0,
        "params.yaml: 'profiles.default.backdoor_defense.n_eval' must be >= 0 (0 = all), found -1",
    ),
]


def _load_area(target: str, params: dict):
    kind, _, name = target.partition(":")
    if kind == "defspec":
        return load_section(DefendConfig, params, "defend").spec(name)
    if kind == "pspec":
        return load_section(PoisonConfig, params, "poison").spec(name)
    cls, section = {
        "defend": (DefendConfig, "defend"),
        "sanitize": (SanitizeConfig, "sanitize"),
        "certify": (CertifyConfig, "certify"),
        "poison": (PoisonConfig, "poison"),
        "bdd": (BackdoorDefenseConfig, "backdoor_defense"),
    }[kind]
    return load_section(cls, params, section)


def _with_or_without(path: tuple, value) -> dict:
    params = _with(path, value)
    if value is None:
        node = params
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]
    return params


@pytest.mark.parametrize(
    "target, path, bad, good, message", CASES2, ids=[f"{'.'.join(map(str, c[1]))}={c[2]!r}" for c in CASES2]
)
def test_defense_and_backdoor_rules_refuse_just_outside_and_accept_the_edge(target, path, bad, good, message):
    with pytest.raises(ConfigError) as exc:
        _load_area(target, _with_or_without(path, bad))
    assert str(exc.value) == message
    _load_area(target, _with_or_without(path, good))


# The generative area: "gspec:<name>" / "dspec:<name>" is one entry of gan.configs / diffusion.configs.
CASES3 = [
    (
        "gspec:nonsat",
        ("gan", "configs", "nonsat", "loss"),
        "hinge",
        "minimax",
        "params.yaml: 'gan.configs.nonsat.loss' must be one of ['minimax', 'non_saturating', 'wgan_gp'], found 'hinge'",
    ),
    (
        "gspec:nonsat",
        ("gan", "configs", "nonsat", "d_norm"),
        "layer",
        "spectral",
        "params.yaml: 'gan.configs.nonsat.d_norm' must be one of ['batch', 'none', 'spectral'] or null, found 'layer'",
    ),
    (
        "gspec:wgan_gp",
        ("gan", "configs", "wgan_gp", "d_norm"),
        "batch",
        "none",
        "params.yaml: 'gan.configs.wgan_gp.d_norm' batch norm breaks WGAN-GP's per-sample gradient penalty (Gulrajani et al. 2017); use none or spectral",
    ),
    (
        "gspec:nonsat",
        ("gan", "configs", "nonsat", "d_steps"),
        0,
        1,
        "params.yaml: 'gan.configs.nonsat.d_steps' must be >= 1, found 0",
    ),
    (
        "gspec:nonsat",
        ("gan", "configs", "nonsat", "lr"),
        0,
        1e-09,
        "params.yaml: 'gan.configs.nonsat.lr' must be > 0, found 0",
    ),
    (
        "gspec:nonsat",
        ("gan", "configs", "nonsat", "betas"),
        [0.5],
        [0.0, 0.999],
        "params.yaml: 'gan.configs.nonsat.betas' must be two numbers in [0, 1), found [0.5]",
    ),
    (
        "gspec:nonsat",
        ("gan", "configs", "nonsat", "betas"),
        [-0.1, 0.9],
        [0.0, 0.9],
        "params.yaml: 'gan.configs.nonsat.betas' must be two numbers in [0, 1), found [-0.1, 0.9]",
    ),
    (
        "gspec:nonsat",
        ("gan", "configs", "nonsat", "betas"),
        [0.5, 1.0],
        [0.5, 0.999],
        "params.yaml: 'gan.configs.nonsat.betas' must be two numbers in [0, 1), found [0.5, 1.0]",
    ),
    (
        "gspec:nonsat",
        ("gan", "configs", "nonsat", "z_dim"),
        0,
        1,
        "params.yaml: 'gan.configs.nonsat.z_dim' must be >= 1, found 0",
    ),
    (
        "gspec:nonsat",
        ("gan", "configs", "nonsat", "width"),
        0,
        1,
        "params.yaml: 'gan.configs.nonsat.width' must be >= 1, found 0",
    ),
    (
        "gspec:nonsat",
        ("gan", "configs", "nonsat", "gp_weight"),
        10.0,
        None,
        "params.yaml: 'gan.configs.nonsat.gp_weight' must be set for loss 'wgan_gp' and only there",
    ),
    (
        "gspec:wgan_gp",
        ("gan", "configs", "wgan_gp", "gp_weight"),
        None,
        1e-09,
        "params.yaml: 'gan.configs.wgan_gp.gp_weight' must be set for loss 'wgan_gp' and only there",
    ),
    (
        "gspec:wgan_gp",
        ("gan", "configs", "wgan_gp", "gp_weight"),
        0,
        1e-09,
        "params.yaml: 'gan.configs.wgan_gp.gp_weight' must be > 0, found 0",
    ),
    (
        "gan",
        ("gan", "configs"),
        {},
        {"x": {"loss": "minimax"}},
        "params.yaml: 'gan.configs' must name at least one GAN config",
    ),
    ("gan", ("gan", "batch_size"), 0, 1, "params.yaml: 'gan.batch_size' must be >= 1, found 0"),
    ("gan", ("gan", "log_every"), 0, 1, "params.yaml: 'gan.log_every' must be >= 1, found 0"),
    ("gan", ("gan", "grid"), 0, 1, "params.yaml: 'gan.grid' must be >= 1, found 0"),
    ("gan", ("gan", "nproc"), 0, 1, "params.yaml: 'gan.nproc' must be >= 1, found 0"),
    (
        "gan",
        ("profiles", prof, "gan", "g_steps"),
        0,
        1,
        "params.yaml: 'profiles.default.gan.g_steps' must be >= 1, found 0",
    ),
    (
        "gan",
        ("profiles", prof, "gan", "fid_every"),
        0,
        1,
        "params.yaml: 'profiles.default.gan.fid_every' must be >= 1, found 0",
    ),
    ("gan", ("gan", "n_boot_curve"), 0, 1, "params.yaml: 'gan.n_boot_curve' must be >= 1, found 0"),
    ("gan", ("gan", "trace_iters"), -1, 0, "params.yaml: 'gan.trace_iters' must be >= 0, found -1"),
    (
        "gan",
        ("profiles", prof, "gan", "probe_steps"),
        -1,
        0,
        "params.yaml: 'profiles.default.gan.probe_steps' must be >= 0, found -1",
    ),
    (
        "gan",
        ("profiles", prof, "gan", "n_train"),
        -1,
        0,
        "params.yaml: 'profiles.default.gan.n_train' must be >= 0, found -1",
    ),
    (
        "gan",
        ("profiles", prof, "gan", "n_fid"),
        9,
        10,
        "params.yaml: 'profiles.default.gan.n_fid' must be >= 10, found 9",
    ),
    ("gan", ("gan", "ema_decay"), -0.01, 0, "params.yaml: 'gan.ema_decay' must lie in [0, 1), found -0.01"),
    ("gan", ("gan", "ema_decay"), 1, 0.999, "params.yaml: 'gan.ema_decay' must lie in [0, 1), found 1"),
    ("gan", ("gan", "converge_window"), 1, 2, "params.yaml: 'gan.converge_window' must be >= 2, found 1"),
    (
        "ev",
        ("evaluate_generative", "models"),
        [],
        ["minimax"],
        "params.yaml: 'evaluate_generative.models' must name at least one generative model",
    ),
    (
        "ev",
        ("evaluate_generative", "models"),
        ["minimax", "minimax"],
        ["minimax", "nonsat"],
        "params.yaml: 'evaluate_generative.models' names a model twice: ['minimax', 'minimax']",
    ),
    (
        "ev",
        ("evaluate_generative", "feature_sha256"),
        "ababababababababababababababababababababababababababababababab",
        "abababababababababababababababababababababababababababababababab",
        "params.yaml: 'evaluate_generative.feature_sha256' must be a 64-digit lowercase hex sha256 or null, found 'ababababababababababababababababababababababababababababababab'",
    ),
    ("ev", ("evaluate_generative", "pr_k"), 0, 1, "params.yaml: 'evaluate_generative.pr_k' must be >= 1, found 0"),
    (
        "ev",
        ("evaluate_generative", "min_share"),
        0,
        0.001,
        "params.yaml: 'evaluate_generative.min_share' must lie in (0, 1), found 0",
    ),
    (
        "ev",
        ("evaluate_generative", "min_share"),
        1,
        0.999,
        "params.yaml: 'evaluate_generative.min_share' must lie in (0, 1), found 1",
    ),
    (
        "ev",
        ("profiles", prof, "evaluate_generative", "n"),
        9,
        1000,
        "params.yaml: 'profiles.default.evaluate_generative.n' must be >= 10, found 9",
    ),
    (
        "ev",
        ("profiles", prof, "evaluate_generative", "n_large"),
        1999,
        2000,
        "params.yaml: 'profiles.default.evaluate_generative.n_large' must be 0 or >= n (2000), found 1999",
    ),
    (
        "ev",
        ("profiles", prof, "evaluate_generative", "n_memorisation"),
        199,
        200,
        "params.yaml: 'profiles.default.evaluate_generative.n_memorisation' must be 0 (the whole splits) or >= 200 (its 1% threshold needs 100 held-out images), found 199",
    ),
    (
        "ev",
        ("profiles", prof, "evaluate_generative", "n_stacked"),
        0,
        1,
        "params.yaml: 'profiles.default.evaluate_generative.n_stacked' must be >= 1, found 0",
    ),
    (
        "ev",
        ("profiles", prof, "evaluate_generative", "n_boot"),
        0,
        1,
        "params.yaml: 'profiles.default.evaluate_generative.n_boot' must be >= 1, found 0",
    ),
    (
        "ev",
        ("evaluate_generative", "kid_subsets"),
        0,
        1,
        "params.yaml: 'evaluate_generative.kid_subsets' must be >= 1, found 0",
    ),
    (
        "ev",
        ("profiles", prof, "evaluate_generative", "n_paths"),
        0,
        1,
        "params.yaml: 'profiles.default.evaluate_generative.n_paths' must be >= 1, found 0",
    ),
    (
        "ev",
        ("profiles", prof, "evaluate_generative", "n_arith"),
        0,
        1,
        "params.yaml: 'profiles.default.evaluate_generative.n_arith' must be >= 1, found 0",
    ),
    (
        "ev",
        ("profiles", prof, "evaluate_generative", "kid_subset_size"),
        1,
        2,
        "params.yaml: 'profiles.default.evaluate_generative.kid_subset_size' must lie in [2, n = 2000], found 1",
    ),
    (
        "ev",
        ("profiles", prof, "evaluate_generative", "kid_subset_size"),
        2001,
        2000,
        "params.yaml: 'profiles.default.evaluate_generative.kid_subset_size' must lie in [2, n = 2000], found 2001",
    ),
    (
        "ev",
        ("evaluate_generative", "interp_steps"),
        2,
        3,
        "params.yaml: 'evaluate_generative.interp_steps' must be >= 3, found 2",
    ),
    (
        "ev",
        ("evaluate_generative", "monotone_tol"),
        -0.01,
        0,
        "params.yaml: 'evaluate_generative.monotone_tol' must lie in [0, 1), found -0.01",
    ),
    (
        "ev",
        ("evaluate_generative", "monotone_tol"),
        1,
        0.999,
        "params.yaml: 'evaluate_generative.monotone_tol' must lie in [0, 1), found 1",
    ),
    (
        "ae",
        ("autoencoder", "latent"),
        [4, 7],
        [1, 7, 7],
        "params.yaml: 'autoencoder.latent' must be three positive integers [channels, height, width], found [4, 7]",
    ),
    (
        "ae",
        ("autoencoder", "latent"),
        [0, 7, 7],
        [1, 14, 14],
        "params.yaml: 'autoencoder.latent' must be three positive integers [channels, height, width], found [0, 7, 7]",
    ),
    (
        "ae",
        ("autoencoder", "latent"),
        [4, 7, 14],
        [4, 7, 7],
        "params.yaml: 'autoencoder.latent' the autoencoder maps 28x28 images to a square latent of side [7, 14] (one or two stride-2 stages), found [4, 7, 14]",
    ),
    (
        "ae",
        ("autoencoder", "latent"),
        [4, 8, 8],
        [4, 7, 7],
        "params.yaml: 'autoencoder.latent' the autoencoder maps 28x28 images to a square latent of side [7, 14] (one or two stride-2 stages), found [4, 8, 8]",
    ),
    ("ae", ("autoencoder", "width"), 0, 1, "params.yaml: 'autoencoder.width' must be >= 1, found 0"),
    ("ae", ("autoencoder", "batch_size"), 0, 1, "params.yaml: 'autoencoder.batch_size' must be >= 1, found 0"),
    (
        "ae",
        ("profiles", prof, "autoencoder", "epochs"),
        0,
        1,
        "params.yaml: 'profiles.default.autoencoder.epochs' must be >= 1, found 0",
    ),
    (
        "ae",
        ("profiles", prof, "autoencoder", "n_recon"),
        0,
        1,
        "params.yaml: 'profiles.default.autoencoder.n_recon' must be >= 1, found 0",
    ),
    (
        "ae",
        ("profiles", prof, "autoencoder", "n_train"),
        -1,
        0,
        "params.yaml: 'profiles.default.autoencoder.n_train' must be >= 0, found -1",
    ),
    ("ae", ("autoencoder", "lr"), 0, 1e-09, "params.yaml: 'autoencoder.lr' must be > 0, found 0"),
    ("ae", ("autoencoder", "kl_weight"), -1e-09, 0, "params.yaml: 'autoencoder.kl_weight' must be >= 0, found -1e-09"),
    (
        "diff",
        ("profiles", prof, "diffusion", "main_sampler", "sampler"),
        "euler",
        "ddim",
        "params.yaml: 'diffusion.main_sampler.sampler' must be one of ['ddim', 'ddpm'], found 'euler'",
    ),
    (
        "diff",
        ("profiles", prof, "diffusion", "main_sampler", "steps"),
        0,
        1,
        "params.yaml: 'diffusion.main_sampler.steps' must be >= 1, found 0",
    ),
    (
        "diff",
        ("profiles", prof, "diffusion", "main_sampler", "eta"),
        -0.01,
        0,
        "params.yaml: 'diffusion.main_sampler.eta' must lie in [0, 1], found -0.01",
    ),
    (
        "diff",
        ("profiles", prof, "diffusion", "main_sampler", "eta"),
        1.01,
        1,
        "params.yaml: 'diffusion.main_sampler.eta' must lie in [0, 1], found 1.01",
    ),
    (
        "dspec:cosine",
        ("diffusion", "configs", "cosine", "epoch_factor"),
        0,
        1,
        "params.yaml: 'diffusion.configs.cosine.epoch_factor' must be >= 1, found 0",
    ),
    (
        "dspec:cosine",
        ("diffusion", "configs", "cosine", "schedule"),
        "sigmoid",
        "linear",
        "params.yaml: 'diffusion.configs.cosine.schedule' must be one of ['cosine', 'linear'], found 'sigmoid'",
    ),
    (
        "dspec:cosine",
        ("diffusion", "configs", "cosine", "space"),
        "wavelet",
        "pixel",
        "params.yaml: 'diffusion.configs.cosine.space' must be one of ['latent', 'pixel'], found 'wavelet'",
    ),
    (
        "dspec:cosine",
        ("diffusion", "configs", "cosine", "base"),
        0,
        1,
        "params.yaml: 'diffusion.configs.cosine.base' must be >= 1, found 0",
    ),
    (
        "dspec:cosine",
        ("diffusion", "configs", "cosine", "mults"),
        [],
        [1],
        "params.yaml: 'diffusion.configs.cosine.mults' must be positive multipliers, found []",
    ),
    (
        "dspec:cosine",
        ("diffusion", "configs", "cosine", "mults"),
        [1, 0],
        [1, 1],
        "params.yaml: 'diffusion.configs.cosine.mults' must be positive multipliers, found [1, 0]",
    ),
    (
        "diff",
        ("profiles", prof, "diffusion", "T"),
        0,
        1000,
        "params.yaml: 'profiles.default.diffusion.T' must be >= 1, found 0",
    ),
    ("diff", ("diffusion", "batch_size"), 0, 1, "params.yaml: 'diffusion.batch_size' must be >= 1, found 0"),
    ("diff", ("diffusion", "log_every"), 0, 1, "params.yaml: 'diffusion.log_every' must be >= 1, found 0"),
    ("diff", ("diffusion", "grid"), 0, 1, "params.yaml: 'diffusion.grid' must be >= 1, found 0"),
    ("diff", ("diffusion", "strip_seeds"), 0, 1, "params.yaml: 'diffusion.strip_seeds' must be >= 1, found 0"),
    ("diff", ("diffusion", "strip_frames"), 0, 1, "params.yaml: 'diffusion.strip_frames' must be >= 1, found 0"),
    (
        "diff",
        ("profiles", prof, "diffusion", "epochs"),
        0,
        1,
        "params.yaml: 'profiles.default.diffusion.epochs' must be >= 1, found 0",
    ),
    (
        "diff",
        ("profiles", prof, "diffusion", "n_sample"),
        0,
        1,
        "params.yaml: 'profiles.default.diffusion.n_sample' must be >= 1, found 0",
    ),
    (
        "diff",
        ("profiles", prof, "diffusion", "n_sweep"),
        0,
        1,
        "params.yaml: 'profiles.default.diffusion.n_sweep' must be >= 1, found 0",
    ),
    (
        "diff",
        ("profiles", prof, "diffusion", "n_guidance"),
        0,
        1,
        "params.yaml: 'profiles.default.diffusion.n_guidance' must be >= 1, found 0",
    ),
    ("diff", ("diffusion", "nproc"), 0, 1, "params.yaml: 'diffusion.nproc' must be >= 1, found 0"),
    ("diff", ("diffusion", "n_boot_curve"), 0, 1, "params.yaml: 'diffusion.n_boot_curve' must be >= 1, found 0"),
    (
        "diff",
        ("profiles", prof, "diffusion", "curve_steps"),
        0,
        1,
        "params.yaml: 'profiles.default.diffusion.curve_steps' must be >= 1, found 0",
    ),
    (
        "diff",
        ("profiles", prof, "diffusion", "n_train"),
        -1,
        0,
        "params.yaml: 'profiles.default.diffusion.n_train' must be >= 0, found -1",
    ),
    (
        "diff",
        ("profiles", prof, "diffusion", "snapshot_iters"),
        -1,
        0,
        "params.yaml: 'profiles.default.diffusion.snapshot_iters' must be >= 0, found -1",
    ),
    ("diff", ("diffusion", "warmup"), -1, 0, "params.yaml: 'diffusion.warmup' must be >= 0, found -1"),
    (
        "diff",
        ("profiles", prof, "diffusion", "n_fid"),
        9,
        10,
        "params.yaml: 'profiles.default.diffusion.n_fid' must be >= 10, found 9",
    ),
    ("diff", ("diffusion", "converge_window"), 1, 2, "params.yaml: 'diffusion.converge_window' must be >= 2, found 1"),
    (
        "diff",
        ("profiles", prof, "diffusion", "curve_steps"),
        1001,
        1000,
        "params.yaml: 'profiles.default.diffusion.curve_steps' must be <= T = 1000, found 1001",
    ),
    ("diff", ("diffusion", "lr"), 0, 1e-09, "params.yaml: 'diffusion.lr' must be > 0, found 0"),
    (
        "diff",
        ("diffusion", "ema_decay"),
        -0.01,
        0,
        "params.yaml: 'diffusion.ema_decay' must lie in [0, 1), found -0.01",
    ),
    ("diff", ("diffusion", "ema_decay"), 1, 0.999, "params.yaml: 'diffusion.ema_decay' must lie in [0, 1), found 1"),
    ("diff", ("diffusion", "p_uncond"), -0.01, 0, "params.yaml: 'diffusion.p_uncond' must lie in [0, 1), found -0.01"),
    ("diff", ("diffusion", "p_uncond"), 1, 0.999, "params.yaml: 'diffusion.p_uncond' must lie in [0, 1), found 1"),
    (
        "diff",
        ("diffusion", "guidance_scales"),
        [],
        [0],
        "params.yaml: 'diffusion.guidance_scales' must be scales >= 0, found []",
    ),
    (
        "diff",
        ("diffusion", "guidance_scales"),
        [-1, 1],
        [0, 1],
        "params.yaml: 'diffusion.guidance_scales' must be scales >= 0, found [-1, 1]",
    ),
    (
        "diff",
        ("diffusion", "guidance_scales"),
        [1, 1],
        [1, 2],
        "params.yaml: 'diffusion.guidance_scales' names a scale twice: [1, 1]",
    ),
    (
        "diff",
        ("profiles", prof, "diffusion", "main_sampler", "steps"),
        1001,
        1000,
        "params.yaml: 'profiles.default.diffusion.main_sampler' steps must be <= T = 1000, found 1001",
    ),
    (
        "diff",
        ("profiles", prof, "diffusion", "main_sampler"),
        {"sampler": "ddpm", "steps": 999},
        {"sampler": "ddpm", "steps": 1000},
        "params.yaml: 'profiles.default.diffusion.main_sampler' the ancestral ddpm sampler takes all T = 1000 steps, found steps = 999",
    ),
]


def _load_generative(target: str, params: dict):
    kind, _, name = target.partition(":")
    if kind == "gspec":
        return load_section(GANConfig, params, "gan").spec(name)
    if kind == "dspec":
        return load_section(DiffusionConfig, params, "diffusion").spec(name)
    cls, section = {
        "gan": (GANConfig, "gan"),
        "ev": (EvaluateGenerativeConfig, "evaluate_generative"),
        "ae": (AutoencoderConfig, "autoencoder"),
        "diff": (DiffusionConfig, "diffusion"),
    }[kind]
    return load_section(cls, params, section)


@pytest.mark.parametrize(
    "target, path, bad, good, message", CASES3, ids=[f"{'.'.join(map(str, c[1]))}={c[2]!r}" for c in CASES3]
)
def test_generative_rules_refuse_just_outside_and_accept_the_edge(target, path, bad, good, message):
    with pytest.raises(ConfigError) as exc:
        _load_generative(target, _with_or_without(path, bad))
    assert str(exc.value) == message
    _load_generative(target, _with_or_without(path, good))
