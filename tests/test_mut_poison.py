"""advgen.backdoors.poison on tiny hand-made splits (issue 20: tests that kill mutants): triggers,
counts, the draws, the record, the checks and their messages. Everything is exact: uint8 images
of a few pixels, explicit generators."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from advgen.backdoors import poison as P


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def split(n: int = 12, classes: int = 3, side: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images (n, 1, side, side) of values in [10, 60], labels 0, 1, ..., classes - 1, 0, ..."""
    x = torch.randint(10, 61, (n, 1, side, side), generator=gen(seed), dtype=torch.uint8)
    return x, torch.arange(n) % classes


def test_checkerboard_by_hand():
    assert P.checkerboard(3, 1).tolist() == [[[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 1.0]]]
    two = P.checkerboard(2, 2)
    assert two.shape == (2, 2, 2) and two.tolist() == [[[1.0, 0.0], [0.0, 1.0]]] * 2
    assert two.is_contiguous()  # a copy, not an expanded view
    two[0, 0, 0] = 5.0
    assert two[1, 0, 0] == 1.0
    assert P.checkerboard(1, 1).tolist() == [[[1.0]]]


def test_blend_pattern_is_uint8_levels_in_the_unit_interval():
    a = P.blend_pattern((2, 5, 5), gen(3))
    assert a.shape == (2, 5, 5) and a.dtype == torch.float32
    assert torch.equal(a, torch.randint(0, 256, (2, 5, 5), generator=gen(3)).float() / 255)
    assert float(a.min()) >= 0 and float(a.max()) <= 1
    big = P.blend_pattern((1, 64, 64), gen(0))
    assert float(big.max()) == 1.0 and float(big.min()) == 0.0  # both ends reachable (4096 draws)


def test_to_unit_and_to_uint8_round_trip_and_round_to_nearest():
    x = torch.tensor([0, 1, 127, 128, 255], dtype=torch.uint8)
    assert torch.equal(P.to_unit(x), x.float() / 255)
    assert torch.equal(P.to_uint8(P.to_unit(x)), x)
    v = torch.tensor([-0.2, 0.0, 0.4 / 255, 0.6 / 255, 0.5, 1.0, 1.3])
    assert P.to_uint8(v).tolist() == [0, 0, 0, 1, 128, 255, 255]
    assert P.to_uint8(v).dtype == torch.uint8


def test_poison_count():
    assert P.poison_count(0.1, 100) == 10
    assert P.poison_count(0.001, 100) == 1  # at least one
    assert P.poison_count(0.026, 100) == 3 and P.poison_count(0.024, 100) == 2
    assert P.poison_count(1.0, 7) == 7


def test_choose_draws_distinct_sorted_indices_from_the_pool():
    pool = torch.tensor([3, 5, 8, 11, 20])
    out = P._choose(pool, 3, gen(4), "x")
    assert out.tolist() == sorted(pool[torch.randperm(5, generator=gen(4))[:3]].tolist())
    assert P._choose(pool, 5, gen(0), "x").tolist() == [3, 5, 8, 11, 20]  # n = len(pool) is allowed
    with pytest.raises(P.PoisonError, match=r"^rate: needs 6 class-2 images, but the training split has only 5$"):
        P._choose(pool, 6, gen(0), "class-2")


def test_patch_trigger_corner_positions():
    t = P.PatchTrigger(P.checkerboard(3, 1))
    assert t.location == "corner"
    rows, cols = t.positions(2, 8, 10, gen())
    assert rows.tolist() == [4, 4] and cols.tolist() == [6, 6]  # one pixel in from the bottom-right
    rows, cols = t.positions(1, 4, 4, gen())  # k + 1 = 4 <= 4: still a one-pixel margin
    assert (rows.tolist(), cols.tolist()) == ([0], [0])
    rows, cols = t.positions(1, 3, 5, gen())  # k = 3 = h: no room for the margin
    assert (rows.tolist(), cols.tolist()) == ([0], [2])
    with pytest.raises(P.PoisonError, match=r"^trigger_size: a 3x3 trigger does not fit a 2x8 image$"):
        t.positions(1, 2, 8, gen())
    with pytest.raises(P.PoisonError, match=r"^trigger_size: a 3x3 trigger does not fit a 8x2 image$"):
        t.positions(1, 8, 2, gen())


