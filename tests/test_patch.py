"""Universal patch (C8): the size sweep, the printability/smoothness terms, the claim and the config."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from advgen.attacks.base import AttackError
from advgen.attacks.patch import (
    VARIANTS,
    curve_rows,
    example_rows,
    non_printability,
    patch_loss,
    patch_sweep,
    total_variation,
    train_patch,
)
from advgen import areas
from advgen.attacks.claims import CLAIMS as ATTACK_CLAIMS
from advgen.claims import claims_table
from advgen.config import ConfigError, from_dict, load_params
from advgen.report import build_report
from advgen.attacks.params import PatchConfig
from advgen.config import load_section
from tests.conftest import ROOT

PALETTE = torch.tensor([[0.0], [0.25], [0.5], [0.75], [1.0]])


class _Linear(nn.Module):
    """A fixed random linear classifier on (1, 8, 8) images: rough input gradients, no training needed."""

    def __init__(self, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = nn.Parameter(torch.randn(4, 64, generator=g))
        self.b = nn.Parameter(torch.zeros(4))

    def forward(self, x):
        return x.flatten(1) @ self.w.T + self.b


def _data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 8, 8, generator=g), torch.randint(0, 4, (n,), generator=g)


SWEEP = {"sizes": [2, 4], "target": 1, "epochs": 2, "batch_size": 32, "lr": 0.1, "w_nps": 0.05, "w_tv": 0.05,
         "palette": PALETTE, "num_classes": 4, "seed": 0, "ablation_size": 4, "weight_scales": [0, 1, 3]}


@pytest.fixture(scope="module")
def sweep():
    model = _Linear()
    train, test = _data(128, 1), _data(100, 2)
    return model, test, patch_sweep(model, train, test, **SWEEP)


def test_sweep_structure_and_intervals(sweep):
    _, (_, yte), (metrics, patches) = sweep
    n_eval = int((yte != 1).sum())
    assert metrics["n_eval"] == n_eval
    assert list(metrics["sizes"]) == ["2", "4"] and sorted(patches) == [2, 4]
    for k in (2, 4):
        entry = metrics["sizes"][str(k)]
        assert entry["size"] == k and entry["area_fraction"] == pytest.approx(k * k / 64)
        assert set(entry["patches"]) == set(VARIANTS) == set(patches[k])
        for name, r in entry["patches"].items():
            assert set(r) == {"success_rate", "ci95", "n", "nps", "tv"}
            assert r["n"] == n_eval and 0 <= r["success_rate"] <= 1
            lo, hi = r["ci95"]
            assert lo <= r["success_rate"] <= hi and hi - lo > 0
            assert patches[k][name].shape == (1, k, k)
            assert float(patches[k][name].min()) >= 0 and float(patches[k][name].max()) <= 1
        assert entry["patches"]["grey_baseline"]["tv"] == 0 and entry["patches"]["grey_baseline"]["nps"] == 0
    # The trained patch fools this linear model more often than both baselines.
    four = metrics["sizes"]["4"]["patches"]
    baselines = max(four["random_baseline"]["success_rate"], four["grey_baseline"]["success_rate"])
    assert four["without_terms"]["success_rate"] > baselines + 0.05
    ab = metrics["ablation"]
    assert ab["size"] == 4 and list(ab["scales"]) == ["0", "1", "3"]
    assert ab["scales"]["3"]["w_tv"] == pytest.approx(0.15) and ab["scales"]["0"]["w_nps"] == 0
    # Scales 0 and 1 at a swept size are the sweep's own patches (same seed, reused).
    for scale, name in (("0", "without_terms"), ("1", "with_terms")):
        assert {k: ab["scales"][scale][k] for k in ("success_rate", "nps", "tv")} == \
               {k: four[name][k] for k in ("success_rate", "nps", "tv")}
    json.dumps(metrics, allow_nan=False)  # plain data


def test_sweep_is_deterministic_and_draws_no_global_randomness(sweep):
    model, test, (metrics, patches) = sweep
    torch.manual_seed(12345)  # the global RNG must not matter
    torch.rand(7)
    again, patches2 = patch_sweep(model, _data(128, 1), test, **SWEEP)
    assert again == metrics
    assert all(torch.equal(patches[k][n], patches2[k][n]) for k in patches for n in patches[k])


def test_curve_rows_and_examples(sweep):
    model, (xte, _), (metrics, patches) = sweep
    rows = curve_rows(metrics)
    assert [r["size"] for r in rows] == [2, 4]
    assert list(rows[0]) == ["size", "area_fraction", "with_terms", "without_terms", "random_baseline", "grey_baseline"]
    assert rows[1]["with_terms"] == metrics["sizes"]["4"]["patches"]["with_terms"]["success_rate"]
    fig = example_rows(model, {k: v["with_terms"] for k, v in patches.items()}, xte[:3], seed=5)
    assert [label for label, _, _ in fig] == ["2x2", "4x4"]
    imgs, pred = fig[1][1], fig[1][2]
    assert imgs.shape == (4, 1, 8, 8) and pred.shape == (4,)
    # The first image is the patch alone, centred on grey.
    assert torch.equal(imgs[0, :, 2:6, 2:6], patches[4]["with_terms"])
    assert float(imgs[0, 0, 0, 0]) == 0.5


def _train(model, x, y, **weights):
    args = {"k": 6, "target": 1, "epochs": 8, "batch_size": 64, "lr": 0.1, "palette": PALETTE, "num_classes": 4,
            "generator": torch.Generator().manual_seed(0)}
    return train_patch(model, x, y, **{**args, **weights}).patch


def test_larger_weights_lower_tv_and_nps():
    model, (x, y) = _Linear(), _data(256, 3)
    free = _train(model, x, y, w_nps=0.0, w_tv=0.0)
    smooth = _train(model, x, y, w_nps=0.0, w_tv=0.2)
    printable = _train(model, x, y, w_nps=0.5, w_tv=0.0)
    tv0, nps0 = float(total_variation(free)), float(non_printability(free, PALETTE))
    assert tv0 > 0.2 and nps0 > 0.005  # there is something to remove
    assert float(total_variation(smooth)) < 0.5 * tv0
    assert float(non_printability(printable, PALETTE)) < 0.5 * nps0
    # and monotone along the weight: a larger TV weight gives a smoother patch still.
    smoother = _train(model, x, y, w_nps=0.0, w_tv=1.0)
    assert float(total_variation(smoother)) < float(total_variation(smooth))


def _term_grad(k: int, patch: torch.Tensor, w_nps: float, w_tv: float) -> torch.Tensor:
    """Gradient of the NPS/TV part of the training loss with respect to the patch pixels."""
    p = patch.clone().requires_grad_(True)
    x, y = _data(4, 0)
    rows = cols = torch.zeros(4, dtype=torch.long)
    loss, parts = patch_loss(_Linear(), x, y, p, rows, cols, target=1, w_nps=w_nps, w_tv=w_tv, palette=PALETTE)
    (g,) = torch.autograd.grad(loss - parts["adv"], p)
    return g


@pytest.mark.parametrize("k", [3, 4, 8])
def test_term_weights_are_per_pixel_whatever_the_size(k):
    """A pixel's gradient from the terms must not shrink with the patch size: with per-pixel
    means it fell as 1/k^2, 16x from a 4x4 to a 16x16 patch, while the cross-entropy's does not."""
    g = _term_grad(k, torch.full((1, k, k), 0.6), w_nps=0.3, w_tv=0.0)  # nearest printable level 0.5
    assert torch.allclose(g, torch.full_like(g, 0.3))
    checker = 0.25 + 0.5 * ((torch.arange(k)[:, None] + torch.arange(k)[None, :]) % 2).float()
    g = _term_grad(k, checker[None], w_nps=0.0, w_tv=0.2)
    # An interior pixel of a checkerboard differs from its 4 neighbours in the same direction.
    assert float(g[0, 1, 1].abs()) == pytest.approx(4 * 0.2)
    assert float(g[0, 0, 0].abs()) == pytest.approx(2 * 0.2)


