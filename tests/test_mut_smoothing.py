"""Randomized smoothing's certification side (advgen.defenses.smoothing) against hand-computed
numbers (issue 20: tests that kill mutants): the sidecar and argument checks, how the noise is
drawn and packed, the counts, PREDICT's binomial test at its boundary, the Clopper-Pearson bound,
CERTIFY's draws, certified accuracy, the certificate check and the radius grid."""
from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import norm
from torch import nn

from advgen.defenses import smoothing as S
from tests.test_smoothing import Constant, gen  # Constant(c, k): always class c of k


class Sign(nn.Module):
    """Class 0 if pixel 0 < 0.5, class 1 if above, and it keeps every batch it is shown."""

    def __init__(self):
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, x):
        self.seen.append(x.clone())
        s = x.flatten(1)[:, 0] - 0.5
        return torch.stack([-s, s], 1)


# ---------------------------------------------------------------------------------------------
# sigma_of and the argument checks


def _with(sidecar):
    m = nn.Linear(1, 1)
    if sidecar is not ...:
        m.sidecar = sidecar
    return m


def test_sigma_of_reads_the_gaussian_sidecar():
    assert S.sigma_of(_with({"defense": {"method": "gaussian", "sigma": 0.25}})) == 0.25
    out = S.sigma_of(_with({"defense": {"method": "gaussian", "sigma": 1}}))
    assert out == 1.0 and isinstance(out, float)


@pytest.mark.parametrize("sidecar, shown", [
    (..., "None"), ("x", "None"), ({}, "None"), ({"defense": "gaussian"}, "'gaussian'"),
    ({"defense": {"method": "pgd"}}, "{'method': 'pgd'}"),
])
def test_sigma_of_refuses_other_models(sidecar, shown):
    msg = (f"model 'm1' is not a Gaussian-noise base classifier (its sidecar's 'defense' is {shown}, expected "
           "method 'gaussian'); randomized smoothing needs one (defend stage)")
    with pytest.raises(ValueError) as err:
        S.sigma_of(_with(sidecar), "m1")
    assert str(err.value) == msg


@pytest.mark.parametrize("sigma", [0, -0.5, True, "0.25", None])
def test_sigma_of_refuses_bad_sigmas(sigma):
    with pytest.raises(ValueError) as err:
        S.sigma_of(_with({"defense": {"method": "gaussian", "sigma": sigma}}))
    assert str(err.value) == f"model 'model': the sidecar's defense sigma must be a number > 0, found {sigma!r}"


def test_check_messages():
    x = torch.zeros(1, 1, 2, 2)
    S._check(x, 0.1, 1, 1)
    with pytest.raises(ValueError, match=r"^expected images of shape \(B, C, H, W\), found \(1, 4\)$"):
        S._check(x.view(1, 4), 0.1, 1, 1)
    with pytest.raises(ValueError, match=r"^sigma must be > 0, found 0$"):
        S._check(x, 0, 1, 1)
    with pytest.raises(ValueError, match=r"^n and batch_size must be >= 1, found n=0, batch_size=5$"):
        S._check(x, 0.1, 0, 5)
    with pytest.raises(ValueError, match=r"^n and batch_size must be >= 1, found n=5, batch_size=0$"):
        S._check(x, 0.1, 5, 0)
    with pytest.raises(ValueError, match="sigma must be > 0"):
        S.sample_counts(Constant(1, 3), x, -1.0, 3, gen())


# ---------------------------------------------------------------------------------------------
# The noise: chunks of min(n, batch_size) draws, image after image, packed into batches


def _draws(x, sigma, n, batch_size, seed):
    """The documented draws, by hand: per image, chunks of min(n, batch_size)."""
    g, chunk, out = gen(seed), min(n, batch_size), []
    for i in range(len(x)):
        for start in range(0, n, chunk):
            k = min(chunk, n - start)
            out.append(x[i:i + 1] + sigma * torch.randn((k, *x.shape[1:]), generator=g))
    return torch.cat(out)


@pytest.mark.parametrize("n, batch_size, sizes", [
    (5, 3, [3, 2, 3, 2]),  # chunks 3, 2 per image; a chunk that does not fit starts a new batch
    (4, 10, [8, 4]),  # n <= batch_size: whole images, two per batch
    (3, 3, [3, 3, 3]),
    (1, 1, [1, 1, 1]),
])
def test_noisy_batches_pack_the_documented_draws(n, batch_size, sizes):
    x = torch.rand(3 if n != 5 else 2, 1, 2, 2, generator=gen(1))
    got = list(S._noisy_batches(x, 0.3, n, gen(4), batch_size))
    assert [len(b) for _, b in got] == sizes
    idx = torch.cat([i for i, _ in got])
    assert idx.tolist() == [i for i in range(len(x)) for _ in range(n)] and idx.dtype == torch.long
    torch.testing.assert_close(torch.cat([b for _, b in got]), _draws(x, 0.3, n, batch_size, 4), rtol=0, atol=1e-6)