def test_patch_trigger_random_positions_cover_every_valid_corner():
    t = P.PatchTrigger(P.checkerboard(2, 1), location="random")
    rows, cols = t.positions(400, 5, 4, gen(1))
    g = gen(1)
    assert rows.tolist() == torch.randint(0, 4, (400,), generator=g).tolist()
    assert cols.tolist() == torch.randint(0, 3, (400,), generator=g).tolist()
    assert set(rows.tolist()) == {0, 1, 2, 3} and set(cols.tolist()) == {0, 1, 2}


def test_patch_trigger_refuses_unknown_locations():
    with pytest.raises(P.PoisonError, match=r"^location: must be 'corner' or 'random', found 'centre'$"):
        P.PatchTrigger(P.checkerboard(3, 1), "centre")


def test_patch_trigger_pastes_the_patch_in_uint8():
    x = torch.full((2, 1, 5, 5), 100, dtype=torch.uint8)
    imgs, rows, cols = P.PatchTrigger(P.checkerboard(2, 1)).apply(x, gen())
    assert imgs.dtype == torch.uint8 and rows.tolist() == [2, 2] and cols.tolist() == [2, 2]
    want = torch.full((5, 5), 100, dtype=torch.uint8)
    want[2:4, 2:4] = torch.tensor([[255, 0], [0, 255]], dtype=torch.uint8)
    assert torch.equal(imgs[0, 0], want) and torch.equal(imgs[1, 0], want)


def test_blend_trigger_by_hand_and_its_checks():
    pattern = torch.tensor([[[0.0, 1.0], [0.5, 1.0]]])
    x = torch.tensor([[[[100, 200], [0, 255]]]], dtype=torch.uint8)
    imgs, rows, cols = P.BlendTrigger(pattern, 0.25).apply(x, gen())
    # 0.75 * x / 255 + 0.25 * pattern, back to uint8: 75, 150 + 63.75 = 213.75 -> 214, 31.875 -> 32, 255
    assert imgs.tolist() == [[[[75, 214], [32, 255]]]] and rows.tolist() == [-1] and cols.tolist() == [-1]
    full, _, _ = P.BlendTrigger(pattern, 1.0).apply(x, gen())  # alpha = 1 is allowed: the pattern
    assert full.tolist() == [[[[0, 255], [128, 255]]]]
    for alpha in (0, -0.1, 1.01):
        with pytest.raises(P.PoisonError, match=rf"^alpha: must lie in \(0, 1\], found {alpha}$"):
            P.BlendTrigger(pattern, alpha)


def test_check_classes_and_rate_messages():
    P._check_classes(3, 0, None)
    P._check_classes(3, 2, 0)
    for target in (-1, 3):
        with pytest.raises(P.PoisonError, match=rf"^target: must be a class in 0..2, found {target}$"):
            P._check_classes(3, target, None)
    for source in (-1, 3):
        with pytest.raises(P.PoisonError, match=rf"^source: must be a class in 0..2, found {source}$"):
            P._check_classes(3, 0, source)
    with pytest.raises(P.PoisonError, match=r"^source: must differ from the target \(1\) in a source-specific"):
        P._check_classes(3, 1, 1)
    P._check_rate(1.0)
    P._check_rate(1e-9)
    for rate in (0, -0.5, 1.5):
        with pytest.raises(P.PoisonError, match=rf"^rate: must lie in \(0, 1\], found {rate}$"):
            P._check_rate(rate)


def test_assemble_writes_the_parts_and_sorts_the_record():
    x, y = split(6)
    a = (torch.tensor([4, 1]), torch.zeros(2, 1, 6, 6, dtype=torch.uint8), torch.tensor([7, 8]),
         torch.tensor([9, 10]), "a")
    b = (torch.tensor([2]), torch.full((1, 1, 6, 6), 255, dtype=torch.uint8), torch.tensor([-1]),
         torch.tensor([-1]), "b")
    res = P._assemble(x, y, [a, b])
    assert res.indices.tolist() == [1, 2, 4] and res.kinds == ["a", "b", "a"]
    assert res.rows.tolist() == [8, -1, 7] and res.cols.tolist() == [10, -1, 9]
    assert res.original_labels.tolist() == [1, 2, 1]
    assert int(res.images[4].max()) == 0 and int(res.images[1].max()) == 0 and int(res.images[2].min()) == 255
    assert torch.equal(res.images[[0, 3, 5]], x[[0, 3, 5]]) and torch.equal(res.labels, y)
    assert res.extra == {} and int(x[4].max()) > 0  # the input is not written
    res.labels[0] = 2
    assert y[0] == 0


