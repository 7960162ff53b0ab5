"""Square Attack: no query is spent on a proposal that is a no-op after clipping, the query
budget and threat model hold, and its success agrees with torchattacks 3.5.1 both ways.

The model is a small CNN on scikit-learn's 8x8 digits, whose images are about half zeros, so
proposals that change nothing once clipped to [0, 1] are common (as on Fashion-MNIST).
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from advgen.attacks.base import lp_norm, margin

from advgen.attacks.square import Square
from advgen.data import load_digits_splits
from advgen.models import build_model

EPS, N_QUERIES = 0.1, 300


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The model is tiny: one thread is faster, and much faster on a loaded 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def digits(one_thread):
    """(model, x, y): a CNN trained for 8 epochs on the digits, and 200 test images it gets right."""
    s = load_digits_splits()
    x = torch.from_numpy(s["train"][0]).float() / 255
    y = torch.from_numpy(s["train"][1]).long()
    xt = torch.from_numpy(s["test"][0]).float() / 255
    yt = torch.from_numpy(s["test"][1]).long()
    gen = torch.Generator().manual_seed(0)
    model = build_model("cnn", (1, 8, 8), 10, width=16, dropout=0.0, generator=gen)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    model.train()
    for _ in range(8):
        order = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), 64):
            idx = order[i:i + 64]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        right = model(xt).argmax(1) == yt
    assert float(right.float().mean()) > 0.95
    return model, xt[right][:200], yt[right][:200]


def counting(cls: type[Square]) -> type[Square]:
    """A subclass of ``cls`` that watches every query from the outside (through ``logits``).

    It replays the attack's documented bookkeeping (an example is queried while its margin is
    >= 0; a candidate replaces the current image when its margin is lower) to know each
    queried example's current image, and records:
      ``noop``: queries whose candidate equals the current image (entries within 1e-7),
      ``proposals``: queries after the initial one,
      ``per_example``: queries per example,
      ``worst_linf``, ``out_of_range``: the farthest any queried input went from x, and from [0, 1].
    """

    class Counting(cls):
        def perturb(self, x, y):
            self._x, self._y, self._cur, self._m, self._active = x, y, None, None, None
            self.noop = self.proposals = 0
            self.per_example = torch.zeros(len(y), dtype=torch.long)
            self.worst_linf, self.out_of_range = 0.0, False
            return super().perturb(x, y)

        def logits(self, q):
            z = super().logits(q)
            first = self._m is None
            act = torch.arange(len(self._y)) if first else self._active
            assert len(q) == len(act), "a query batch other than the examples still being attacked"
            self.worst_linf = max(self.worst_linf, float(lp_norm(q - self._x[act], "Linf").max()))
            self.out_of_range |= bool(q.min() < 0 or q.max() > 1)
            self.per_example[act] += 1
            m = margin(z, self._y[act])
            if first:
                self._cur, self._m = q.clone(), m
            else:
                self.noop += int(((q - self._cur[act]).abs() < 1e-7).flatten(1).all(1).sum())
                self.proposals += len(act)
                keep = m < self._m[act]
                self._cur[act[keep]] = q[keep]
                self._m[act] = torch.minimum(self._m[act], m)
            self._active = (self._m >= 0).nonzero().squeeze(1)
            return z

    return Counting


class OldComparison(Square):
    """The defect, reproduced: the unclipped proposal compared with the clipped delta (cur - x)."""

    @staticmethod
    def _unchanged(x_win, cur_win, new):
        return ((cur_win - x_win) - new).abs().lt(1e-7).flatten(1).all(1)


def run(cls, model, x, y, seed=0, **kw):
    attack = counting(cls)(model, EPS, n_queries=kw.pop("n_queries", N_QUERIES),
                           generator=torch.Generator().manual_seed(seed), **kw)
    return attack, attack(x, y)


def test_images_have_many_zero_pixels(digits):
    _, x, _ = digits
    assert float((x == 0).float().mean()) > 0.4


def test_no_query_is_spent_on_a_no_op_proposal(digits):
    model, x, y = digits
    attack, _ = run(Square, model, x, y)
    assert attack.proposals > 10_000  # enough proposals for no-ops to show up
    assert attack.noop == 0, f"{attack.noop} of {attack.proposals} queries proposed an unchanged image"


@pytest.mark.parametrize("cls, kw, at_least", [
    (OldComparison, {}, 0.05),  # the old comparison: measured 14% of the proposals
    (Square, {"resample": False}, 0.3),  # no redraw at all (torchattacks 3.5.1): measured 47%
])
def test_the_counter_sees_the_no_ops_of_the_old_logic(digits, cls, kw, at_least):
    model, x, y = digits
    attack, _ = run(cls, model, x, y, **kw)
    assert attack.noop / attack.proposals >= at_least


@pytest.mark.parametrize("n_queries", [1, 2, 50, N_QUERIES])
def test_budget_threat_model_and_queries_to_success(digits, n_queries):
    model, x, y = digits
    y = y.clone()
    y[:5] = (y[:5] + 1) % 10  # five examples misclassified from the start
    attack, adv = run(Square, model, x, y, n_queries=n_queries)
    per, q = attack.per_example, attack.queries_to_success
    assert attack.queries == int(per.sum()) and attack.grad_evals == 0
    assert int(per.max()) <= n_queries and int(per.min()) >= 1
    assert attack.worst_linf <= EPS + 1e-6 and not attack.out_of_range  # every query, not only the output
    assert adv.shape == x.shape and float(adv.min()) >= 0 and float(adv.max()) <= 1
    assert float(lp_norm(adv - x, "Linf").max()) <= EPS + 1e-6
    with torch.no_grad():
        fooled = model(adv).argmax(1) != y
    assert q.dtype == torch.long and q.shape == y.shape
    assert bool((q[:5] == 0).all()) and bool((q[5:] != 0).all())
    assert torch.equal(q >= 0, fooled)
    assert bool((q <= n_queries).all())
    attacked = q != 0
    # An example is queried until its first success, and to the end of the budget otherwise.
    assert torch.equal(per[attacked & fooled], q[attacked & fooled])
    assert bool((per[~fooled] == n_queries).all())
    if n_queries == N_QUERIES:
        assert 0.2 < float(fooled[5:].float().mean()) < 0.8  # a budget where queries matter


def test_randomness_comes_only_from_the_generator(digits):
    model, x, y = digits
    state = torch.get_rng_state()
    a, adv_a = run(Square, model, x, y, seed=3, n_queries=100)
    torch.manual_seed(12345)  # the global RNG must not matter
    b, adv_b = run(Square, model, x, y, seed=3, n_queries=100)
    c, adv_c = run(Square, model, x, y, seed=4, n_queries=100)
    assert torch.equal(adv_a, adv_b) and torch.equal(a.queries_to_success, b.queries_to_success)
    assert not torch.equal(adv_a, adv_c)
    torch.set_rng_state(state)
    Square(model, EPS, n_queries=100, generator=torch.Generator().manual_seed(3))(x, y)
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_run_draws_the_numbers_of_the_cpu_run(digits):
    model, x, y = digits
    runs = []
    for dev in ("cpu", "cuda"):
        gen = torch.Generator().manual_seed(0)
        attack = Square(copy.deepcopy(model).to(dev), EPS, n_queries=100, generator=gen)
        attack(x.to(dev), y.to(dev))
        runs.append((gen.get_state(), attack.queries_to_success))
    assert torch.equal(runs[0][0], runs[1][0])  # as many draws, from the CPU generator
    assert float((runs[0][1] == runs[1][1]).float().mean()) >= 0.95  # logits differ in the last bits only


# Square against torchattacks 3.5.1: success rate (the fraction of these correctly classified
# images misclassified after the attack), mean of 4 seeds, eps 0.1, 300 queries. Measured:
# torchattacks 0.390, advgen with resample=False 0.385 (the same algorithm: no redraw), advgen
# 0.420 (the redraw spends on real proposals the queries torchattacks wastes on no-ops).
# Tolerances, both ways: the same algorithm agrees within +-0.03; with the redraw advgen is
# 0.02 weaker at worst and 0.08 stronger at most (advgen at eps 0.11 instead of 0.1: +0.12).
SEEDS = range(4)
BANDS = {"resample=False": ({"resample": False}, -0.03, 0.03), "default": ({}, -0.02, 0.08)}


def success_rate(model, make, x, y) -> float:
    rates = []
    for s in SEEDS:
        with torch.no_grad():
            rates.append(float((model(make(s)(x, y)).argmax(1) != y).float().mean()))
    return sum(rates) / len(rates)


@pytest.fixture(scope="module")
def torchattacks_success(digits):
    ta = pytest.importorskip("torchattacks")
    model, x, y = digits
    return success_rate(model, lambda s: ta.Square(model, eps=EPS, n_queries=N_QUERIES, n_restarts=1,
                                                   p_init=0.8, seed=s), x, y)


@pytest.mark.parametrize("variant", list(BANDS))
def test_success_agrees_with_torchattacks_both_ways(digits, torchattacks_success, variant):
    model, x, y = digits
    kw, below, above = BANDS[variant]
    ours = success_rate(model, lambda s: Square(model, EPS, n_queries=N_QUERIES, p_init=0.8,
                                                generator=torch.Generator().manual_seed(s), **kw), x, y)
    diff = ours - torchattacks_success
    assert below <= diff <= above, f"advgen {ours:.3f}, torchattacks {torchattacks_success:.3f}"
