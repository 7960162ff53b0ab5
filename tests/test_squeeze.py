"""Feature squeezing (Xu et al. 2018): the squeezers on hand-made tensors, BPDA's gradient, the
detector's threshold, the safety-net arithmetic, the validation split, and on the 8x8 digits
CNN of ``conftest.digits_cnn``: BPDA-PGD beats the naive transfer attack and the
detector-aware PGD evades the detector where plain BPDA-PGD does not.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy import ndimage

from advgen import headline as headline_mod
from advgen.attacks.pgd import PGD
from advgen.data import subset
from advgen.defenses import headline as defenses_headline
from advgen.defenses import squeeze
from advgen.defenses.squeeze import (
    DetectorAwarePGD,
    Squeezed,
    SqueezeDetector,
    bit_depth,
    build_squeezers,
    detection_metrics,
    fit_threshold,
    median_filter,
    roc_rows,
    safety_net,
    straight_through,
    validation_indices,
    validation_split,
)
from advgen.evaluation import predict
from advgen.attacks.robustness import batched
from advgen.defenses.params import SanitizeConfig
from advgen.stats import mcnemar


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The models are tiny: one thread is faster, and much faster on a loaded 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ----------------------------------------------------------------------------- squeezers

def test_bit_depth_rounds_to_the_nearest_of_2_to_the_bits_minus_1_levels():
    x = torch.tensor([0.0, 0.1, 0.2, 0.5, 0.9, 1.0]).view(1, 1, 1, 6)
    # 3 levels above 0: x * 3 = 0, .3, .6, 1.5, 2.7, 3 -> 0, 0, 1, 2 (half to even), 3, 3
    assert torch.allclose(bit_depth(x, 2).flatten(), torch.tensor([0, 0, 1 / 3, 2 / 3, 1, 1]))
    # one bit: a threshold at 0.5 (0.5 itself rounds to even, i.e. 0)
    x1 = torch.tensor([0.0, 0.49, 0.5, 0.51, 1.0]).view(1, 1, 1, 5)
    assert bit_depth(x1, 1).flatten().tolist() == [0.0, 0.0, 0.0, 1.0, 1.0]
    x8 = torch.arange(256.0).view(1, 1, 16, 16) / 255
    assert torch.equal(bit_depth(x8, 8), x8)  # 8 bits keep 8-bit images as they are
    with pytest.raises(ValueError):
        bit_depth(x, 0)


def test_median_filter_on_a_hand_made_image_with_reflected_borders():
    x = torch.arange(1.0, 10.0).view(1, 1, 3, 3) / 10  # [[1, 2, 3], [4, 5, 6], [7, 8, 9]] / 10
    expected = torch.tensor([[4.0, 4, 5], [5, 5, 5], [5, 6, 6]]) / 10  # worked out by hand
    assert torch.allclose(median_filter(x, 3)[0, 0], expected)
    # scipy's "mirror" is the same reflection; per channel, on a batch
    r = torch.rand(2, 3, 7, 9, generator=torch.Generator().manual_seed(0))
    ref = ndimage.median_filter(r.numpy(), size=(1, 1, 5, 5), mode="mirror")
    assert np.allclose(median_filter(r, 5).numpy(), ref)
    assert torch.equal(median_filter(r, 1), r)
    with pytest.raises(ValueError):
        median_filter(r, 2)


def test_median_filter_removes_an_isolated_salt_pixel():
    x = torch.full((1, 1, 6, 6), 0.2)
    x[0, 0, 2, 3] = 1.0
    assert torch.allclose(median_filter(x, 3), torch.full_like(x, 0.2))


def test_squeezers_and_the_squeezed_model():
    sq = build_squeezers(3, 3)
    assert list(sq) == ["bit_depth", "median", "both"]
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    assert torch.equal(sq["both"](x), median_filter(bit_depth(x, 3), 3))  # (the two commute: rounding is monotone)
    assert not torch.equal(sq["both"](x), sq["bit_depth"](x)) and not torch.equal(sq["both"](x), sq["median"](x))
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    model.sidecar = {"num_classes": 10}
    wrapped = Squeezed(model, sq["both"])
    assert torch.equal(wrapped(x), model(sq["both"](x)))
    assert torch.equal(Squeezed(model, sq["both"], bpda=True)(x), wrapped(x))  # same forward pass
    assert PGD(wrapped, 0.1).num_classes == 10  # the sidecar came along


# ----------------------------------------------------------------------------- BPDA

def test_bpda_gradient_is_the_identity_through_the_squeezer_and_plain_autograd_is_zero():
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(2)).requires_grad_(True)
    w = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    (g_plain,) = torch.autograd.grad((bit_depth(x, 2) * w).sum(), x)
    assert torch.count_nonzero(g_plain) == 0  # rounding has no gradient
    (g_bpda,) = torch.autograd.grad((straight_through(x, bit_depth(x, 2)) * w).sum(), x)
    assert torch.equal(g_bpda, w)
    # Squeezed(bpda=True): the model's gradient at the squeezed point
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10), torch.nn.Tanh(), torch.nn.Linear(10, 1))
    s = build_squeezers(2, 3)["both"]
    xs = s(x.detach()).requires_grad_(True)
    (g_ref,) = torch.autograd.grad(model(xs).sum(), xs)
    (g_sq,) = torch.autograd.grad(Squeezed(model, s, bpda=True)(x).sum(), x)
    assert torch.allclose(g_sq, g_ref) and torch.count_nonzero(g_ref) > 0
    (g_none,) = torch.autograd.grad(Squeezed(model, s)(x).sum(), x)
    assert torch.count_nonzero(g_none) == 0


def test_bpda_pgd_beats_the_naive_transfer_attack(digits_cnn):
    model, x, y, _ = digits_cnn
    s = build_squeezers(3, 3)["both"]
    eps = 0.1
    naive = batched(PGD(model, eps, steps=20, generator=torch.Generator().manual_seed(0), early_stop=False), x, y)
    adaptive = batched(PGD(Squeezed(model, s, bpda=True), eps, steps=20, generator=torch.Generator().manual_seed(0)),
                       x, y)
    assert float((adaptive - x).abs().max()) <= eps + 1e-6
    naive_ok, bpda_ok = predict(Squeezed(model, s), naive) == y, predict(Squeezed(model, s), adaptive) == y
    assert bpda_ok.float().mean() < naive_ok.float().mean() - 0.05
    assert mcnemar(naive_ok, bpda_ok)["p_a_higher"] < 0.01


# ----------------------------------------------------------------------------- the detector

def test_fit_threshold_is_the_exact_quantile_and_ties_never_raise_the_fpr():
    scores = torch.arange(100.0).flip(0) / 100  # 0.00 .. 0.99, in any order
    t = fit_threshold(scores, 0.05)
    assert t == pytest.approx(0.94) and int((scores > t).sum()) == 5
    assert fit_threshold(scores, 0.07) == pytest.approx(0.92)  # 0.07 * 100 = 7.000000000000001
    assert fit_threshold(scores, 0.0) == pytest.approx(0.99)  # nothing flagged
    assert fit_threshold(scores, 1.0) == float("-inf")  # everything flagged
    ties = torch.tensor([0.0] * 10 + [1.0] * 10)
    t = fit_threshold(ties, 0.3)  # 6 to flag, but 10 tie at the top: flag none rather than 10
    assert t == 1.0 and int((ties > t).sum()) == 0


def test_threshold_gives_about_5_percent_fpr_on_the_data_it_was_fit_on(digits_cnn):
    model, _, _, (x_train, _) = digits_cnn
    det = SqueezeDetector(model, list(build_squeezers(2, 3).values()))
    scores = det.scores(x_train[:300])
    assert scores.shape == (300,) and float(scores.min()) >= 0 and float(scores.max()) <= 2
    t = fit_threshold(scores, 0.05)
    fpr = float((scores > t).double().mean())
    assert 0.03 <= fpr <= 0.07 and fpr <= 0.05


def test_detector_score_is_the_max_l1_distance_of_the_softmaxes():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    with torch.no_grad():
        model[1].weight.copy_(torch.randn(10, 64, generator=torch.Generator().manual_seed(5)))
    sq = list(build_squeezers(2, 3).values())
    x = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    p = model(x).softmax(1)
    ref = torch.stack([(p - model(s(x)).softmax(1)).abs().sum(1) for s in sq]).amax(0)
    det = SqueezeDetector(model, sq)
    assert torch.allclose(det.scores(x), ref, atol=1e-6)
    pred, scores = det.inspect(x, batch_size=2)
    assert torch.equal(pred, model(x).argmax(1)) and torch.allclose(scores, ref, atol=1e-6)


def test_detection_metrics_on_hand_made_scores():
    m = detection_metrics(torch.tensor([0.125, 0.25, 0.375, 0.5]), torch.tensor([0.4375, 0.625]), 0.375)
    assert m["auroc"] == pytest.approx(7 / 8)  # 0.4375 beats 3 of 4 clean scores, 0.625 all 4
    assert m["tpr"] == 1.0 and m["fpr"] == 0.25 and (m["n_clean"], m["n_adv"]) == (4, 2)
    assert m["tpr_ci95"][0] < 1.0 <= m["tpr_ci95"][1]
    empty = detection_metrics(torch.tensor([0.125, 0.25]), torch.empty(0), 0.125)
    assert empty["auroc"] is None and empty["tpr"] is None
    rows = roc_rows(torch.arange(10.0), {"a": torch.arange(10.0) + 5}, n_points=10)
    assert len(rows) == 11 and rows[0]["fpr"] == 0.0 and rows[-1] == {"fpr_target": 1.0, "fpr": 1.0, "a": 1.0}
    assert rows[0]["a"] == 0.5  # threshold 9: 10 .. 14 flagged


def test_safety_net_on_a_hand_made_example():
    y = torch.tensor([0, 1, 2, 3])
    clean = safety_net(y, torch.tensor([0, 1, 2, 0]), torch.tensor([False, True, False, False]),
                       torch.tensor([1, 1, 0, 0]), torch.tensor([True, False, False, True]))
    # clean: right and kept -> 0 and 2 (1 is rejected, 3 is wrong): 2/4
    # adversarial: rejected or right -> 0 (rejected), 1 (right), 3 (rejected): 3/4
    assert clean["clean"]["accuracy"] == 0.5 and clean["adversarial"]["accuracy"] == 0.75
    assert clean["mean"]["accuracy"] == 0.625 and clean["mean"]["n"] == 8
    assert clean["clean"]["ci95"][0] < 0.5 < clean["clean"]["ci95"][1]


# ----------------------------------------------------------------------------- the adaptive attack

def test_detector_aware_pgd_evades_the_detector_where_bpda_pgd_does_not(digits_cnn):
    model, x, y, (x_train, _) = digits_cnn
    s = build_squeezers(2, 1)["bit_depth"]
    det = SqueezeDetector(model, [s])
    t = fit_threshold(det.scores(x_train[:500]), 0.05)
    eps = 0.15
    clean_pred, clean_scores = det.inspect(x)
    plain = batched(PGD(Squeezed(model, s, bpda=True), eps, steps=20, generator=torch.Generator().manual_seed(0)), x, y)
    attacks = {w: DetectorAwarePGD(det, t, eps, weight=w, steps=20, generator=torch.Generator().manual_seed(0))
               for w in (0.0, 10.0)}
    advs = {"plain": plain, **{w: a(x, y) for w, a in attacks.items()}}
    aware = advs[10.0]
    assert float((aware - x).abs().max()) <= eps + 1e-6 and float(aware.min()) >= 0 and float(aware.max()) <= 1
    tpr, net = {}, {}
    for name, adv in advs.items():
        pred, scores = det.inspect(adv)
        success = (clean_pred == y) & (pred != y)
        tpr[name] = detection_metrics(clean_scores, scores[success], t)["tpr"]
        net[name] = safety_net(y, clean_pred, clean_scores > t, pred, scores > t)["adversarial"]["accuracy"]
        if name in attacks:  # what the attack calls an escape is one: misclassified, under the threshold
            assert torch.equal(attacks[name].escaped, (pred != y) & (scores <= t))
    # Far fewer of its adversarial examples are detected than of plain BPDA-PGD's, or than with
    # the detection term off (weight 0: it only stops at an iterate under the threshold) ...
    assert tpr[10.0] < tpr["plain"] - 0.3 and tpr[10.0] < tpr[0.0] - 0.3
    # ... and more of the images get through the safety net.
    assert net[10.0] < net["plain"] - 0.1 and net[10.0] < net[0.0]


def test_detector_aware_pgd_counts_like_the_base_class(digits_cnn):
    model, x, y, _ = digits_cnn
    det = SqueezeDetector(model, list(build_squeezers(2, 3).values()))
    attack = DetectorAwarePGD(det, -1.0, 0.1, steps=3, generator=torch.Generator().manual_seed(0))  # never escapes
    attack(x[:10], y[:10])
    assert attack.grad_evals == 3 * 10 and attack.queries == 4 * 10 * (1 + 3)
    with pytest.raises(ValueError):
        DetectorAwarePGD(det, 0.5, 0.1, ce_on="nope")


# ----------------------------------------------------------------------------- data

def test_validation_split_is_disjoint_from_the_eval_set(monkeypatch):
    n = 700
    ids = torch.arange(n)
    images = torch.stack([ids // 256, ids % 256], 1).to(torch.uint8).view(n, 1, 1, 2)  # each image its index
    labels = (ids % 10).to(torch.uint8)
    monkeypatch.setattr("advgen.evaluation.load_split", lambda folder, split: (images, labels))
    from advgen.evaluation import eval_set

    def index_of(x: torch.Tensor) -> set[int]:
        v = torch.round(x.flatten(1) * 255).long()
        return set((v[:, 0] * 256 + v[:, 1]).tolist())

    x_eval, _ = eval_set("fake", 200, seed=7)
    xv, yv = validation_split(images, labels, 200, 300, seed=7)
    val = index_of(xv.float() / 255)
    assert len(val) == 300 and not val & index_of(x_eval)
    assert torch.equal(yv, labels[sorted(val)])
    assert torch.equal(validation_indices(n, 200, 300, 7), validation_indices(n, 200, 300, 7))  # deterministic
    # the subset really is the one subset() draws
    assert index_of(x_eval) == index_of(subset(images, labels, 200, torch.Generator().manual_seed(7))[0].float() / 255)
    with pytest.raises(ValueError):
        validation_indices(n, n, 10, 7)  # the evaluation takes everything
    with pytest.raises(ValueError):
        validation_indices(n, 200, 501, 7)  # only 500 left


# ----------------------------------------------------------------------------- the stage's entry point

def test_evaluate_squeezing_on_digits_is_deterministic_and_fits_on_validation_only(digits_cnn):
    model, x, y, (x_train, _) = digits_cnn
    cfg = SanitizeConfig(model="cnn", bit_depth=3, median=3, eps=0.1, fpr=0.05, pgd_steps=5, square_queries=20,
                         detector_weight=10.0, n_eval=40, n_val=200)
    x_val, xe, ye = x_train[:200], x[:40], y[:40]
    m = squeeze.evaluate_squeezing(model, x_val, xe, ye, cfg, torch.Generator().manual_seed(0))
    again = squeeze.evaluate_squeezing(model, x_val, xe, ye, cfg, torch.Generator().manual_seed(0))
    assert json.dumps(m, sort_keys=True) == json.dumps(again, sort_keys=True)  # (NaN != NaN in a ROC row)
    det = SqueezeDetector(model, list(build_squeezers(3, 3).values()))
    assert m["threshold"]["value"] == fit_threshold(det.scores(x_val), 0.05)
    assert m["threshold"]["fpr_val"]["rate"] <= 0.05 and m["threshold"]["fpr_val"]["n"] == 200
    assert list(m["preprocessing"]) == ["none", "bit_depth", "median", "both"]
    assert set(m["preprocessing"]["both"]) == {"clean", "fgsm_naive", "pgd_naive", "pgd_bpda", "square",
                                               "pgd_naive_vs_bpda"}
    assert set(m["detector"]["attacks"]) == {"fgsm", "pgd", "square", "bpda_pgd", "detector_aware_pgd",
                                             "detector_aware_pgd_ce_squeezed"}
    assert len(m["roc"]) == squeeze.ROC_POINTS + 1 and set(m["roc"][0]) == {"fpr_target", "fpr",
                                                                           *m["detector"]["attacks"]}
    head = defenses_headline.sanitize(m)
    assert 10 <= headline_mod.check(head) <= 20
    assert "seconds" not in repr(m)
