"""advgen.generative.scores against closed forms and hand-computed numbers on tiny sets (issue 20:
tests that kill mutants). The feature network is an untrained 8x8 CNN: FID and KID only need
some fixed map from images to features."""
from __future__ import annotations

import math

import pytest
import torch

from advgen.generative import scores as Sc
from advgen.generative.features import FeatureNet, extract, frechet_distance
from advgen.models import build_model


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def net() -> FeatureNet:
    torch.set_num_threads(1)
    return FeatureNet(build_model("cnn", (1, 8, 8), 10, generator=gen(0), width=4), "0" * 64)


@pytest.fixture(scope="module")
def images() -> tuple[torch.Tensor, torch.Tensor]:
    real = torch.rand(40, 1, 8, 8, generator=gen(1))
    fake = (torch.rand(30, 1, 8, 8, generator=gen(2)) * 0.6 + 0.2) ** 2
    return real, fake


# ---------------------------------------------------------------------------------------------
# FID and KID through torchmetrics


def test_fid_is_the_frechet_distance_of_the_features_whatever_the_batch(net, images):
    real, fake = images
    want = frechet_distance(extract(net, real), extract(net, fake))
    assert want > 0.01
    for bs in (7, 40, 1000):
        assert Sc.fid(net, real, fake, batch_size=bs) == pytest.approx(want, rel=1e-3), bs
    assert Sc.fid(net, real, fake) == pytest.approx(want, rel=1e-3)
    assert Sc.fid(net, real, real) == pytest.approx(0.0, abs=1e-3)


def _mmd2_unbiased(a: torch.Tensor, b: torch.Tensor) -> float:
    """KID's statistic: unbiased MMD^2 with the kernel k(u, v) = (u.v / d + 1)^3 (Binkowski et al.)."""
    a, b = a.double(), b.double()
    d = a.shape[1]
    kaa, kbb, kab = (a @ a.T / d + 1) ** 3, (b @ b.T / d + 1) ** 3, (a @ b.T / d + 1) ** 3
    m, n = len(a), len(b)
    return float((kaa.sum() - kaa.diag().sum()) / (m * (m - 1)) + (kbb.sum() - kbb.diag().sum()) / (n * (n - 1))
                 - 2 * kab.mean())


def test_kid_with_whole_sets_as_subsets_is_the_unbiased_mmd(net, images):
    # subset_size = the set size: every subset is the whole set, so every subset's MMD is the same
    # number (std 0) and the mean is the full-set statistic, whatever the subsets drawn.
    real, fake = images[0][:30], images[1]
    mean, std = Sc.kid(net, real, fake, subsets=3, subset_size=30, seed=0, batch_size=7)
    want = _mmd2_unbiased(extract(net, real), extract(net, fake))
    assert mean == pytest.approx(want, rel=1e-3, abs=1e-7) and std == pytest.approx(0.0, abs=1e-6)
    assert Sc.kid(net, real, fake, 2, 30, seed=5) == pytest.approx((mean, std), rel=1e-3, abs=1e-6)


def test_kid_subsets_depend_on_the_seed_only(net, images):
    real, fake = images
    state = torch.get_rng_state()
    a = Sc.kid(net, real, fake, subsets=4, subset_size=10, seed=3)
    assert torch.equal(state, torch.get_rng_state())  # the caller's RNG is untouched
    torch.manual_seed(123)  # another global state: same answer
    assert Sc.kid(net, real, fake, subsets=4, subset_size=10, seed=3) == a
    b = Sc.kid(net, real, fake, subsets=4, subset_size=10, seed=4)
    assert b != a and a[1] > 0


# ---------------------------------------------------------------------------------------------
# The bootstrap interval


def test_bootstrap_fid_is_the_centred_percentile_interval():
    f_real = torch.randn(30, 3, generator=gen(3), dtype=torch.float64)
    f_fake = torch.randn(25, 3, generator=gen(4), dtype=torch.float64) * 1.2 + 0.3
    lo, hi = Sc.bootstrap_fid(f_real, f_fake, 50, gen(9))
    # the documented recipe, by hand: 50 paired resamples (real indices, then fake, per round)
    g = gen(9)
    values = []
    for _ in range(50):
        i = torch.randint(0, 30, (30,), generator=g)
        j = torch.randint(0, 25, (25,), generator=g)
        values.append(frechet_distance(f_real[i], f_fake[j]))
    v = torch.tensor(values, dtype=torch.float64)
    point = frechet_distance(f_real, f_fake)
    shift = point - float(v.mean())
    assert lo == pytest.approx(max(0.0, float(v.quantile(0.025)) + shift), abs=1e-12)
    assert hi == pytest.approx(max(0.0, float(v.quantile(0.975)) + shift), abs=1e-12)
    assert lo < point < hi and lo > 0


