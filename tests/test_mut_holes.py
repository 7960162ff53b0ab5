"""Issue 20's four test holes, each pinned by a test that fails on the planted bug:

* randomized smoothing's noise without its sigma (``x + noise`` instead of ``x + sigma * noise``);
* precision/recall's k-NN radius at the k-th instead of the (k+1)-th row (the row itself is the 1st);
* the U-Net depth check off by one (levels, or the halving test);
* ``attack.tolerance`` in [0, 1) and ``attack.eps_linf`` containing 0.

Every expected number is worked out by hand in the comments, not by the code under test.
"""
from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from advgen.config import ConfigError, load_params, load_section
from advgen.defenses import smoothing as S
from advgen.generative.scores import _kth_radius, precision_recall
from tests.conftest import ROOT

try:  # the params schemas are moving out of advgen.schema into the area packages
    from advgen.attacks.params import AttackConfig
except ImportError:  # pragma: no cover - before the move
    from advgen.schema import AttackConfig


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------------------------
# (a) randomized smoothing: the noise is sigma * N(0, I)


class Recorder(nn.Module):
    """Class 0 always; keeps every batch it is shown."""

    def __init__(self):
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, x):
        self.seen.append(x.clone())
        return torch.zeros(len(x), 2)


@pytest.mark.parametrize("sigma", [0.25, 0.5])
def test_smoothing_noise_is_sigma_times_the_generators_normal_draws(sigma):
    # sample_counts draws, per image, randn((n, C, H, W)) from the generator (n <= batch_size: one
    # chunk) and shows the base classifier x + sigma * noise: rebuild that from the same seed.
    x = torch.rand(2, 1, 4, 4, generator=gen(1))
    model = Recorder()
    S.sample_counts(model, x, sigma, 50, gen(7), batch_size=100)
    seen = torch.cat(model.seen)  # (2 * 50, 1, 4, 4)
    ref = gen(7)
    expected = torch.cat([x[i:i + 1] + sigma * torch.randn((50, 1, 4, 4), generator=ref) for i in range(2)])
    torch.testing.assert_close(seen, expected, rtol=0, atol=1e-6)


def test_smoothing_noise_has_standard_deviation_sigma():
    # 400 draws of a 16x16 image: 102,400 noise values, whose sample std is sigma within 1%
    # (the std of a sample std is sigma / sqrt(2 m) = 0.22% of sigma here). With the sigma
    # dropped it would be 1.
    sigma = 0.25
    x = torch.full((1, 1, 16, 16), 0.5)
    model = Recorder()
    S.sample_counts(model, x, sigma, 400, gen(3), batch_size=400)
    noise = torch.cat(model.seen) - x
    assert abs(float(noise.std()) / sigma - 1) < 0.01
    assert abs(float(noise.mean())) < 0.01 * sigma


def test_certified_radius_scales_with_sigma_on_a_threshold_classifier():
    # f(x) = class 0 iff pixel 0 < 0.5 + sigma (one sigma above the image's 0.5): under the noise
    # P(class 0) = Phi(1) = 0.841 at any sigma. With n = 2000 draws the Clopper-Pearson lower
    # bound (alpha = 0.001) is about 0.841 - 3.1 * sqrt(0.841 * 0.159 / 2000) = 0.816 (the count's
    # own spread, 2.5 standard errors, moves it by 0.02 either way), so the radius is about
    # sigma * Phi^-1(0.816) = 0.90 sigma, inside (0.75, 1.1) sigma for p_lower in (0.78, 0.86).
    # Noise of std 1 would give P(class 0) = Phi(0.25) = 0.60 and a radius near 0.06 sigma.
    sigma = 0.25

    class Threshold(nn.Module):
        def forward(self, x):
            s = (0.5 + sigma) - x.flatten(1)[:, 0]
            return torch.stack([s, -s], 1)

    x = torch.full((3, 1, 2, 2), 0.5)
    pred, radius, p_lower = S.certify(Threshold(), x, sigma, 50, 2000, 0.001, gen(5), batch_size=2000)
    assert pred.tolist() == [0, 0, 0]
    assert bool(((p_lower > 0.78) & (p_lower < 0.86)).all()), p_lower
    assert bool(((radius > 0.75 * sigma) & (radius < 1.1 * sigma)).all()), radius


# ---------------------------------------------------------------------------------------------
# (b) precision and recall: the k-NN ball of a row reaches its k-th nearest *other* row


# One-dimensional features, small integers and halves, so every distance is exact.
REAL = torch.tensor([0.0, 1.0, 3.0, 6.0, 10.0])[:, None]
FAKE = torch.tensor([-0.5, 2.5, 4.75, 14.0, 20.0])[:, None]


def test_kth_radius_is_the_distance_to_the_kth_other_point():
    # distances from each real point to the others, sorted:
    #   0: 1 3 6 10 | 1: 1 2 5 9 | 3: 2 3 3 7 | 6: 3 4 5 6 | 10: 4 7 9 10
    assert _kth_radius(REAL, 1, 1000).tolist() == [1.0, 1.0, 2.0, 3.0, 4.0]
    assert _kth_radius(REAL, 2, 1000).tolist() == [3.0, 2.0, 3.0, 4.0, 7.0]
    assert _kth_radius(REAL, 2, 2).tolist() == [3.0, 2.0, 3.0, 4.0, 7.0]  # in chunks of 2 rows


