"""advgen.stats and advgen.metrics against closed forms and hand-computed numbers (issue 20:
tests that kill mutants of the pure-computation modules)."""
from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import binom, norm

from advgen import metrics as M
from advgen import stats as St


def _wilson_roots(k: int, n: int, z: float) -> tuple[float, float]:
    """The Wilson interval as the two roots pi of (p - pi)^2 = z^2 pi (1 - pi) / n, p = k / n:
    (1 + z^2/n) pi^2 - (2p + z^2/n) pi + p^2 = 0."""
    p = k / n
    a, b, c = 1 + z * z / n, -(2 * p + z * z / n), p * p
    disc = math.sqrt(b * b - 4 * a * c)
    return (-b - disc) / (2 * a), (-b + disc) / (2 * a)


def test_z95_is_the_normal_975_quantile():
    assert St.Z95 == pytest.approx(float(norm.ppf(0.975)), abs=1e-12)


def test_wilson_of_3_out_of_10_is_the_textbook_interval():
    # Newcombe (1998), table I: 3/10 -> 0.1078 to 0.6032
    lo, hi = St.wilson(3, 10)
    assert lo == pytest.approx(0.1078, abs=5e-5) and hi == pytest.approx(0.6032, abs=5e-5)


@pytest.mark.parametrize("k,n", [(1, 2), (3, 10), (7, 10), (17, 40), (99, 100), (1, 1000)])
def test_wilson_is_the_root_pair_of_the_score_equation(k, n):
    assert St.wilson(k, n) == pytest.approx(_wilson_roots(k, n, St.Z95), abs=1e-12)
    assert St.wilson_p(k / n, n) == pytest.approx(_wilson_roots(k, n, St.Z95), abs=1e-12)


@pytest.mark.parametrize("z", [1.0, 2.5758293035489])
def test_wilson_takes_other_z(z):
    assert St.wilson(4, 9, z) == pytest.approx(_wilson_roots(4, 9, z), abs=1e-12)
    assert St.wilson_p(4 / 9, 9, z) == pytest.approx(_wilson_roots(4, 9, z), abs=1e-12)


def test_wilson_ends_and_empty():
    # k = 0: lower end exactly 0, upper z^2 / (n + z^2); k = n: upper end exactly 1.
    z2 = St.Z95 ** 2
    lo, hi = St.wilson(0, 20)
    assert lo == 0.0 and hi == pytest.approx(z2 / (20 + z2), abs=1e-12)
    lo, hi = St.wilson(20, 20)
    assert hi == 1.0 and lo == pytest.approx(20 / (20 + z2), abs=1e-12)
    assert St.wilson(0, 0) == (0.0, 1.0) and St.wilson(3, -1) == (0.0, 1.0)
    assert St.wilson_p(0.5, 0) == (0.0, 1.0) and St.wilson_p(0.5, -2) == (0.0, 1.0)
    # n = 1, both outcomes: intervals mirror each other
    lo0, hi0 = St.wilson(0, 1)
    lo1, hi1 = St.wilson(1, 1)
    assert lo0 == 0.0 and hi1 == 1.0 and hi0 == pytest.approx(1 - lo1, abs=1e-12)


