"""Hiding information (issue 24): the prediction API's three modes, and the decision-based
attacks against the math (a linear classifier's exact minimal adversarial distance) and against
foolbox 3.3.4's implementations of the same papers."""
from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from advgen.attacks.base import AttackError
from advgen.attacks.decision import BoundaryAttack, HopSkipJump, PredictionAPI, Trace, accuracy_at
from advgen.attacks.square import Square

SHAPE = (1, 8, 8)  # 64 inputs: the estimates converge in a few hundred queries


def _linear(seed: int = 0, scale: float = 0.6) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    lin = nn.Linear(64, 4)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(4, 64, generator=g) * scale)
        lin.bias.copy_(torch.randn(4, generator=g) * 0.1)
    return nn.Sequential(nn.Flatten(), lin).eval()


def _inputs(model: nn.Module, n: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    # images near 0.5: the minimal perturbation stays inside [0, 1], so the unconstrained
    # distance is the exact answer
    x = 0.5 + 0.05 * (torch.rand(n, *SHAPE, generator=torch.Generator().manual_seed(1)) - 0.5)
    with torch.no_grad():
        y = model(x).argmax(1)
    return x, y


def _exact(model: nn.Module, x: torch.Tensor, y: torch.Tensor, dual: float) -> torch.Tensor:
    """Minimal distance to any other class's region of a linear classifier: min_j (z_y - z_j) /
    ||w_y - w_j||_dual (dual 2 for L2, 1 for L-inf)."""
    lin = model[1]
    with torch.no_grad():
        z = model(x)
    out = []
    for i in range(len(y)):
        d = [(z[i, y[i]] - z[i, j]) / (lin.weight[y[i]] - lin.weight[j]).norm(p=dual)
             for j in range(z.shape[1]) if j != y[i]]
        out.append(min(d))
    return torch.stack(out)


def test_the_api_reveals_what_its_mode_says_and_counts_every_image():
    model = _linear()
    x, _ = _inputs(model)
    full, rounded, label = (PredictionAPI(model, m) for m in ("scores", "rounded", "label"))
    p = full.scores(x)
    assert torch.allclose(p.sum(1), torch.ones(len(x))) and full.queries == len(x)
    r = rounded.scores(x)
    assert torch.equal(r, torch.round(p * 100) / 100) and not torch.equal(r, p)
    assert torch.equal(label.label(x), model(x).argmax(1)) and label.queries == len(x)
    with pytest.raises(AttackError, match="a label-only API returns no scores"):
        label.scores(x)
    with pytest.raises(AttackError, match="API mode 'logits'"):
        PredictionAPI(model, "logits")
    logs = rounded.as_model()(x)
    assert torch.allclose(logs.exp(), r.clamp_min(1e-12)) and rounded.queries == 2 * len(x)


def test_trace_and_accuracy_follow_the_budget():
    t = Trace()
    t.add(torch.tensor([5, 5, 5]), torch.tensor([math.inf, 0.3, 0.0]))
    t.add(torch.tensor([50, 80, 5]), torch.tensor([0.2, 0.05, 0.0]))
    assert t.at(10).tolist() == pytest.approx([math.inf, 0.3, 0.0]) and t.at(100).tolist() == pytest.approx([0.2, 0.05, 0.0])
    clean = torch.tensor([True, True, False])
    assert accuracy_at(t, clean, 0.1, [10, 100]) == {10: pytest.approx(2 / 3), 100: pytest.approx(1 / 3)}


# L-inf converges more slowly (its step is the gradient's sign): within 30% at 3,000 queries here
@pytest.mark.parametrize("norm, dual, tol", [("L2", 2, 0.10), ("Linf", 1, 0.30)])
def test_hopskipjump_reaches_a_linear_models_exact_minimal_distance(norm, dual, tol):
    model = _linear()
    x, y = _inputs(model)
    api = PredictionAPI(model, "label")
    attack = HopSkipJump(api, norm, steps=40, max_queries=3000, generator=torch.Generator().manual_seed(0))
    adv = attack(x, y)
    assert (model(adv).argmax(1) != y).all() and adv.min() >= 0 and adv.max() <= 1
    got = (adv - x).flatten(1).norm(p=dual if norm == "L2" else math.inf, dim=1)
    exact = _exact(model, x, y, dual)
    assert (got >= exact * (1 - 1e-3)).all()  # never below the minimum: that would be a bug
    assert (got <= exact * (1 + tol)).all(), (got / exact).tolist()
    # a gradient estimate may finish past the budget (at most one), but none starts past it
    assert int(attack.q.max()) <= 3000 + 100 * math.sqrt(40) + 60
    assert api.queries == int(attack.q.sum())  # every label asked for is counted, per example
    # the trace only improves with queries, and ends at the returned distance
    d = [attack.trace.at(b) for b in (100, 500, 3000, 10**6)]
    assert all((a >= b).all() for a, b in itertools.pairwise(d)) and torch.allclose(d[-1], got, rtol=1e-5)


def test_boundary_attack_closes_in_on_the_exact_minimal_distance():
    model = _linear()
    x, y = _inputs(model)
    api = PredictionAPI(model, "label")
    attack = BoundaryAttack(api, steps=3000, max_queries=6000, generator=torch.Generator().manual_seed(0))
    adv = attack(x, y)
    got = (adv - x).flatten(1).norm(dim=1)
    exact = _exact(model, x, y, 2)
    assert (model(adv).argmax(1) != y).all()
    assert (got >= exact * (1 - 1e-3)).all() and (got <= exact * 1.25).all(), (got / exact).tolist()
    assert int(attack.q.max()) <= 6000 and api.queries == int(attack.q.sum())


def test_misclassified_inputs_cost_one_query_and_stay_put():
    model = _linear()
    x, y = _inputs(model, 4)
    wrong = (y + 1) % 4
    api = PredictionAPI(model, "label")
    attack = HopSkipJump(api, "L2", steps=5, max_queries=500, generator=torch.Generator().manual_seed(0))
    assert torch.equal(attack(x, wrong), x) and attack.q.tolist() == [1, 1, 1, 1]


def test_rounding_slows_square_down_but_labels_still_leak():
    """The lecture's "output layers that hide information": Square reads margins, and rounding the
    probabilities to 1 decimal flattens them, so at an equal budget it breaks far fewer images;
    HopSkipJump on the label alone still gets there, with more queries."""
    model = _linear(scale=3.0)
    x, y = _inputs(model, 16)
    broken = {}
    for mode in ("scores", "rounded"):
        api = PredictionAPI(model, mode, decimals=1)
        sq = Square(api.as_model(), 0.02, n_queries=200, generator=torch.Generator().manual_seed(0))
        broken[mode] = int((model(sq(x, y)).argmax(1) != y).sum())
    assert broken["rounded"] * 4 < broken["scores"], broken
    hsj = HopSkipJump(PredictionAPI(model, "label"), "Linf", steps=60, max_queries=4000,
                      generator=torch.Generator().manual_seed(0))
    hsj(x, y)
    assert int((hsj.trace.at(4000) <= 0.02).sum()) >= broken["scores"]
    assert int((hsj.trace.at(200) <= 0.02).sum()) < broken["scores"]  # but not within Square's 200


def test_agrees_with_foolbox_on_the_same_budget():
    """foolbox 3.3.4's HopSkipJump and Boundary Attack on the same model and images: given the
    queries foolbox used, ours ends at least as close (foolbox spends about 1,000 queries per image
    on its start), and once both have converged they agree with each other and with the exact
    minimal distance."""
    import foolbox as fb  # a test dependency (pyproject): the cross-check must run in CI

    class Counting(nn.Module):
        def __init__(self, m: nn.Module):
            super().__init__()
            self.m, self.n = m, 0

        def forward(self, v):
            self.n += len(v)
            return self.m(v)

    model = _linear()
    x, y = _inputs(model)
    exact = _exact(model, x, y, 2).median()
    for make_theirs, make_ours in (
            (lambda: fb.attacks.HopSkipJumpAttack(steps=20),
             lambda b: HopSkipJump(PredictionAPI(model, "label"), "L2", steps=100, max_queries=b,
                                   generator=torch.Generator().manual_seed(0))),
            (lambda: fb.attacks.BoundaryAttack(steps=3000),
             lambda b: BoundaryAttack(PredictionAPI(model, "label"), steps=b, max_queries=b,
                                      generator=torch.Generator().manual_seed(0)))):
        torch.manual_seed(0)  # foolbox draws from torch's global generator
        counting = Counting(model)
        _, theirs, ok = make_theirs()(fb.PyTorchModel(counting, bounds=(0, 1)), x, y, epsilons=None)
        budget = counting.n // len(y)
        ours = make_ours(budget)(x, y)
        d_ours, d_theirs = ((a - x).flatten(1).norm(dim=1).median() for a in (ours, theirs))
        assert ok.all() and d_ours <= d_theirs * 1.02, (float(d_ours), float(d_theirs), budget)
        assert abs(d_ours / d_theirs - 1) < 0.1 and d_theirs < exact * 1.15 and d_ours >= exact * (1 - 1e-3)
