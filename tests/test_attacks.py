"""Attacks: threat-model invariants, bad input, and a cross-check against torchattacks 3.5.1."""
from __future__ import annotations

import pytest
import torch

from advgen.attacks.apgd import APGD, APGDT

from advgen.attacks.base import AttackError, lp_norm

from advgen.attacks.fgsm import FGSM

from advgen.attacks.noise import UniformNoise

from advgen.attacks.pgd import PGD

from advgen.attacks.square import Square
from advgen.attacks.apgd import checkpoints
from advgen.attacks.forge import forge_from_image, forge_from_noise
from advgen.attacks.patch import apply_patch, non_printability, patch_success, total_variation, train_patch

ta = pytest.importorskip("torchattacks")


@pytest.fixture
def trained(digits_cnn):
    return digits_cnn


def acc(model, x, y):
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def test_model_is_good(trained):
    model, x, y, _ = trained
    assert acc(model, x, y) > 0.9


def test_fgsm_matches_torchattacks(trained):
    model, x, y, _ = trained
    ours = FGSM(model, eps=0.1)(x, y)
    ref = ta.FGSM(model, eps=0.1)(x, y)
    assert torch.allclose(ours, ref, atol=1e-6)


@pytest.mark.parametrize("eps, steps", [(0.1, 10), (0.05, 20)])
def test_pgd_agrees_with_torchattacks_from_the_same_start(trained, eps, steps):
    """torchattacks returns PGD's last iterate; ours keeps the best one and stops an example at
    its first fooling iterate. From the same start, ours fools exactly the examples that some
    iterate of the same trajectory fools, which includes every example torchattacks fools."""
    model, x, y, _ = trained
    alpha = 2.5 * eps / steps
    torch.manual_seed(123)
    ref = ta.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=True)(x, y)
    torch.manual_seed(123)
    start = torch.empty_like(x).uniform_(-eps, eps)  # the draw torchattacks makes
    ours = PGD(model, eps=eps, alpha=alpha, steps=steps)(x, y, init=start)
    # The same trajectory, every iterate scored.
    adv, ever = (x + start).clamp(0, 1), torch.zeros(len(y), dtype=torch.bool)
    for i in range(steps + 1):
        adv.requires_grad_(True)
        logits = model(adv)
        ever |= logits.argmax(1) != y
        if i < steps:
            grad, = torch.autograd.grad(torch.nn.functional.cross_entropy(logits, y), adv)
            adv = (x + (adv.detach() + alpha * grad.sign() - x).clamp(-eps, eps)).clamp(0, 1)
    with torch.no_grad():
        fooled_ours, fooled_ref = model(ours).argmax(1) != y, model(ref).argmax(1) != y
    assert torch.equal(fooled_ours, ever)
    assert bool((fooled_ours | ~fooled_ref).all())
    assert float(lp_norm(ours - x, "Linf").max()) <= eps + 1e-6


class _Band(torch.nn.Module):
    """Two classes on a 1-pixel image: class 1 wins only in a band around x = 0.42."""

    def forward(self, x):
        v = x.flatten(1)[:, :1]
        return torch.cat([torch.full_like(v, 4.0), 5.0 - 200.0 * (v - 0.42) ** 2], 1)


def test_pgd_reports_an_intermediate_iterate_that_fooled():
    # From x = 0.3 with steps of 0.1 the iterates are 0.3 (right), 0.4 (fooled), 0.5 (right):
    # the last iterate is classified correctly, the middle one is not.
    model, x, y = _Band(), torch.full((1, 1, 1, 1), 0.3), torch.tensor([0])
    adv = PGD(model, eps=0.5, alpha=0.1, steps=2, random_start=False)(x, y)
    assert int(model(adv).argmax(1)) == 1 and abs(float(adv) - 0.4) < 1e-6
    last = ta.PGD(model, eps=0.5, alpha=0.1, steps=2, random_start=False)(x, y)
    assert int(model(last).argmax(1)) == 0  # the last iterate alone would say "robust"