def test_precision_recall_against_hand_computed_balls():
    # k = 1. Real balls (radius above): [-1, 1], [0, 2], [1, 5], [3, 9], [6, 14].
    # Fakes -0.5, 2.5, 4.75 and 14 (on the edge of 10's ball) are inside, 20 is not: precision 4/5.
    # Fake radii (nearest other fake): -0.5: 3, 2.5: 2.25, 4.75: 2.25, 14: 6, 20: 6, so the fake
    # balls are [-3.5, 2.5], [0.25, 4.75], [2.5, 7], [8, 20], [14, 26]; real 0, 1, 3, 6, 10 are all
    # inside: recall 1.
    assert precision_recall(REAL, FAKE, k=1) == (0.8, 1.0)
    # k = 2. Real balls: [-3, 3], [-1, 3], [0, 6], [2, 10], [3, 17]: every fake but 20 -> 4/5.
    # Fake radii (2nd nearest other fake): -0.5: 5.25, 2.5: 3, 4.75: 5.25, 14: 9.25, 20: 15.25;
    # every real point is inside some fake ball -> 1.
    assert precision_recall(REAL, FAKE, k=2) == (0.8, 1.0)
    # Swapping the roles swaps the figures' meaning: precision of REAL against FAKE's balls.
    assert precision_recall(FAKE, REAL, k=1) == (1.0, 0.8)


def test_precision_recall_of_disjoint_clusters_with_a_gap_below_the_radius():
    # Real: 0, 1, 2, 3 (k = 1 radius 1 each). Fake: 4, 5, 6, 7 (radius 1 each). Fake 4 is at
    # distance 1 from real 3 (inside its ball, the edge counts); 5, 6, 7 are not: precision 1/4.
    # Real 3 is inside fake 4's ball, the others not: recall 1/4. A ball of radius 0 (the row
    # itself) would cover nothing: (0, 0).
    real = torch.arange(4.0)[:, None]
    fake = torch.arange(4.0, 8.0)[:, None]
    assert precision_recall(real, fake, k=1) == (0.25, 0.25)
    # k = 3 needs 4 samples per set: radius 3 for the end points, 2 for the inner ones.
    # Real balls reach 3 + 3 = 6 (from 3) and 2 + 2 = 4 (from 2): fakes 4, 5, 6 -> 3/4;
    # fake balls reach down to 4 - 3 = 1 and 5 - 2 = 3: reals 1, 2, 3 -> 3/4.
    assert precision_recall(real, fake, k=3) == (0.75, 0.75)


# ---------------------------------------------------------------------------------------------
# (c) the U-Net halves its input len(mults) - 1 times: the side must be divisible by 2^that


def _fit(side_h: int, side_w: int, mults: list[int]):
    from advgen.generative.diffusion_run import fit_diffusion

    spec = SimpleNamespace(base=4, mults=mults, num_classes=0, schedule="linear", space="pixel")
    x = torch.rand(8, 1, side_h, side_w, generator=gen(0))
    return fit_diffusion(spec, x, None, None, T=10, epochs=1, batch_size=8, lr=1e-3, ema_decay=0.9,
                         p_uncond=0.0, log_every=5, snapshot_iters=0, generator=gen(1), device=torch.device("cpu"))


def test_u_net_depth_check_at_the_boundary():
    # 8 = 2^3: four levels halve it three times (8 -> 4 -> 2 -> 1): accepted and trained.
    fit = _fit(8, 8, [1, 1, 1, 1])
    assert fit.data_shape == (1, 8, 8)
    # Five levels would halve it four times: refused, and the message says four is the most.
    with pytest.raises(ValueError, match=r"has 5 levels, so the U-Net halves its input 4 time\(s\).*8x8; "
                                         r"use at most 4 levels"):
        _fit(8, 8, [1, 1, 1, 1, 1])
    # 12 = 4 * 3: three levels (two halvings) fit, four do not.
    assert _fit(12, 12, [1, 1, 1]).data_shape == (1, 12, 12)
    with pytest.raises(ValueError, match=r"has 4 levels.*12x12; use at most 3 levels"):
        _fit(12, 12, [1, 1, 1, 1])


def test_u_net_depth_check_reads_both_sides():
    # 8 x 12: height allows 3 halvings, width 2; four levels need 3, so the width refuses them.
    with pytest.raises(ValueError, match=r"has 4 levels.*8x12"):
        _fit(8, 12, [1, 1, 1, 1])
    with pytest.raises(ValueError, match=r"has 4 levels.*12x8"):
        _fit(12, 8, [1, 1, 1, 1])


# ---------------------------------------------------------------------------------------------
# (d) params checks of the attack section, through load_section


PARAMS = load_params(ROOT / "params.yaml")


def _attack(**changes) -> AttackConfig:
    params = copy.deepcopy(PARAMS)
    params["attack"].update(changes)
    return load_section(AttackConfig, params, "attack")


def test_the_repositorys_attack_section_loads():
    cfg = _attack()
    assert 0 <= cfg.tolerance < 1 and 0.0 in cfg.eps_linf


@pytest.mark.parametrize("tolerance", [1, 1.0, 1.5, -0.001])
def test_attack_tolerance_outside_zero_one_is_refused(tolerance):
    with pytest.raises(ConfigError, match=r"'attack\.tolerance' must lie in \[0, 1\)") as err:
        _attack(tolerance=tolerance)
    assert "attack.tolerance" in str(err.value)


@pytest.mark.parametrize("tolerance", [0, 0.0, 0.5, 0.999])
def test_attack_tolerance_inside_zero_one_is_accepted(tolerance):
    assert _attack(tolerance=tolerance).tolerance == tolerance


def test_attack_eps_linf_must_contain_zero():
    eps = [e for e in PARAMS["attack"]["eps_linf"] if e != 0]
    assert len(eps) == len(PARAMS["attack"]["eps_linf"]) - 1  # the repository's grid has 0
    with pytest.raises(ConfigError, match=r"'attack\.eps_linf' must contain 0") as err:
        _attack(eps_linf=eps)
    assert "attack.eps_linf" in str(err.value)