def test_noisy_batches_of_no_images_yield_nothing():
    assert list(S._noisy_batches(torch.zeros(0, 1, 2, 2), 0.3, 4, gen(), 10)) == []


def test_sample_counts_counts_each_images_draws():
    # pixel 0 of image 0 at 0.5 + 0.3 (class 1 unless the noise is below -0.3), image 1 at 0.5 - 10 (class 0)
    x = torch.full((2, 1, 1, 2), 0.5)
    x[0, 0, 0, 0], x[1, 0, 0, 0] = 0.8, -9.5
    model = Sign()
    counts = S.sample_counts(model, x, 0.3, 40, gen(2), batch_size=30)
    noise = (_draws(x, 0.3, 40, 30, 2) - x.repeat_interleave(40, 0))[:, 0, 0, 0]
    n_below = int((noise[:40] < -0.3).sum())  # class 0 draws of image 0 (about 16% of 40)
    assert counts.tolist() == [[n_below, 40 - n_below], [40, 0]]
    assert 0 < n_below < 20 and counts.dtype == torch.long and counts.device.type == "cpu"
    assert [len(b) for b in model.seen] == [30, 10, 30, 10]  # chunks of 30 and 10; 10 + 30 > 30 starts a batch


def test_sample_counts_of_no_images_has_the_sidecars_class_count():
    m = Constant(1, 3)
    assert S.sample_counts(m, torch.zeros(0, 1, 2, 2), 0.1, 5, gen()).shape == (0, 0)
    m.sidecar = {"num_classes": 7}
    out = S.sample_counts(m, torch.zeros(0, 1, 2, 2), 0.1, 5, gen())
    assert out.shape == (0, 7) and out.dtype == torch.long
    m.sidecar = None
    assert S.sample_counts(m, torch.zeros(0, 1, 2, 2), 0.1, 5, gen()).shape == (0, 0)


def test_top_two_breaks_ties_toward_the_lower_class():
    counts = torch.tensor([[1, 5, 5, 0], [7, 2, 0, 2], [0, 0, 0, 9]])
    cls, a, b = S._top_two(counts)
    assert cls.tolist() == [1, 0, 3] and a.tolist() == [5, 7, 9] and b.tolist() == [5, 2, 0]
    cls, a, b = S._top_two(torch.tensor([[4], [2]]))  # one class: no runner-up
    assert cls.tolist() == [0, 0] and a.tolist() == [4, 2] and b.tolist() == [0, 0]


# ---------------------------------------------------------------------------------------------
# PREDICT, the bound and CERTIFY


def test_predict_returns_the_class_exactly_at_p_equal_alpha():
    # Constant: nA = n, nB = 0; the two-sided binomial p-value is 2 * 0.5^n = 2 / 1024 at n = 10
    x = torch.rand(2, 1, 2, 2, generator=gen())
    assert S.predict(Constant(2, 4), x, 0.2, 10, 2 / 1024, gen()).tolist() == [2, 2]
    assert S.predict(Constant(2, 4), x, 0.2, 10, 2 / 1024 * 0.999, gen()).tolist() == [-1, -1]
    out = S.predict(Constant(2, 4), x, 0.2, 11, 2 / 1024 * 0.999, gen(), batch_size=3)  # one more draw: 1/1024
    assert out.tolist() == [2, 2] and out.dtype == torch.long


def test_predict_tests_the_top_two_counts_per_image():
    # image 0 is far on the class-1 side (always 1), image 1 on the class-0 side, image 2 at the boundary
    x = torch.full((3, 1, 1, 1), 0.5)
    x[0], x[1] = 5.0, -4.0
    out = S.predict(Sign(), x, 0.1, 30, 0.01, gen(3))
    assert out.tolist() == [1, 0, -1]


def test_lower_confidence_bound_by_hand():
    assert S.lower_confidence_bound(0, 10, 0.05) == 0.0
    assert S.lower_confidence_bound(10, 10, 0.05) == pytest.approx(0.05 ** (1 / 10), rel=1e-12)
    assert S.lower_confidence_bound(1, 1, 0.2) == pytest.approx(0.2, rel=1e-12)
    # the textbook exact 95% interval of 5/10 is (0.1871, 0.8129): its lower end at alpha = 0.025
    assert S.lower_confidence_bound(5, 10, 0.025) == pytest.approx(0.18709, abs=1e-5)
    # k = 1: 1 - (1 - alpha)^(1/n)
    assert S.lower_confidence_bound(1, 4, 0.1) == pytest.approx(1 - 0.9 ** 0.25, rel=1e-9)
    assert isinstance(S.lower_confidence_bound(3, 4, 0.1), float)