def test_dirty_label_all_to_one_by_hand():
    x, y = split(12, classes=3)  # labels 0 1 2 0 1 2 ...; 8 non-target images for target 0
    atk = P.BadNets(target=0, rate=0.25, size=2)  # 0.25 * 12 = 3 images
    res = atk.poison(x, y, 3, gen(5))
    pool = (y != 0).nonzero().squeeze(1)
    chosen = pool[torch.randperm(len(pool), generator=gen(5))[:3]].sort().values
    assert res.indices.tolist() == chosen.tolist() and res.kinds == [P.RELABELLED] * 3
    assert res.labels[chosen].tolist() == [0, 0, 0] and res.original_labels.tolist() == y[chosen].tolist()
    others = torch.ones(12, dtype=torch.bool)
    others[chosen] = False
    assert torch.equal(res.images[others], x[others]) and torch.equal(res.labels[others], y[others])
    patch = torch.tensor([[255, 0], [0, 255]], dtype=torch.uint8)
    assert all(torch.equal(res.images[i, 0, 3:5, 3:5], patch) for i in chosen.tolist())
    assert res.rows.tolist() == [3, 3, 3] and res.cols.tolist() == [3, 3, 3]
    idx = res.index()
    assert idx == {"n_train": 12, "n_poisoned": 3, "indices": chosen.tolist(), "kinds": [P.RELABELLED] * 3,
                   "original_labels": y[chosen].tolist(), "labels": [0, 0, 0], "rows": [3, 3, 3],
                   "cols": [3, 3, 3]}
    assert (atk.target, atk.rate, atk.source, atk.keep_target) == (0, 0.25, None, 0.0)


def test_dirty_label_source_specific_and_keep_target():
    x, y = split(12, classes=3)  # four images per class
    res = P.BadNets(target=2, rate=1 / 6, size=1, source=1, keep_target=0.5).poison(x, y, 3, gen(2))
    # 2 relabelled images of class 1, then round(0.5 * 2) = 1 triggered class-2 image
    relabelled = res.indices[torch.tensor([k == P.RELABELLED for k in res.kinds])]
    kept = res.indices[torch.tensor([k == P.TRIGGERED for k in res.kinds])]
    assert len(relabelled) == 2 and len(kept) == 1
    assert (y[relabelled] == 1).all() and (res.labels[relabelled] == 2).all()
    assert (y[kept] == 2).all() and (res.labels[kept] == 2).all()
    assert int(res.images[kept[0], 0, 4, 4]) == 255  # a 1x1 white trigger one pixel in from the corner
    assert len(res.labels) == 12 and res.index()["labels"] == [2] * 3
    with pytest.raises(P.PoisonError, match=r"^rate: needs 5 class-1 images, but the training split has only 4$"):
        P.BadNets(target=2, rate=5 / 12, source=1).poison(x, y, 3, gen())
    with pytest.raises(P.PoisonError, match=r"^rate: needs 9 non-target images, but the training split has only 8$"):
        P.BadNets(target=2, rate=0.75).poison(x, y, 3, gen())
    with pytest.raises(P.PoisonError, match=r"^rate: needs 5 target-class images, but the training split has only 4$"):
        P.BadNets(target=2, rate=0.25, keep_target=5 / 3).poison(x, y, 3, gen())
    with pytest.raises(P.PoisonError, match=r"^target: must be a class in 0..2, found 3$"):
        P.BadNets(target=3, rate=0.25).poison(x, y, 3, gen())
    # keep_target rounds to 0: no triggered target images
    res0 = P.BadNets(target=2, rate=1 / 6, source=1, keep_target=0.2).poison(x, y, 3, gen(2))
    assert res0.kinds == [P.RELABELLED] * 2


def test_dirty_label_checks_its_arguments():
    trig = P.PatchTrigger(P.checkerboard(2, 1))
    with pytest.raises(P.PoisonError, match=r"^rate: must lie in \(0, 1\], found 0$"):
        P.DirtyLabel(trig, 0, 0)
    with pytest.raises(P.PoisonError, match=r"^keep_target: must be >= 0, found -0.5$"):
        P.DirtyLabel(trig, 0, 0.1, keep_target=-0.5)
    assert P.DirtyLabel(trig, 0, 0.1, keep_target=0).keep_target == 0
    with pytest.raises(P.PoisonError, match=r"^trigger_size: must be >= 1, found 0$"):
        P.BadNets(0, 0.1, size=0)
    assert P.BadNets(0, 0.1, size=1).trigger.patch.shape == (1, 1, 1)


