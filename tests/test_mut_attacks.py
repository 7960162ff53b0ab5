"""The attack steps of advgen.attacks.base and FGSM against hand-computed numbers (issue 20:
tests that kill mutants): image checks, lp_norm, project, margin, the DLR losses, the base
class's counters and gradients, and one FGSM step on a linear model."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from advgen.attacks.base import (Attack, AttackError, check_images, dlr_loss, dlr_targeted_loss, lp_norm, margin,
                                 project)
from advgen.attacks.fgsm import FGSM


class Lin(nn.Module):
    """logits = x.flatten(1) @ W.T (no bias); with a sidecar giving num_classes."""

    def __init__(self, w: torch.Tensor, num_classes: int | None = None):
        super().__init__()
        self.w = nn.Parameter(w.clone(), requires_grad=False)
        if num_classes is not None:
            self.sidecar = {"num_classes": num_classes}

    def forward(self, x):
        return x.flatten(1) @ self.w.T


# ---------------------------------------------------------------------------------------------
# check_images


def test_check_images_accepts_the_unit_cube_and_labels_in_range():
    x = torch.tensor([0.0, 1.0, 0.5, 0.25]).view(1, 1, 2, 2).repeat(3, 1, 1, 1)
    check_images(x)
    check_images(x, torch.tensor([0, 2, 1]), 3)
    check_images(x, torch.tensor([0, 5, 9]))  # no class count: any label


def test_check_images_refuses_other_shapes_values_and_labels():
    x = torch.full((2, 1, 2, 2), 0.5)
    with pytest.raises(AttackError, match=r"expected images of shape \(B, C, H, W\), found \(2, 4\)"):
        check_images(x.view(2, 4))
    with pytest.raises(AttackError, match=r"inputs must lie in \[0, 1\], found values in \[-0.5, 0.5\]"):
        check_images(torch.cat([x[:1], x[1:] - 1.0]))
    with pytest.raises(AttackError, match=r"inputs must lie in \[0, 1\], found values in \[0.5, 1.5\]"):
        check_images(torch.cat([x[:1], x[1:] + 1.0]))
    with pytest.raises(AttackError, match=r"expected labels of shape \(2,\), found \(3,\)"):
        check_images(x, torch.tensor([0, 1, 2]))
    with pytest.raises(AttackError, match=r"class labels must lie in \[0, 3\), found \[0, 3\]"):
        check_images(x, torch.tensor([0, 3]), 3)
    with pytest.raises(AttackError, match=r"class labels must lie in \[0, 3\), found \[-1, 1\]"):
        check_images(x, torch.tensor([-1, 1]), 3)
    check_images(x, torch.tensor([2, 0]), 3)  # the top class itself is in range


def test_attack_error_is_a_value_error():
    assert issubclass(AttackError, ValueError)


# ---------------------------------------------------------------------------------------------
# lp_norm and project


def test_lp_norm_by_hand():
    v = torch.tensor([[3.0, -4.0, 0.0, 0.0], [1.0, 1.0, -1.0, 1.0]]).view(2, 1, 2, 2)
    assert lp_norm(v, "Linf").tolist() == [4.0, 1.0]
    assert lp_norm(v, "L2").tolist() == [5.0, 2.0]


def test_project_linf_clips_each_coordinate_then_the_image():
    x = torch.tensor([0.5, 0.5, 0.95, 0.02]).view(1, 1, 2, 2)
    adv = torch.tensor([0.9, 0.3, 1.4, -0.3]).view(1, 1, 2, 2)
    out = project(adv, x, 0.1, "Linf")
    # deltas 0.4, -0.2, 0.45, -0.32 -> clipped to +-0.1 -> 0.6, 0.4, 1.05 -> 1, -0.08 -> 0
    torch.testing.assert_close(out.flatten(), torch.tensor([0.6, 0.4, 1.0, 0.0]), rtol=0, atol=1e-6)
    inside = torch.tensor([0.55, 0.45, 0.9, 0.1]).view(1, 1, 2, 2)  # already in the ball: unchanged
    torch.testing.assert_close(project(inside, x, 0.1, "Linf"), inside, rtol=0, atol=1e-7)


def test_project_l2_rescales_onto_the_ball_only_when_outside():
    x = torch.full((2, 1, 2, 2), 0.5)
    d = torch.tensor([[0.3, 0.4, 0.0, 0.0], [0.03, 0.04, 0.0, 0.0]]).view(2, 1, 2, 2)  # norms 0.5, 0.05
    out = project(x + d, x, 0.1, "L2")
    # the first delta is scaled by 0.1 / 0.5 = 0.2 -> (0.06, 0.08); the second is inside: kept
    want = torch.tensor([[0.56, 0.58, 0.5, 0.5], [0.53, 0.54, 0.5, 0.5]])
    torch.testing.assert_close(out.view(2, 4), want, rtol=0, atol=1e-6)
    assert float(lp_norm(out - x, "L2")[0]) == pytest.approx(0.1, abs=1e-6)
    # the image box comes after the ball: a delta of norm 0.1 pushing a pixel past 1 is cut
    x2 = torch.tensor([0.99, 0.5, 0.5, 0.5]).view(1, 1, 2, 2)
    out2 = project(x2 + torch.tensor([1.0, 0, 0, 0]).view(1, 1, 2, 2), x2, 0.1, "L2")
    torch.testing.assert_close(out2.flatten(), torch.tensor([1.0, 0.5, 0.5, 0.5]), rtol=0, atol=1e-7)
    # a zero delta stays zero (no division by zero)
    torch.testing.assert_close(project(x, x, 0.1, "L2"), x, rtol=0, atol=0)
    # eps = 0 collapses onto x
    torch.testing.assert_close(project(x + d, x, 0.0, "L2"), x, rtol=0, atol=1e-7)


def test_project_l2_of_a_tiny_delta_is_kept_and_not_blown_up():
    x = torch.full((1, 1, 1, 2), 0.5)
    d = torch.tensor([1e-13, 0.0]).view(1, 1, 1, 2)
    out = project(x + d, x, 0.1, "L2")
    torch.testing.assert_close(out, x + d, rtol=0, atol=1e-12)


def test_project_works_on_other_ranks():
    x = torch.full((2, 3), 0.5)  # (B, D): the view over x.dim() - 1 trailing dims
    out = project(x + torch.tensor([[0.6, 0.8, 0.0], [0.0, 0.0, 0.05]]), x, 0.1, "L2")
    torch.testing.assert_close(out, torch.tensor([[0.56, 0.58, 0.5], [0.5, 0.5, 0.55]]), rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# margin and the DLR losses


def test_margin_by_hand():
    z = torch.tensor([[2.0, 5.0, 1.0], [4.0, -1.0, 3.5], [0.0, 0.0, 0.0]])
    y = torch.tensor([1, 0, 2])
    assert margin(z, y).tolist() == [3.0, 0.5, 0.0]
    assert margin(z, torch.tensor([0, 1, 0])).tolist() == [-3.0, -5.0, 0.0]


def test_dlr_loss_by_hand():
    # row 0: y = 1 is the top class (5); runner-up 3; pi1 - pi3 = 5 - 1 = 4 -> -(5 - 3) / 4 = -0.5
    # row 1: y = 2 (value 1) not the top; the top is 6; sorted 6, 2, 1, -1: -(1 - 6) / (6 - 1) = 1
    z = torch.tensor([[1.0, 5.0, 3.0, 0.0], [2.0, 6.0, 1.0, -1.0]])
    out = dlr_loss(z, torch.tensor([1, 2]))
    torch.testing.assert_close(out, torch.tensor([-0.5, 1.0]), rtol=0, atol=1e-6)
    # invariant to a shift and a positive scale of the logits
    torch.testing.assert_close(dlr_loss(3 * z + 7, torch.tensor([1, 2])), out, rtol=0, atol=1e-6)


def test_dlr_loss_of_equal_logits_is_finite():
    out = dlr_loss(torch.zeros(1, 4), torch.tensor([0]))
    assert out.tolist() == [0.0]
    # pi1 = pi3 with distinct runner-up gap: the 1e-12 keeps it finite (-(2 - 2) / 1e-12 = 0 here)
    z = torch.tensor([[2.0, 2.0, 2.0, 0.0]])
    assert dlr_loss(z, torch.tensor([3])).tolist() == [pytest.approx(2.0 / 1e-12)]


def test_dlr_targeted_loss_by_hand():
    # sorted 6, 4, 2, 1: denominator 6 - (2 + 1) / 2 = 4.5; y = 1 (6), t = 0 (4): -(6 - 4) / 4.5
    z = torch.tensor([[4.0, 6.0, 2.0, 1.0], [1.0, 2.0, 3.0, 4.0]])
    out = dlr_targeted_loss(z, torch.tensor([1, 0]), torch.tensor([0, 3]))
    # row 1: sorted 4, 3, 2, 1: 4 - 1.5 = 2.5; y = 0 (1), t = 3 (4): -(1 - 4) / 2.5 = 1.2
    torch.testing.assert_close(out, torch.tensor([-2.0 / 4.5, 1.2]), rtol=0, atol=1e-6)
    assert dlr_targeted_loss(torch.zeros(1, 4), torch.tensor([0]), torch.tensor([1])).tolist() == [0.0]


# ---------------------------------------------------------------------------------------------
# The Attack base class


def test_attack_refuses_bad_eps_and_norms():
    model = Lin(torch.eye(4)[:2])
    for eps in (-0.1, "0.1", None):
        with pytest.raises(AttackError, match=r"eps must be a number >= 0, found"):
            Attack(model, eps)
    with pytest.raises(AttackError, match=r"eps must be a number >= 0, found -1"):
        Attack(model, -1)
    with pytest.raises(AttackError, match=r"norm must be one of \('Linf', 'L2'\) for Attack, found 'L1'"):
        Attack(model, 0.1, "L1")
    with pytest.raises(AttackError, match=r"norm must be one of \('Linf',\) for FGSM, found 'L2'"):
        Attack.__init__(FGSM.__new__(FGSM), model, 0.1, "L2")  # FGSM's own norms
    a = Attack(model, 0, "L2")
    assert (a.eps, a.norm, a.queries, a.grad_evals) == (0.0, "L2", 0, 0) and isinstance(a.eps, float)
    assert Attack(model, 1).eps == 1.0 and Attack(model, 0.25).norm == "Linf"


def test_attack_puts_the_model_in_eval_mode_and_reads_num_classes():
    model = Lin(torch.eye(4)[:3], num_classes=3).train()
    a = Attack(model, 0.1)
    assert a.model is model and not model.training
    assert a.num_classes == 3
    assert Attack(Lin(torch.eye(4)[:3]), 0.1).num_classes is None
    bare = Lin(torch.eye(4)[:3])
    bare.sidecar = "not a dict"
    assert Attack(bare, 0.1).num_classes is None


def test_logits_and_loss_and_grad_count_and_match_autograd():
    w = torch.tensor([[1.0, -2.0, 0.5, 0.0], [0.0, 1.0, 1.0, -1.0], [2.0, 0.0, -1.0, 1.0], [-1.0, 1.0, 0.0, 2.0]])
    model = Lin(w, num_classes=4)
    a = Attack(model, 0.1)
    x = torch.tensor([[0.1, 0.9, 0.4, 0.6], [0.7, 0.2, 0.3, 0.8]]).view(2, 1, 2, 2)
    y = torch.tensor([1, 3])
    z = a.logits(x)
    assert a.queries == 2 and a.grad_evals == 0
    torch.testing.assert_close(z, x.flatten(1) @ w.T)
    # CE: the gradient of -log softmax_y(W x) is W.T (softmax - onehot(y))
    per, grad, logits = a.loss_and_grad(x, y)
    assert a.queries == 4 and a.grad_evals == 2
    p = torch.softmax(x.flatten(1) @ w.T, 1)
    want = (p - F.one_hot(y, 4).float()) @ w
    torch.testing.assert_close(grad.flatten(1), want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(per, F.cross_entropy(x.flatten(1) @ w.T, y, reduction="none"))
    torch.testing.assert_close(logits, x.flatten(1) @ w.T)
    assert not per.requires_grad and not grad.requires_grad and not logits.requires_grad
    assert not x.requires_grad  # the caller's tensor is untouched
    # DLR and targeted DLR: the losses of the module functions, gradients by autograd
    for loss, kwargs, fn in (("dlr", {}, lambda zz: dlr_loss(zz, y)),
                             ("dlr_targeted", {"target": torch.tensor([0, 2])},
                              lambda zz: dlr_targeted_loss(zz, y, torch.tensor([0, 2])))):
        xr = x.clone().requires_grad_(True)
        ref_per = fn(xr.flatten(1) @ w.T)
        (ref_grad,) = torch.autograd.grad(ref_per.sum(), xr)
        per, grad, _ = a.loss_and_grad(x, y, loss=loss, **kwargs)
        torch.testing.assert_close(per, ref_per.detach())
        torch.testing.assert_close(grad, ref_grad)
    assert a.grad_evals == 6 and a.queries == 8


def test_loss_and_grad_works_under_no_grad():
    model = Lin(torch.eye(4)[:2])
    with torch.no_grad():
        _, grad, _ = Attack(model, 0.1).loss_and_grad(torch.full((1, 1, 2, 2), 0.5), torch.tensor([0]))
    # softmax of logits (0.5, 0.5) is (1/2, 1/2): grad = W.T (p - e_0) = (-1/2, 1/2, 0, 0)
    torch.testing.assert_close(grad.flatten(), torch.tensor([-0.5, 0.5, 0.0, 0.0]))


def test_call_validates_and_returns_a_copy_at_eps_zero():
    model = Lin(torch.eye(4)[:3], num_classes=3)
    x = torch.full((2, 1, 2, 2), 0.5)
    y = torch.tensor([0, 2])
    a = Attack(model, 0.0)
    out = a(x, y)
    assert torch.equal(out, x) and out.data_ptr() != x.data_ptr() and a.queries == 0
    with pytest.raises(AttackError, match="class labels"):
        a(x, torch.tensor([0, 3]))
    with pytest.raises(NotImplementedError):
        Attack(model, 0.1)(x, y)
    with pytest.raises(NotImplementedError):
        Attack(model, 0.1).perturb(x, y)


# ---------------------------------------------------------------------------------------------
# FGSM


def test_fgsm_is_one_signed_gradient_step_clipped_to_the_box():
    # Two classes, logits (x.w0, x.w1); the CE gradient for y = 0 is (p1) (w1 - w0), whose sign is
    # sign(w1 - w0) per pixel: x* = clip(x + eps sign(w1 - w0), 0, 1).
    w = torch.tensor([[1.0, -1.0, 0.5, 2.0], [-1.0, 1.0, 1.5, 1.0]])
    model = Lin(w, num_classes=2)
    x = torch.tensor([[0.5, 0.5, 0.97, 0.05]]).view(1, 1, 2, 2)
    atk = FGSM(model, eps=0.1)
    out = atk(x, torch.tensor([0]))
    # w1 - w0 = (-2, 2, 1, -1): 0.5 - 0.1, 0.5 + 0.1, min(1, 1.07), max(0, -0.05)
    torch.testing.assert_close(out.flatten(), torch.tensor([0.4, 0.6, 1.0, 0.0]), rtol=0, atol=1e-6)
    assert atk.queries == 1 and atk.grad_evals == 1
    assert not out.requires_grad
    out1 = FGSM(model, eps=0.1)(x, torch.tensor([1]))  # the other label: the opposite step
    torch.testing.assert_close(out1.flatten(), torch.tensor([0.6, 0.4, 0.87, 0.15]), rtol=0, atol=1e-6)


def test_fgsm_defaults_and_norm():
    model = Lin(torch.eye(4)[:2])
    atk = FGSM(model)
    assert atk.eps == pytest.approx(8 / 255) and atk.norm == "Linf" and FGSM.norms == ("Linf",)
    assert math.isclose(FGSM(model, 0.3).eps, 0.3)


def test_dlr_loss_with_five_classes_uses_the_runner_up():
    # sorted 0, 1, 2, 4, 7; y = 4 (value 7) is the top: runner-up 4, pi1 - pi3 = 7 - 2: -(7 - 4) / 5
    z = torch.tensor([[2.0, 0.0, 4.0, 1.0, 7.0]])
    torch.testing.assert_close(dlr_loss(z, torch.tensor([4])), torch.tensor([-0.6]), rtol=0, atol=1e-6)


def test_call_passes_keyword_arguments_to_perturb():
    class Echo(Attack):
        def perturb(self, x, y, **kwargs):
            self.got = kwargs
            return x + 0.0

    a = Echo(Lin(torch.eye(4)[:2]), 0.1)
    a(torch.full((1, 1, 2, 2), 0.5), torch.tensor([0]), init=3, flag=True)
    assert a.got == {"init": 3, "flag": True}


def test_fgsm_leaves_pixels_with_zero_gradient_alone():
    # w1 - w0 = (1, 0, -1, 0): pixels 1 and 3 have a zero gradient, so sign 0: unchanged
    w = torch.tensor([[0.0, 1.0, 1.0, 2.0], [1.0, 1.0, 0.0, 2.0]])
    out = FGSM(Lin(w), eps=0.1)(torch.full((1, 1, 2, 2), 0.5), torch.tensor([0]))
    torch.testing.assert_close(out.flatten(), torch.tensor([0.6, 0.5, 0.4, 0.5]), rtol=0, atol=1e-6)