def test_train_patch_restores_the_models_flags():
    model, (x, y) = _Linear(), _data(64, 4)
    model.b.requires_grad_(False)
    _train(model, x, y, w_nps=0.0, w_tv=0.0, epochs=1)
    assert [p.requires_grad for p in model.parameters()] == [True, False]


def test_sweep_rejects_sizes_that_do_not_fit():
    model, data = _Linear(), _data(32, 5)
    with pytest.raises(AttackError, match=r"patch size k must lie in \[1, 8\].*found 9"):
        patch_sweep(model, data, data, **{**SWEEP, "sizes": [2, 9]})
    with pytest.raises(AttackError, match="found 12"):
        patch_sweep(model, data, data, **{**SWEEP, "ablation_size": 12})
    with pytest.raises(AttackError, match="distinct"):
        patch_sweep(model, data, data, **{**SWEEP, "sizes": [2, 2]})
    only_target = (data[0], torch.ones(32, dtype=torch.long))
    with pytest.raises(AttackError, match="no test image outside the target class"):
        patch_sweep(model, data, only_target, **SWEEP)


# --- config -------------------------------------------------------------------------------------

GOOD = {"model": "cnn", "sizes": [4, 8, 12, 16], "target": 8, "lr": 0.05, "batch_size": 128, "w_nps": 0.03,
        "w_tv": 0.03, "palette": [0.0, 0.5, 1.0], "ablation_size": 8, "weight_scales": [0, 1, 4, 16],
        "n_train": 100, "n_test": 50, "epochs": 1}