def test_badnets_and_blended_build_their_triggers():
    b = P.BadNets(1, 0.1, size=4, channels=3, location="random", source=2, keep_target=1.5)
    assert isinstance(b.trigger, P.PatchTrigger) and b.trigger.location == "random"
    assert torch.equal(b.trigger.patch, P.checkerboard(4, 3))
    assert (b.target, b.rate, b.source, b.keep_target) == (1, 0.1, 2, 1.5)
    d = P.BadNets(1, 0.2)
    assert d.trigger.patch.shape == (1, 3, 3) and d.trigger.location == "corner"
    assert d.source is None and d.keep_target == 0.0
    pattern = torch.rand(1, 4, 4, generator=gen())
    bl = P.Blended(2, 0.3, pattern, alpha=0.4, source=0)
    assert isinstance(bl.trigger, P.BlendTrigger) and bl.trigger.alpha == 0.4 and bl.trigger.pattern is pattern
    assert (bl.target, bl.rate, bl.source, bl.keep_target) == (2, 0.3, 0, 0.0)
    assert P.Blended(2, 0.3, pattern).trigger.alpha == 0.1


def test_blended_poisons_whole_images():
    x, y = split(6, classes=2, side=2)
    pattern = torch.ones(1, 2, 2)
    res = P.Blended(1, 0.5, pattern, alpha=0.5).poison(x, y, 2, gen(3))
    assert len(res.indices) == 3 and (y[res.indices] == 0).all() and (res.labels[res.indices] == 1).all()
    want = P.to_uint8(0.5 * P.to_unit(x[res.indices]) + 0.5)
    assert torch.equal(res.images[res.indices], want)
    assert res.rows.tolist() == [-1] * 3 and res.cols.tolist() == [-1] * 3


def test_scoring_mask():
    y = torch.tensor([0, 1, 2, 1, 0, 2])
    assert P.scoring_mask(y, 0, None).tolist() == [False, True, True, True, False, True]
    assert P.scoring_mask(y, 0, 2).tolist() == [False, False, True, False, False, True]
    assert P.scoring_mask(y, 2, 2).tolist() == [False] * 6