def test_certify_draws_n0_then_n_and_certifies_from_the_second_set():
    # image 0 far on the class-1 side, image 1 at the boundary: a coin, pA_lower < 1/2: abstain
    x = torch.full((2, 1, 1, 1), 0.5)
    x[0] = 3.0
    model = Sign()
    pred, radius, p_lower = S.certify(model, x, 0.5, 7, 60, 0.01, gen(1), batch_size=100)
    assert [len(b) for b in model.seen] == [14, 60, 60]  # n0 draws of both images, then n of each
    assert pred.tolist() == [1, -1]
    p = 0.01 ** (1 / 60)  # all 60 draws of image 0 are class 1
    assert p_lower[0].item() == pytest.approx(p, rel=1e-12) and p_lower[1].item() < 0.5
    assert radius[0].item() == pytest.approx(0.5 * norm.ppf(p), rel=1e-12) and radius[1].item() == 0.0
    assert radius.dtype == torch.float64 and p_lower.dtype == torch.float64 and pred.dtype == torch.long
    # the noise of the n draws comes after the n0 draws: same generator, same order
    g = gen(1)
    for _ in range(2):
        torch.randn((7, 1, 1, 1), generator=g)
    first_n = x[0:1] + 0.5 * torch.randn((60, 1, 1, 1), generator=g)
    torch.testing.assert_close(model.seen[1][:60], first_n, rtol=0, atol=1e-6)


def test_certify_counts_the_guessed_class_not_the_top_count():
    # the guess from n0 draws is class 1 (pixel above 0.5 + 4 sigma); then the model flips to
    # class 0 for the n draws: the count of the guessed class is 0, so CERTIFY abstains.
    class Flip(nn.Module):
        calls = 0

        def forward(self, x):
            Flip.calls += 1
            c = 1 if Flip.calls == 1 else 0
            z = torch.zeros(len(x), 2)
            z[:, c] = 1.0
            return z

    pred, radius, p_lower = S.certify(Flip(), torch.full((1, 1, 1, 1), 0.5), 0.1, 5, 20, 0.01, gen())
    assert pred.tolist() == [-1] and radius.tolist() == [0.0] and p_lower.tolist() == [0.0]


def test_certify_abstains_at_exactly_one_half_of_the_bound():
    # pA_lower = alpha^(1/n) = 1/2 for alpha = 2^-n: not > 1/2, so abstain
    n = 6
    pred, radius, p_lower = S.certify(Constant(0, 2), torch.zeros(1, 1, 1, 1), 0.3, 3, n, 0.5 ** n, gen())
    assert p_lower.item() == 0.5  # beta.ppf(2^-6, 6, 1) = (2^-6)^(1/6), exactly 1/2 in float64
    assert pred.tolist() == [-1] and radius.tolist() == [0.0]
    pred, radius, _ = S.certify(Constant(0, 2), torch.zeros(1, 1, 1, 1), 0.3, 3, n, 0.5 ** n * 1.01, gen())
    assert pred.tolist() == [0] and 0 < radius.item() < 0.3 * 0.01


# ---------------------------------------------------------------------------------------------
# Certified accuracy, the certificate check, the grid and the headline


def test_certified_correct_and_accuracy_by_hand():
    pred = torch.tensor([1, 0, -1, 2, 2])
    radius = torch.tensor([0.5, 0.25, 0.0, 1.0, 0.1], dtype=torch.float64)
    y = torch.tensor([1, 0, 2, 1, 2])
    assert S.certified_correct(pred, radius, y, 0.25).tolist() == [True, True, False, False, False]
    assert S.certified_correct(pred, radius, y, 0.0).tolist() == [True, True, False, False, True]
    acc = S.certified_accuracy(pred, radius, y, [0.0, 0.25, 0.5, 1.0])
    assert list(acc) == ["0", "0.25", "0.5", "1"]
    assert [v["accuracy"] for v in acc.values()] == [0.6, 0.4, 0.2, 0.0]
    assert acc["0.25"]["n"] == 5 and acc["0.25"]["ci95"] == pytest.approx(list(S.accuracy_ci(
        torch.tensor([True, True, False, False, False]))["ci95"]))