@pytest.mark.parametrize("change, needle", [
    ({"sizes": []}, "'patch.sizes' must be a non-empty list"),
    ({"sizes": [0, 4]}, "'patch.sizes' must be a non-empty list of sizes >= 1, found [0, 4]"),
    ({"sizes": [8, 4]}, "'patch.sizes' must be strictly increasing"),
    ({"sizes": [4, 4]}, "'patch.sizes' must be strictly increasing"),
    ({"sizes": 8}, "'patch.sizes' = 8 has the wrong type"),
    ({"ablation_size": 0}, "'patch.ablation_size' must be >= 1"),
    ({"weight_scales": [0, -1]}, "'patch.weight_scales' must be distinct values >= 0"),
    ({"weight_scales": []}, "'patch.weight_scales'"),
    ({"w_tv": -0.1}, "'patch.w_tv' must be >= 0"),
    ({"size": 8}, "unknown key 'patch.size'"),
])
def test_config_rejects_bad_values(change, needle):
    cfg_cls = PatchConfig
    with pytest.raises(ConfigError) as err:
        from_dict(cfg_cls, {**GOOD, **change}, "patch")
    assert needle in str(err.value)


def test_config_rejects_sizes_larger_than_the_image():
    cfg = from_dict(PatchConfig, {**GOOD, "sizes": [4, 8, 32]}, "patch")
    cfg.check_image(32)
    with pytest.raises(ConfigError, match=r"'patch.sizes' must fit the 28x28 image, found \[4, 8, 32\]"):
        cfg.check_image(28)
    cfg = from_dict(PatchConfig, {**GOOD, "ablation_size": 30}, "patch")
    with pytest.raises(ConfigError, match="'patch.ablation_size' must fit the 28x28 image"):
        cfg.check_image(28)


def test_real_params_are_valid_in_every_profile():
    params = load_params(ROOT / "params.yaml")
    cls = PatchConfig
    for profile in params["profiles"]:
        cfg = load_section(cls, params, "patch", profile)
        cfg.check_image(28)
        assert cfg.ablation_size in cfg.sizes and {0, 1} <= set(cfg.weight_scales)  # 0 and 1 are reused


# --- claim C8 and the report ---------------------------------------------------------------------

def _rate(p: float, n: int = 1800) -> dict:
    from advgen.stats import wilson_p

    return {"success_rate": p, "ci95": list(wilson_p(p, n)), "n": n, "nps": 0.01, "tv": 0.3}


