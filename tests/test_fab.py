"""FAB-T (advgen.attacks.fab) against the math and against torchattacks 3.5.1's FAB."""
from __future__ import annotations

import pytest
import torch

from advgen.attacks.fab import FABT, project_linf
from advgen.models import build_model
from tests.test_decision import _exact, _inputs, _linear


def test_the_box_constrained_linf_projection_is_the_smallest_step():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(50, 20, generator=g)
    x = torch.rand(50, 20, generator=g)
    c = torch.rand(50, generator=g) * 2
    lo, hi = -x, 1 - x
    d = project_linf(w, c, lo, hi)
    reach = (w * torch.where(w > 0, hi, lo)).sum(1) >= c  # the box's farthest point in w's direction
    assert ((d >= lo - 1e-6) & (d <= hi + 1e-6)).all()
    assert ((w * d).sum(1)[reach] >= c[reach] - 1e-4).all()
    # minimal: any step of a slightly smaller L-inf radius falls short
    r = d.abs().amax(1, keepdim=True) * 0.99
    shrunk = torch.minimum(torch.maximum(r * w.sign(), lo), hi)
    assert ((w * shrunk).sum(1)[reach] < c[reach]).all()
    # unboxed, the answer is c / ||w||_1 along sign(w)
    big = torch.full_like(w, 100.0)
    free = project_linf(w, c, -big, big)
    assert torch.allclose(free.abs().amax(1), c / w.abs().sum(1), rtol=1e-4)
    assert (project_linf(w, -c, lo, hi) == 0).all()  # already on the far side: no step


def test_fab_t_reaches_a_linear_models_exact_minimal_linf_distance():
    model = _linear()
    x, y = _inputs(model, 8)
    adv = FABT(model, eps=1.0, steps=50, n_target_classes=3)(x, y)
    got = (adv - x).flatten(1).abs().amax(1)
    exact = _exact(model, x, y, 1)
    assert (model(adv).argmax(1) != y).all()
    assert (got >= exact * (1 - 1e-4)).all() and (got <= exact * 1.01).all(), (got / exact).tolist()
    # at an eps below the minimum nothing is found, and the images come back unchanged
    small = FABT(model, eps=float(exact.min()) * 0.9, steps=50, n_target_classes=3)
    assert torch.equal(small(x, y), x)


def test_fab_t_agrees_with_torchattacks():
    torchattacks = pytest.importorskip("torchattacks")
    model = build_model("cnn", (1, 28, 28), 10, generator=torch.Generator().manual_seed(0)).eval()
    x = torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x).argmax(1)
    for eps in (0.002, 0.005):
        ours = FABT(model, eps, steps=20, n_target_classes=9)(x, y)
        theirs = torchattacks.FAB(model, norm="Linf", eps=eps, steps=20, n_restarts=1, multi_targeted=True,
                                  n_classes=10)(x, y)
        acc_ours, acc_theirs = ((model(a).argmax(1) == y).sum().item() for a in (ours, theirs))
        assert (ours - x).abs().amax() <= eps + 1e-6
        assert acc_ours <= acc_theirs + 1, (eps, acc_ours, acc_theirs)