def test_bootstrap_fid_clips_at_zero():
    f = torch.randn(20, 2, generator=gen(5), dtype=torch.float64)
    lo, hi = Sc.bootstrap_fid(f, f.clone(), 40, gen(1))  # F = 0: the interval's lower end is below 0
    assert lo == 0.0 and hi > 0.0


# ---------------------------------------------------------------------------------------------
# Precision and recall (the hand-computed balls are in test_mut_holes.py)


def test_covered_counts_a_point_on_the_ball_edge_and_works_in_chunks():
    support = torch.tensor([[0.0], [10.0]])
    radii = torch.tensor([2.0, 1.0])
    query = torch.tensor([[2.0], [2.5], [9.0], [11.5], [-2.0]])
    want = [True, False, True, False, True]
    assert Sc._covered(query, support, radii, 1000).tolist() == want
    assert Sc._covered(query, support, radii, 2).tolist() == want


def test_precision_recall_needs_more_than_k_rows_and_takes_doubles():
    a = torch.arange(5.0)[:, None]
    with pytest.raises(ValueError, match=r"^precision/recall with k = 5 needs more than 5 samples per set, "
                                         r"found 5 real and 6 generated$"):
        Sc.precision_recall(a, torch.arange(6.0)[:, None], k=5)
    with pytest.raises(ValueError, match=r"found 6 real and 5 generated$"):
        Sc.precision_recall(torch.arange(6.0)[:, None], a, k=5)
    assert Sc.precision_recall(a, a + 0.5, k=4) == (1.0, 1.0)  # 5 > 4 rows: allowed
    p, r = Sc.precision_recall(a.double(), (a + 0.5).double(), k=1, chunk=2)  # float64 in, chunks of 2
    # radii 1 each; fakes 0.5 .. 4.5: 4.5 is 0.5 from real 4 -> all covered; reals 0 .. 4 too
    assert (p, r) == (1.0, 1.0) and isinstance(p, float)
    p, r = Sc.precision_recall(a, a * 3, k=3)
    # real radii: 3, 2, 2, 2, 3 (3rd nearest other point); fakes 0, 3, 6, 9, 12: 0 and 3 are real
    # points, 6 is 2 from real 4 (radius 3), 9 and 12 are out of reach -> 3/5. Fake radii: 9, 6, 6, 6, 9
    # cover every real point -> 1.
    assert (p, r) == (0.6, 1.0)


# ---------------------------------------------------------------------------------------------
# Nearest distances and memorisation


def test_nearest_distance_by_hand_in_chunks_and_its_checks():
    ref = torch.tensor([[0.0, 0.0], [3.0, 4.0]], dtype=torch.float64)
    q = torch.tensor([[0.0, 2.0], [6.0, 8.0], [3.0, 4.0]], dtype=torch.float64)
    for chunk in (1, 2, 256):
        assert Sc.nearest_distance(ref, q, chunk=chunk).tolist() == [2.0, 5.0, 0.0]
    assert Sc.nearest_distance(ref, q).tolist() == [2.0, 5.0, 0.0]
    empty = Sc.nearest_distance(ref, q[:0])
    assert empty.shape == (0,) and empty.dtype == torch.float64
    with pytest.raises(ValueError, match=r"^nearest_distance needs at least one reference row$"):
        Sc.nearest_distance(ref[:0], q)


def test_memorisation_threshold_default_quantile_and_share_checks():
    train = torch.zeros(1, 1, dtype=torch.float64)
    test = torch.arange(101.0, dtype=torch.float64)[:, None]  # nearest distances 0, 1, ..., 100
    assert Sc.memorisation_threshold(train, test) == pytest.approx(1.0)  # q = 0.01: position 1
    assert Sc.memorisation_threshold(train, test, 0.255, chunk=3) == pytest.approx(25.5)
    assert Sc.memorised_share(train, test, 50.0) == pytest.approx(50 / 101)  # 0 .. 49 are below 50
    assert Sc.memorised_share(train, test, 50.0, chunk=7) == pytest.approx(50 / 101)
    with pytest.raises(ValueError, match=r"^memorised_share needs at least one sample$"):
        Sc.memorised_share(train, test[:0], 1.0)


# ---------------------------------------------------------------------------------------------
# Mode coverage


def test_kl_to_uniform_by_hand():
    assert Sc.kl_to_uniform(torch.tensor([3, 1])) == pytest.approx(0.75 * math.log(1.5) + 0.25 * math.log(0.5))
    assert Sc.kl_to_uniform(torch.tensor([2, 0, 0])) == pytest.approx(math.log(3))
    assert Sc.kl_to_uniform(torch.tensor([1, 1, 0, 2])) == pytest.approx(0.5 * math.log(2))  # 1/4 log 1 twice