def test_pgd_stops_attacking_fooled_examples(trained):
    model, x, y, _ = trained
    full = 10 * len(y)
    attack = PGD(model, eps=0.3, steps=10, generator=torch.Generator().manual_seed(0))
    attack(x, y)
    assert attack.grad_evals < full / 2  # at eps=0.3 nearly every example falls in a step or two


def test_apgd_robust_accuracy_agrees(trained):
    model, x, y, _ = trained
    for loss in ("ce", "dlr"):
        ours = APGD(model, eps=0.1, loss=loss, steps=50, generator=torch.Generator().manual_seed(0))(x, y)
        ref = ta.APGD(model, eps=0.1, loss=loss, steps=50, n_restarts=1, seed=0)(x, y)
        assert abs(acc(model, ours, y) - acc(model, ref, y)) <= 0.02, loss


def test_apgd_t_robust_accuracy_agrees(trained):
    model, x, y, _ = trained
    ours = APGDT(model, eps=0.1, steps=30, n_target_classes=3, generator=torch.Generator().manual_seed(0))(x, y)
    ref = ta.APGDT(model, eps=0.1, steps=30, n_restarts=1, n_classes=4, seed=0)(x, y)
    assert abs(acc(model, ours, y) - acc(model, ref, y)) <= 0.02
    # Targeting adds strength: APGD-T is not weaker than untargeted APGD-DLR at the same budget.
    dlr = APGD(model, eps=0.1, loss="dlr", steps=30, generator=torch.Generator().manual_seed(0))(x, y)
    assert acc(model, ours, y) <= acc(model, dlr, y) + 0.01


def test_apgd_stops_attacking_fooled_examples(trained):
    model, x, y, _ = trained
    attack = APGD(model, eps=0.3, steps=20, generator=torch.Generator().manual_seed(0))
    attack(x, y)
    assert attack.grad_evals < 20 * len(y) / 2


@pytest.mark.parametrize("make", [
    lambda m, e: FGSM(m, e),
    lambda m, e: PGD(m, e, steps=5, restarts=2, generator=torch.Generator().manual_seed(0)),
    lambda m, e: PGD(m, e * 10, norm="L2", steps=5, generator=torch.Generator().manual_seed(0)),
    lambda m, e: APGD(m, e, steps=10, generator=torch.Generator().manual_seed(0)),
    lambda m, e: APGD(m, e * 10, norm="L2", loss="dlr", steps=10, generator=torch.Generator().manual_seed(0)),
    lambda m, e: Square(m, e, n_queries=50, generator=torch.Generator().manual_seed(0)),
    lambda m, e: UniformNoise(m, e, generator=torch.Generator().manual_seed(0)),
    lambda m, e: UniformNoise(m, e * 10, norm="L2", generator=torch.Generator().manual_seed(0)),
])
def test_outputs_stay_in_the_ball_and_in_range(trained, make):
    model, x, y, _ = trained
    attack = make(model, 0.1)
    adv = attack(x, y)
    assert adv.shape == x.shape and float(adv.min()) >= 0 and float(adv.max()) <= 1
    assert float(lp_norm(adv - x, attack.norm).max()) <= attack.eps + 1e-5
    if not isinstance(attack, UniformNoise):
        assert attack.queries > 0
    if not isinstance(attack, (Square, UniformNoise)):
        assert attack.grad_evals > 0


def test_pgd_beats_fgsm_and_noise(trained):
    model, x, y, _ = trained
    gen = torch.Generator().manual_seed(0)
    pgd = acc(model, PGD(model, 0.1, steps=20, generator=gen)(x, y), y)
    assert pgd <= acc(model, FGSM(model, 0.1)(x, y), y)
    assert pgd + 0.3 < acc(model, UniformNoise(model, 0.1, generator=gen)(x, y), y)
    assert acc(model, PGD(model, 1.0, steps=20, generator=gen)(x, y), y) == 0.0