def test_certificate_check_fails_below_p_001():
    # 7 images certified, none survives the attack: p = 2^-7 = 0.0078 < 0.01: failed
    cert = torch.tensor([True] * 7 + [False])
    emp = torch.zeros(8, dtype=torch.bool)
    abst = torch.tensor([True, True, False, False, False, False, False, True])
    out = S.certificate_check(cert, emp, abst, r=0.25)
    assert out["name"] == "certified_le_empirical@0.25" and out["passed"] is False
    assert (out["contradictions"], out["abstained"], out["certified"], out["empirical"]) == (7, 2, 7, 0)
    assert out["mcnemar"]["p_a_higher"] == 1 / 128
    assert out["detail"] == ("certified 7/8 (87.5%) vs empirical 0/8 (0.0%); 7 certified images broken by the "
                             "attack (2 by abstention, 5 into a wrong class), 0 not certified that the attack did "
                             "not break; p = 0.0078 that certified is this far above empirical by chance "
                             "(fails below 0.01)")
    # 6 of them, and one image only the attack leaves right: p = P(X >= 6 | 7) = 8/128 = 0.0625:
    # passed; without the abstain vector or radius
    out = S.certificate_check(cert & (torch.arange(8) < 6), emp | (torch.arange(8) == 7))
    assert out["passed"] is True and out["abstained"] is None and out["name"] == "certified_le_empirical"
    assert out["detail"] == ("certified 6/8 (75.0%) vs empirical 1/8 (12.5%); 6 certified images broken by the "
                             "attack, 1 not certified that the attack did not break; p = 0.062 that certified is "
                             "this far above empirical by chance (fails below 0.01)")


def test_certificate_check_of_consistent_data_and_no_images():
    cert = torch.tensor([1, 0, 1, 0]).bool()
    out = S.certificate_check(cert, torch.ones(4, dtype=torch.bool), torch.zeros(4, dtype=torch.bool), r=1.0)
    assert out["passed"] and out["contradictions"] == 0 and out["abstained"] == 0 and out["name"].endswith("@1")
    empty = S.certificate_check(torch.zeros(0, dtype=torch.bool), torch.zeros(0, dtype=torch.bool))
    assert empty["passed"] and empty["detail"].startswith("certified 0/0 (0.0%) vs empirical 0/0 (0.0%)")


def test_radius_grid_by_hand():
    assert S.radius_grid([0.3]) == [round(0.05 * i, 9) for i in range(26)]  # 0 .. 1.25, 0.3 on it
    grid = S.radius_grid([0.33, 1.4], step=0.1, top=0.5)
    assert grid == [0.0, 0.1, 0.2, 0.3, 0.33, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4]
    assert S.radius_grid([], step=0.5, top=1.0) == [0.0, 0.5, 1.0]
    assert S.radius_grid([0.25]) == S.radius_grid([0.25, 0.25])


def test_the_smoothing_constants():
    assert S.ABSTAIN == -1 and S.CHECK_ALPHA == 0.01 and math.isfinite(S.CHECK_ALPHA)


def test_noise_follows_the_images_dtype_and_batches_fill_exactly():
    # float64 images get float64 draws (not float32 draws cast up)
    x = torch.rand(2, 1, 2, 2, generator=gen(1), dtype=torch.float64)
    got = torch.cat([b for _, b in S._noisy_batches(x, 0.3, 3, gen(4), 10)])
    g = gen(4)
    want = torch.cat([x[i:i + 1] + 0.3 * torch.randn((3, 1, 2, 2), generator=g, dtype=torch.float64)
                      for i in range(2)])
    assert got.dtype == torch.float64 and torch.equal(got, want)
    # 4 images, n = 5, batch_size 10: two images fill a batch exactly, and the next starts empty
    sizes = [len(b) for _, b in S._noisy_batches(torch.zeros(4, 1, 1, 1), 0.1, 5, gen(), 10)]
    assert sizes == [10, 10]


def test_predict_and_certify_pass_batch_size_to_every_draw():
    x = torch.full((1, 1, 1, 1), 3.0)
    model = Sign()
    S.predict(model, x, 0.1, 7, 0.01, gen(), batch_size=3)
    assert [len(b) for b in model.seen] == [3, 3, 1]
    model = Sign()
    S.certify(model, x, 0.1, 7, 4, 0.01, gen(), batch_size=3)
    assert [len(b) for b in model.seen] == [3, 3, 1, 3, 1]  # n0 = 7 in chunks of 3, then n = 4


def test_certificate_check_of_one_image_reports_percent():
    out = S.certificate_check(torch.tensor([True]), torch.tensor([True]))
    assert out["detail"].startswith("certified 1/1 (100.0%) vs empirical 1/1 (100.0%); 0 certified images broken")


def test_radius_grid_rounds_to_nine_decimals():
    assert S.radius_grid([1 / 3], step=0.5, top=1.0) == [0.0, 0.333333333, 0.5, 1.0]
    assert S.radius_grid([], step=1 / 3, top=1.0) == [0.0, 0.333333333, 0.666666667, 1.0]