class Shift(nn.Module):
    """Logits favour class 1 more the brighter pixel 0 is: a gradient the PGD can follow."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor([1.0]))

    def forward(self, x):
        s = self.w * (x.flatten(1).mean(1) - 0.5) * 10
        return torch.stack([-s, s], 1)


def test_clean_label_perturbs_inside_the_ball_then_triggers():
    x, y = split(10, classes=2, side=4)
    eps = 8 / 255
    atk = P.CleanLabel(P.PatchTrigger(P.checkerboard(2, 1)), target=0, rate=0.2, model=Shift(), eps=eps, steps=3,
                       batch_size=1)
    assert (atk.eps, atk.steps, atk.step, atk.batch_size) == (eps, 3, None, 1)
    hard = atk.perturb(x[y == 0][:3], y[y == 0][:3], gen(0))
    diff = hard.int() - x[y == 0][:3].int()
    assert int(diff.abs().max()) == 8  # the whole L-inf budget, in uint8 levels
    # away from class 0: the surrogate's class-1 logit grows with brightness, so pixels go up
    assert int(diff.min()) >= 0 and float(diff.float().mean()) > 6
    res = atk.poison(x, y, 2, gen(1))
    assert res.kinds == [P.PERTURBED] * 2 and torch.equal(res.labels, y) and (y[res.indices] == 0).all()
    assert res.extra == {"linf_pixels": 8}
    assert res.index()["linf_pixels"] == 8
    assert res.rows.tolist() == [1, 1] and res.cols.tolist() == [1, 1]
    patch = torch.tensor([[255, 0], [0, 255]], dtype=torch.uint8)
    assert all(torch.equal(res.images[i, 0, 1:3, 1:3], patch) for i in res.indices.tolist())
    with pytest.raises(P.PoisonError, match=r"^target: must be a class in 0..1, found 2$"):
        P.CleanLabel(P.PatchTrigger(P.checkerboard(2, 1)), 2, 0.2, Shift()).poison(x, y, 2, gen())


def test_clean_label_checks_and_defaults():
    trig = P.PatchTrigger(P.checkerboard(2, 1))
    for eps in (0, -0.1):
        with pytest.raises(P.PoisonError, match=rf"^eps: must be > 0, found {eps}$"):
            P.CleanLabel(trig, 0, 0.1, Shift(), eps=eps)
    with pytest.raises(P.PoisonError, match=r"^rate: must lie in \(0, 1\], found 2$"):
        P.CleanLabel(trig, 0, 2, Shift())
    c = P.CleanLabel(trig, 1, 0.1, Shift())
    assert (c.eps, c.steps, c.step, c.batch_size, c.target, c.rate) == (32 / 255, 10, None, 500, 1, 0.1)


def test_clean_label_rounding_stays_in_the_ball():
    # A surrogate whose PGD moves every pixel by exactly eps; eps = 2.5 levels: rounding x + eps
    # to uint8 would step 3 levels, the projection keeps 2.
    x, y = split(4, classes=1, side=2)
    atk = P.CleanLabel(P.PatchTrigger(P.checkerboard(1, 1)), 0, 0.5, Shift(), eps=2.5 / 255, steps=5, step=1 / 255)
    hard = atk.perturb(x, y, gen())
    assert int((hard.int() - x.int()).abs().max()) <= 2


def test_every_draw_comes_from_the_generator_not_the_global_rng():
    x, y = split(12, classes=3)
    runs = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        res = P.BadNets(target=0, rate=0.25, size=2, location="random", keep_target=0.5).poison(x, y, 3, gen(7))
        runs.append((res.indices.tolist(), res.rows.tolist(), res.cols.tolist(), res.images))
    assert runs[0][:3] == runs[1][:3] and torch.equal(runs[0][3], runs[1][3])
    xs, ys = split(10, classes=2, side=4)
    outs = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        atk = P.CleanLabel(P.PatchTrigger(P.checkerboard(2, 1), "random"), 0, 0.2, Shift(), eps=6 / 255, steps=2)
        res = atk.poison(xs, ys, 2, gen(3))
        outs.append((res.indices.tolist(), res.rows.tolist(), res.images))
    assert outs[0][:2] == outs[1][:2] and torch.equal(outs[0][2], outs[1][2])


def test_clean_label_uses_its_eps_steps_and_no_early_stop_and_names_the_pool():
    xs, ys = split(10, classes=2, side=4)

    class Counting(Shift):
        calls = 0

        def forward(self, x):
            Counting.calls += 1
            return super().forward(x)

    hard = P.CleanLabel(P.PatchTrigger(P.checkerboard(2, 1)), 0, 0.2, Shift(), eps=6 / 255, steps=3).perturb(
        xs[:2], ys[:2], gen())
    assert int((hard.int() - xs[:2].int()).abs().max()) == 6  # its own eps, not PGD's default 8/255
    calls = []
    for steps in (2, 4):
        Counting.calls = 0
        P.CleanLabel(P.PatchTrigger(P.checkerboard(2, 1)), 0, 0.2, Counting(), eps=6 / 255, steps=steps).perturb(
            xs[:2], ys[:2], gen())
        calls.append(Counting.calls)
    assert calls[1] - calls[0] >= 2  # two more steps: at least two more forward passes
    with pytest.raises(P.PoisonError, match=r"^rate: needs 6 target-class images, but the training split has only 5$"):
        P.CleanLabel(P.PatchTrigger(P.checkerboard(2, 1)), 0, 0.6, Shift()).poison(xs, ys, 2, gen())


def test_clean_label_rounding_stays_in_the_ball_when_darkening():
    # labels 1: PGD darkens (away from class 1); eps = 2.5 levels: exactly 2 levels after the projection
    x = torch.full((3, 1, 2, 2), 100, dtype=torch.uint8)
    x[1] = 101
    atk = P.CleanLabel(P.PatchTrigger(P.checkerboard(1, 1)), 0, 0.5, Shift(), eps=2.5 / 255, steps=5, step=1 / 255)
    hard = atk.perturb(x, torch.ones(3, dtype=torch.long), gen())
    d = hard.int() - x.int()
    assert int(d.max()) <= 0 and int(d.min()) == -2