def _metrics(with_terms: dict[int, float], random: float = 0.02) -> dict:
    sizes = {}
    for k, p in with_terms.items():
        sizes[str(k)] = {"size": k, "area_fraction": k * k / 784, "patches": {
            "with_terms": _rate(p), "without_terms": {**_rate(min(1.0, p + 0.05)), "nps": 0.02, "tv": 0.6},
            "random_baseline": _rate(random), "grey_baseline": _rate(0.01)}}
    scales = {f"{s:g}": {"scale": s, "w_nps": 0.03 * s, "w_tv": 0.03 * s, **_rate(0.1)} for s in (0, 1, 4, 16)}
    return {"model": "cnn", "target": 8, "target_name": "Bag", "n_train": 10000, "n_test": 2000, "epochs": 5,
            "n_eval": 1800, "clean_accuracy": 0.93, "clean_accuracy_ci95": [0.92, 0.94], "palette": [0.0, 1.0],
            "sizes": sizes, "ablation": {"size": 8, "area_fraction": 64 / 784, "w_nps": 0.03, "w_tv": 0.03,
                                         "scales": scales}}


def _c8(metrics: dict | None):
    return ATTACK_CLAIMS.evaluators["C8"]({} if metrics is None else {"patch": {"metrics": metrics}})


def test_c8_supported_when_a_small_patch_fools_most_images():
    found = _c8(_metrics({4: 0.05, 8: 0.2, 12: 0.62, 16: 0.9}))
    assert found.verdict == "supported"
    assert "12x12 (18%): 62.0% [59.7, 64.2]" in found.measured
    assert "4x4 (2%): 5.0%" in found.measured and "16x16 (33%): 90.0%" in found.measured
    assert "<= 20%" in found.criterion and "lower end" in found.criterion


@pytest.mark.parametrize("with_terms, random", [
    ({4: 0.05, 8: 0.2, 12: 0.45, 16: 0.95}, 0.02),  # only the 33% patch succeeds: it does not count
    ({4: 0.05, 8: 0.2, 12: 0.51, 16: 0.95}, 0.02),  # 51% but the interval reaches below 50%
    ({4: 0.05, 8: 0.2, 12: 0.70, 16: 0.95}, 0.45),  # not 30 points above the random patch
])
def test_c8_not_supported(with_terms, random):
    assert _c8(_metrics(with_terms, random)).verdict == "not_supported"


def test_c8_not_measured_without_the_curve():
    assert _c8(None) is None
    old_schema = {"size": 8, "area_fraction": 0.08, "target": 8, "patches": {"with_terms": _rate(0.1)}}
    assert _c8(old_schema) is None
    rows = {r["id"]: r for r in claims_table({}, areas.claim_registries())}
    assert rows["C8"]["verdict"] == "not_measured"


def test_report_shows_the_curve_and_the_ablation(tmp_path):
    (tmp_path / "patch").mkdir()
    (tmp_path / "patch" / "metrics.json").write_text(json.dumps(_metrics({4: 0.05, 8: 0.2, 12: 0.62, 16: 0.9})))
    summary, claims, _ = build_report(tmp_path, areas.report_parts(), areas.claim_registries())
    assert "## Universal patch (C8)" in summary
    assert ("| 12 | 18.4 | 62.0 [59.7, 64.2] | 67.0 [64.8, 69.1] | 2.0 [1.4, 2.8] | 1.0 [0.6, 1.6] | 0.010 / 0.020 "
            "| 0.300 / 0.600 |") in summary
    assert "| 16 | 0.48 | 0.48 | 10.0 [8.7, 11.5] | 0.010 | 0.300 |" in summary  # the ablation table
    assert {r["id"]: r["verdict"] for r in claims}["C8"] == "supported"


def test_hand_written_adam_is_torchs_adam():
    from advgen.attacks.patch import _Adam

    g = torch.Generator().manual_seed(0)
    mine = torch.randn(3, 4, 4, generator=g)
    ref = mine.clone().requires_grad_(True)
    opt, adam = torch.optim.Adam([ref], lr=0.05), _Adam(mine, 0.05)
    for i in range(30):
        grad = torch.randn(3, 4, 4, generator=g) * (i + 1)
        ref.grad = grad.clone()
        opt.step()
        adam.step(grad)
    assert torch.allclose(mine, ref.detach(), atol=1e-7)