def test_square_uses_no_gradients_and_counts_queries(trained):
    model, x, y, _ = trained
    sq = Square(model, 0.1, n_queries=100, generator=torch.Generator().manual_seed(0))
    adv = sq(x, y)
    assert sq.grad_evals == 0 and sq.queries <= 100 * len(x)
    q = sq.queries_to_success
    wrong = model(adv).argmax(1) != y
    assert bool(((q >= 0) == wrong).all()) and int(q.max()) <= 100


def test_apgd_checkpoints():
    assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99, 100]


@pytest.mark.parametrize("bad, needle", [
    (lambda m, x, y: FGSM(m, -0.1), "eps must be a number >= 0, found -0.1"),
    (lambda m, x, y: PGD(m, 0.1, norm="L1"), "norm must be one of ('Linf', 'L2') for PGD, found 'L1'"),
    (lambda m, x, y: FGSM(m, 0.1)(x * 2, y), "inputs must lie in [0, 1]"),
    (lambda m, x, y: forge_from_noise(m, torch.tensor([10]), (1, 8, 8), num_classes=10), "target classes must lie in [0, 10), found [10, 10]"),
])
def test_bad_input(trained, bad, needle):
    model, x, y, _ = trained
    with pytest.raises(AttackError) as err:
        bad(model, x, y)
    assert needle in str(err.value)


def test_forge_from_noise_reaches_every_target(trained):
    model, *_ = trained
    targets = torch.arange(10).repeat(2)
    res = forge_from_noise(model, targets, (1, 8, 8), steps=200, num_classes=10,
                           generator=torch.Generator().manual_seed(0))
    assert float(res.success.float().mean()) >= 0.9
    assert torch.equal(model(res.images).argmax(1)[res.success], targets[res.success])


def test_forge_from_image_stays_close(trained):
    """C2's sense of "close": the forged image is nearer to x0 than x0 is to any real training
    image of the target class (a real image of the target would be a worse "attack")."""
    model, x, y, (xtr, ytr) = trained
    targets = (y[:20] + 1) % 10
    res = forge_from_image(model, x[:20], targets, lam=0.01, steps=300, lr=0.01, num_classes=10)
    assert float(res.success.float().mean()) >= 0.8
    moved = (res.images - x[:20]).flatten(1).norm(dim=1)
    nearest = torch.stack([(xtr[ytr == t] - x[i]).flatten(1).norm(dim=1).min() for i, t in enumerate(targets.tolist())])
    ok = res.success
    assert float((moved[ok] < nearest[ok]).float().mean()) >= 0.9
    assert float(moved[ok].median()) < 0.5 * float(nearest[ok].median())


def test_patch_pieces(trained):
    model, x, y, (xtr, ytr) = trained
    p = torch.full((1, 3, 3), 0.5)
    assert float(non_printability(p, torch.tensor([[0.0], [0.5], [1.0]]))) == 0.0
    assert float(total_variation(p)) == 0.0
    out = apply_patch(torch.zeros(2, 1, 8, 8), p, torch.tensor([0, 5]), torch.tensor([5, 0]))
    assert float(out.sum()) == 2 * 9 * 0.5 and float(out[1, 0, 5:8, 0:3].sum()) == 4.5
    gen = torch.Generator().manual_seed(0)
    res = train_patch(model, xtr, ytr, k=4, target=None, epochs=10, batch_size=64, lr=0.1, w_nps=0.0, w_tv=0.0,
                      palette=torch.tensor([[0.0], [1.0]]), num_classes=10, generator=gen)
    assert res.patch.shape == (1, 4, 4) and len(res.history) == 10
    def success(patch):
        return patch_success(model, x, y, patch, None, torch.Generator().manual_seed(1))

    # On 8x8 digits a 4x4 patch covers a quarter of the image, so even plain patches hurt;
    # the stage measures the patch against such baselines on Fashion-MNIST.
    assert res.history[-1]["loss"] < res.history[0]["loss"]
    assert success(res.patch) > success(torch.rand(1, 4, 4, generator=torch.Generator().manual_seed(2)))