def test_wilson_always_contains_p():
    for n in (1, 3, 10, 1000):
        for k in range(0, n + 1, max(1, n // 7)):
            lo, hi = St.wilson(k, n)
            assert 0.0 <= lo <= k / n <= hi <= 1.0


def test_wilson_refuses_out_of_range_counts_and_proportions():
    with pytest.raises(ValueError, match=r"successes must lie in \[0, n=5\], found 6"):
        St.wilson(6, 5)
    with pytest.raises(ValueError, match=r"successes must lie in \[0, n=5\], found -1"):
        St.wilson(-1, 5)
    assert St.wilson(5, 5)[1] == 1.0 and St.wilson(0, 5)[0] == 0.0  # the ends are allowed
    with pytest.raises(ValueError, match=r"proportion must lie in \[0, 1\], found 1.5"):
        St.wilson_p(1.5, 5)
    with pytest.raises(ValueError, match=r"proportion must lie in \[0, 1\], found -0.25"):
        St.wilson_p(-0.25, 5)
    assert St.wilson_p(1.0, 5)[1] == 1.0 and St.wilson_p(0.0, 5)[0] == 0.0


def test_accuracy_ci():
    out = St.accuracy_ci(torch.tensor([True, False, True, True]))
    assert out["accuracy"] == 0.75 and out["n"] == 4
    assert out["ci95"] == pytest.approx(list(_wilson_roots(3, 4, St.Z95)), abs=1e-12)
    empty = St.accuracy_ci(torch.zeros(0, dtype=torch.bool))
    assert math.isnan(empty["accuracy"]) and empty["n"] == 0 and empty["ci95"] == [0.0, 1.0]
    assert set(out) == {"accuracy", "ci95", "n"}


@pytest.mark.parametrize("n", [0, 1, 2, 7, 20])
def test_binom_tail_is_the_binomial_survival_function(n):
    for k in range(-1, n + 3):
        assert St.binom_tail(k, n) == pytest.approx(float(binom.sf(k - 1, n, 0.5)), abs=1e-15), (k, n)


def test_binom_tail_hand_values():
    assert St.binom_tail(0, 3) == 1.0 and St.binom_tail(-2, 3) == 1.0
    assert St.binom_tail(1, 3) == 7 / 8 and St.binom_tail(3, 3) == 1 / 8
    assert St.binom_tail(2, 4) == 11 / 16 and St.binom_tail(4, 3) == 0.0


def test_mcnemar_counts_and_exact_p_values():
    # a only: 5 examples, b only: 1, both: 3, neither: 2. n = 6 discordant pairs:
    # P(X >= 5 | n = 6) = (6 + 1) / 64; P(X >= 1) = 63 / 64; two-sided 2 * 7/64 = 14/64.
    a = torch.tensor([1] * 5 + [0] * 1 + [1] * 3 + [0] * 2).bool()
    b = torch.tensor([0] * 5 + [1] * 1 + [1] * 3 + [0] * 2).bool()
    out = St.mcnemar(a, b)
    assert out == {"only_a": 5, "only_b": 1, "p_a_higher": 7 / 64, "p_b_higher": 63 / 64, "p_two_sided": 14 / 64}
    swapped = St.mcnemar(b, a)
    assert swapped["only_a"] == 1 and swapped["p_b_higher"] == 7 / 64 and swapped["p_two_sided"] == 14 / 64


def test_mcnemar_without_discordant_pairs_and_the_cap_at_one():
    same = torch.tensor([1, 0, 1]).bool()
    assert St.mcnemar(same, same) == {"only_a": 0, "only_b": 0, "p_a_higher": 1.0, "p_b_higher": 1.0,
                                      "p_two_sided": 1.0}
    # 1 vs 1: each one-sided p is 3/4, twice the smaller is 1.5, capped at 1
    out = St.mcnemar(torch.tensor([1, 0]), torch.tensor([0, 1]))  # ints are read as bools
    assert out["p_a_higher"] == 0.75 and out["p_two_sided"] == 1.0
    # 0 vs 3: p_a = 1, p_b = 1/8, two-sided 1/4
    out = St.mcnemar(torch.zeros(3, dtype=torch.bool), torch.ones(3, dtype=torch.bool))
    assert (out["only_a"], out["only_b"], out["p_b_higher"], out["p_two_sided"]) == (0, 3, 0.125, 0.25)


def test_mcnemar_refuses_unpaired_outcomes():
    with pytest.raises(ValueError, match=r"paired outcomes must have the same shape, found \(3,\) and \(4,\)"):
        St.mcnemar(torch.ones(3, dtype=torch.bool), torch.ones(4, dtype=torch.bool))


# ---------------------------------------------------------------------------------------------
# advgen.metrics


def test_nearest_distances_by_hand_and_in_batches():
    ref = torch.tensor([[0.0, 0.0], [3.0, 4.0], [10.0, 0.0]])
    q = torch.tensor([[0.0, 1.0], [3.0, 0.0], [6.0, 8.0], [10.0, 0.0], [13.0, 4.0]])
    # nearest: (0,0) at 1; (0,0) at 3 (vs (3,4) at 4); (3,4) at 5; itself at 0; (10,0) at 5
    want = torch.tensor([1.0, 3.0, 5.0, 0.0, 5.0])
    for bs in (1, 2, 3, 1024):
        assert torch.allclose(M.nearest_distances(q, ref, batch_size=bs), want, atol=1e-6)
    assert torch.allclose(M.nearest_distances(q, ref), want, atol=1e-6)
    assert M.nearest_distances(torch.zeros(0, 2), ref).shape == (0,)


def test_quantile():
    v = torch.tensor([4, 1, 3, 2], dtype=torch.int64)  # cast to float: linear interpolation
    assert M.quantile(v, 0.5) == 2.5 and M.quantile(v, 0.0) == 1.0 and M.quantile(v, 1.0) == 4.0
    assert M.quantile(v, 1 / 3) == pytest.approx(2.0)
    assert math.isnan(M.quantile(torch.zeros(0), 0.5))


def test_wilson_of_one_trial_and_the_upper_clip():
    # n = 1 is a real interval, not the n = 0 fallback: k = 0 -> (0, z^2 / (1 + z^2))
    z2 = St.Z95 ** 2
    assert St.wilson(0, 1) == pytest.approx((0.0, z2 / (1 + z2)), abs=1e-12)
    half = St.Z95 * math.sqrt(0.25 + z2 / 4) / (1 + z2)  # p = 1/2, n = 1: centred on 1/2
    assert St.wilson_p(0.5, 1) == pytest.approx((0.5 - half, 0.5 + half), abs=1e-12)
    # at k = n = 16 the formula's upper end rounds to 1 + 2^-52: clipped to exactly 1
    assert St.wilson(16, 16)[1] == 1.0 and St.wilson_p(1.0, 16)[1] == 1.0