def test_class_coverage_by_hand():
    pred = torch.tensor([0, 0, 0, 2, 2, 3, 3, 3, 3, 3])
    out = Sc.class_coverage(pred, 5)
    assert out["shares"] == [0.3, 0.0, 0.2, 0.5, 0.0] and out["classes_covered"] == 3
    assert out["kl_uniform"] == pytest.approx(sum(p * math.log(5 * p) for p in (0.3, 0.2, 0.5)))
    assert Sc.class_coverage(pred, 5, min_share=0.3)["classes_covered"] == 2  # 0.3 itself counts
    assert Sc.class_coverage(pred, 5, min_share=0.31)["classes_covered"] == 1
    assert set(out) == {"shares", "classes_covered", "kl_uniform"}
    empty = Sc.class_coverage(torch.zeros(0, dtype=torch.long), 2)
    assert empty["shares"] == [0.0, 0.0] and empty["classes_covered"] == 0


def test_stacked_modes_by_hand():
    pred = torch.tensor([[1, 2, 3], [1, 2, 3], [3, 2, 1], [0, 0, 0]])
    out = Sc.stacked_modes(pred)
    assert out["modes_covered"] == 3 and out["modes_total"] == 1000
    # the mode histogram: 2, 1, 1 of 4 samples over 1000 modes
    assert out["kl_uniform"] == pytest.approx(0.5 * math.log(500) + 2 * 0.25 * math.log(250))
    small = Sc.stacked_modes(torch.tensor([[0, 1, 1], [1, 0, 1], [1, 1, 0]]), num_classes=2)
    assert small["modes_total"] == 8 and small["modes_covered"] == 3  # 011, 101, 110 are distinct modes
    assert small["kl_uniform"] == pytest.approx(math.log(8 / 3))


def test_expected_modes_uniform_by_hand():
    assert Sc.expected_modes_uniform(2, 4) == pytest.approx(4 * (1 - 0.75 ** 2))
    assert Sc.expected_modes_uniform(3, 10) == pytest.approx(10 * (1 - 0.9 ** 3))
    assert Sc.expected_modes_uniform(0, 10) == 0.0


# ---------------------------------------------------------------------------------------------
# Inception FID: no weights offline, so only its refusals


def test_inception_fid_refuses_a_missing_file_and_a_missing_torch_fidelity(tmp_path):
    x = torch.rand(2, 1, 8, 8, generator=gen())
    missing = str(tmp_path / "nope.pth")
    with pytest.raises(ValueError, match=r"^params.yaml: 'evaluate_generative.inception_weights' = '.*nope.pth': "
                                         r"no such file \(set it to a local Inception weights file, or null\)$"):
        Sc.inception_fid(missing, x, x)
    try:
        import torch_fidelity  # noqa: F401
    except ModuleNotFoundError:
        weights = tmp_path / "w.pth"
        weights.write_bytes(b"")
        with pytest.raises(ValueError, match=r"^params.yaml: 'evaluate_generative.inception_weights' = '.*w.pth': "
                                             r"torchmetrics' Inception needs torch-fidelity"):
            Sc.inception_fid(str(weights), x, x)


def test_kid_honours_the_subset_count_and_filters_only_its_own_warning(net, images):
    import warnings

    real, fake = images
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        two = Sc.kid(net, real, fake, subsets=2, subset_size=10, seed=0)
    assert not [w for w in caught if "will save all extracted features" in str(w.message)]
    assert two != Sc.kid(net, real, fake, subsets=3, subset_size=10, seed=0)


def test_bootstrap_fid_upper_end_below_one_is_not_raised():
    f = torch.randn(20, 2, generator=gen(5), dtype=torch.float64) * 0.1
    lo, hi = Sc.bootstrap_fid(f, f.clone(), 40, gen(1))
    g = gen(1)
    v = torch.tensor([frechet_distance(f[torch.randint(0, 20, (20,), generator=g)],
                                       f[torch.randint(0, 20, (20,), generator=g)]) for _ in range(40)],
                     dtype=torch.float64)
    assert 0 < hi < 1 and hi == pytest.approx(float(v.quantile(0.975)) - float(v.mean()), abs=1e-12)


def test_class_coverage_of_one_sample_and_stacked_modes_use_every_channel():
    assert Sc.class_coverage(torch.tensor([1]), 3)["shares"] == [0.0, 1.0, 0.0]
    # 123 and 223 differ only in channel 0; 123 and 133 only in channel 1: three modes
    assert Sc.stacked_modes(torch.tensor([[1, 2, 3], [2, 2, 3], [1, 3, 3]]))["modes_covered"] == 3
