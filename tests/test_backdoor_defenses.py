"""Backdoor defenses on small synthetic data: spectral signatures, activation clustering, STRIP,
fine-pruning's pruning step, and the detection metrics."""
from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from advgen.backdoors.defenses import (
    activation_clustering,
    der,
    detection_metrics,
    penultimate,
    prune_last_conv,
    spectral_scores,
    spectral_signatures,
    strip_entropy,
    strip_threshold,
)
from advgen.models import build_model, to_layout


def gaussian(n: int, d: int, gen: torch.Generator) -> torch.Tensor:
    return torch.randn(n, d, generator=gen)  # (n, d)


def poisoned_features(gen: torch.Generator, offset: float = 10.0):
    """Class 0: 200 clean + 20 poison shifted along a unit direction; class 1: 100; class 2: 30."""
    d = 32
    direction = torch.randn(d, generator=gen)
    direction /= direction.norm()
    feats = torch.cat([gaussian(200, d, gen), gaussian(20, d, gen) + offset * direction,
                       gaussian(100, d, gen), gaussian(30, d, gen)])  # (350, d)
    labels = torch.tensor([0] * 220 + [1] * 100 + [2] * 30)
    is_poison = torch.zeros(350, dtype=torch.bool)
    is_poison[200:220] = True
    return feats, labels, is_poison


# ----------------------------------------------------------------------------- spectral signatures


def test_spectral_scores_by_hand():
    feats = torch.tensor([[-1.0, 1.0], [3.0, 1.0], [1.0, 1.0], [5.0, 5.0]])
    labels = torch.tensor([0, 0, 0, 1])  # class 0: mean (1, 1), v = (1, 0); class 1 is a singleton: 0
    scores = spectral_scores(feats, labels)
    assert scores.dtype == torch.float64
    torch.testing.assert_close(scores, torch.tensor([4.0, 4.0, 0.0, 0.0], dtype=torch.float64))


def test_spectral_signatures_finds_poison_and_caps_each_class():
    feats, labels, is_poison = poisoned_features(torch.Generator().manual_seed(0))
    flags, scores = spectral_signatures(feats, labels, expected_count=20)
    assert flags.dtype == torch.bool and scores.shape == (350,)
    # k_y = min(ceil(1.5 * 20), floor(0.5 * n_y)): 30, 30, 15.
    assert [int(flags[labels == y].sum()) for y in range(3)] == [30, 30, 15]
    assert flags[is_poison].float().mean() >= 0.9
    # The flagged ones are the top scores of their class.
    c0 = labels == 0
    assert scores[c0 & flags].min() >= scores[c0 & ~flags].max()

    flags, _ = spectral_signatures(feats, labels, expected_count=20, factor=1.0, max_class_fraction=0.1)
    assert [int(flags[labels == y].sum()) for y in range(3)] == [20, 10, 3]
    flags, _ = spectral_signatures(feats, labels, expected_count=0)
    assert not flags.any()


@pytest.mark.parametrize("kwargs, name", [({"expected_count": -1}, "expected_count"),
                                          ({"expected_count": 5, "factor": 0.0}, "factor"),
                                          ({"expected_count": 5, "max_class_fraction": 0.0}, "max_class_fraction"),
                                          ({"expected_count": 5, "max_class_fraction": 1.5}, "max_class_fraction")])
def test_spectral_signatures_validates(kwargs, name):
    feats, labels, _ = poisoned_features(torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=name):
        spectral_signatures(feats, labels, **kwargs)


def test_spectral_shape_errors():
    with pytest.raises(ValueError, match="labels"):
        spectral_scores(torch.zeros(4, 3), torch.zeros(5, dtype=torch.long))


# ----------------------------------------------------------------------------- activation clustering


# FastICA of Gaussian data has no unique answer and may stop without converging; harmless here.
quiet_ica = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def clustered_features(gen: torch.Generator):
    """Class 0: 170 clean + 30 (15%) far away; class 1: 200 unimodal; class 2: 10 (too small)."""
    d = 20
    direction = torch.randn(d, generator=gen)
    direction /= direction.norm()
    feats = torch.cat([gaussian(170, d, gen), gaussian(30, d, gen) + 15 * direction,
                       gaussian(200, d, gen), gaussian(10, d, gen)])  # (410, d)
    labels = torch.tensor([0] * 200 + [1] * 200 + [2] * 10)
    is_poison = torch.zeros(410, dtype=torch.bool)
    is_poison[170:200] = True
    return feats, labels, is_poison


@quiet_ica
def test_activation_clustering_flags_small_cluster_only():
    feats, labels, is_poison = clustered_features(torch.Generator().manual_seed(1))
    flags, scores = activation_clustering(feats, labels, torch.Generator().manual_seed(2))
    assert torch.equal(flags, is_poison)  # the separated 15% exactly, nothing of the unimodal class
    torch.testing.assert_close(scores[is_poison], torch.full((30,), 0.85, dtype=torch.float64))
    torch.testing.assert_close(scores[:170], torch.full((170,), 0.15, dtype=torch.float64))
    assert (scores[labels == 1] > 0).all() and (scores[labels == 1] < 0.65).all()
    assert (scores[labels == 2] == 0).all()  # 10 < 2 * dims: not clustered
    m = detection_metrics(flags, scores, is_poison)
    assert m["tpr"] == 1.0 and m["fpr"] == 0.0 and m["auroc"] == 1.0


@quiet_ica
def test_activation_clustering_is_deterministic_and_ignores_dead_units():
    feats, labels, _ = clustered_features(torch.Generator().manual_seed(1))
    feats = torch.cat([feats, torch.zeros(len(feats), 3)], 1)  # dead ReLU units
    a = activation_clustering(feats, labels, torch.Generator().manual_seed(5))
    b = activation_clustering(feats, labels, torch.Generator().manual_seed(5))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert int(a[0].sum()) == 30


@quiet_ica
@pytest.mark.parametrize("kwargs, name", [({"dims": 0}, "dims"), ({"size_threshold": 1.0}, "size_threshold")])
def test_activation_clustering_validates(kwargs, name):
    feats, labels, _ = clustered_features(torch.Generator().manual_seed(1))
    with pytest.raises(ValueError, match=name):
        activation_clustering(feats, labels, torch.Generator().manual_seed(0), **kwargs)


# ----------------------------------------------------------------------------- STRIP


class TriggerNet(nn.Module):
    """Toy backdoored classifier: a bright top-left pixel gives a confident class 0; otherwise
    weak logits that depend on the whole image (so blends have high entropy)."""

    def __init__(self, gen: torch.Generator, pixels: int = 16, classes: int = 4):
        super().__init__()
        self.linear = nn.Linear(pixels, classes)
        nn.init.normal_(self.linear.weight, std=0.3, generator=gen)
        nn.init.zeros_(self.linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, 4, 4) -> (B, 4)
        logits = self.linear(x.flatten(1))
        trigger = (x[:, 0, 0, 0] > 0.9).float()  # (B,)
        return logits + 30.0 * trigger[:, None] * torch.eye(logits.shape[1])[0]


def strip_data(gen: torch.Generator):
    pool = torch.rand(50, 1, 4, 4, generator=gen) * 0.5
    pool[:, 0, 0, 0] = 0.0  # clean images never carry the trigger
    clean = torch.rand(200, 1, 4, 4, generator=gen) * 0.5
    clean[:, 0, 0, 0] = 0.0
    triggered = clean.clone()
    triggered[:, 0, 0, 0] = 1.0
    return pool, clean, triggered


def test_strip_separates_triggered_inputs():
    gen = torch.Generator().manual_seed(0)
    model, (pool, clean, triggered) = TriggerNet(gen), strip_data(gen)
    model.train()
    h_clean = strip_entropy(model, clean, pool, torch.Generator().manual_seed(1), n_overlay=8)
    h_trig = strip_entropy(model, triggered, pool, torch.Generator().manual_seed(1), n_overlay=8)
    assert model.training  # mode restored
    assert h_clean.shape == (200,) and h_clean.dtype == torch.float32
    assert h_clean.min() > 1.0 and h_trig.max() < 1e-6 and (h_trig >= 0).all()
    threshold = strip_threshold(h_clean, frr=0.1)
    assert (h_trig < threshold).all()
    assert abs(float((h_clean < threshold).float().mean()) - 0.1) <= 0.01


def test_strip_entropy_does_not_depend_on_batch_size():
    gen = torch.Generator().manual_seed(0)
    model, (pool, clean, _) = TriggerNet(gen), strip_data(gen)
    a = strip_entropy(model, clean[:30], pool, torch.Generator().manual_seed(3), n_overlay=5, batch_size=7)
    b = strip_entropy(model, clean[:30], pool, torch.Generator().manual_seed(3), n_overlay=5)
    torch.testing.assert_close(a, b)
    c = strip_entropy(model, clean[:30], pool, torch.Generator().manual_seed(4), n_overlay=5)
    assert not torch.equal(a, c)
    # Two overlays by hand: clamp(x + overlay, 0, 1) (saturating: x + overlay exceeds 1 here),
    # mean entropy over the overlays.
    bright = clean[:1] + 0.6  # trigger pixel 0.6: still off
    pick = torch.randint(0, len(pool), (1, 2), generator=torch.Generator().manual_seed(9))[0]
    blended = (bright + pool[pick]).clamp(0, 1)
    assert (bright + pool[pick]).max() > 1
    p = model(blended).softmax(1)
    want = -(p * p.log()).sum(1).mean()
    got = strip_entropy(model, bright, pool, torch.Generator().manual_seed(9), n_overlay=2)
    torch.testing.assert_close(got, want.reshape(1))


def test_strip_threshold_quantile_and_validation():
    h = torch.arange(101, dtype=torch.float32)  # quantile q of 0..100 is 100 q
    assert strip_threshold(h, 0.05) == pytest.approx(5.0)
    assert strip_threshold(h, 0.5) == pytest.approx(50.0)
    for frr in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError, match="frr"):
            strip_threshold(h, frr)
    with pytest.raises(ValueError, match="n_overlay"):
        strip_entropy(TriggerNet(torch.Generator()), torch.zeros(2, 1, 4, 4), torch.zeros(3, 1, 4, 4),
                      torch.Generator(), n_overlay=0)
    with pytest.raises(ValueError, match="pool"):
        strip_entropy(TriggerNet(torch.Generator()), torch.zeros(2, 1, 4, 4), torch.zeros(3, 1, 5, 5),
                      torch.Generator())


# ----------------------------------------------------------------------------- fine-pruning


def blob_data(gen: torch.Generator, n: int = 300):
    """Three separable classes on 8x8: a bright 4x4 quadrant per class plus noise."""
    y = torch.arange(n) % 3
    x = torch.rand(n, 1, 8, 8, generator=gen) * 0.3
    for c, (r, s) in enumerate([(0, 0), (0, 4), (4, 0)]):
        x[y == c, :, r:r + 4, s:s + 4] += 0.7
    return x.clamp(0, 1), y


@pytest.fixture(scope="module")
def small_cnn():
    gen = torch.Generator().manual_seed(0)
    model = to_layout(build_model("cnn", (1, 8, 8), 3, generator=gen, dropout=0.0))
    x, y = blob_data(gen)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for step in range(30):
        idx = torch.arange(step * 32, step * 32 + 32) % len(x)
        loss = nn.functional.cross_entropy(model(x[idx].contiguous(memory_format=torch.channels_last)), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return model, x, y


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x.contiguous(memory_format=torch.channels_last)).argmax(1) == y).float().mean())


def relu_means(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    seen = []
    h = model.features[6].register_forward_hook(lambda m, i, o: seen.append(o.mean((0, 2, 3))))
    with torch.no_grad():
        model(x.contiguous(memory_format=torch.channels_last))
    h.remove()
    return seen[0]  # (C,)


def test_prune_last_conv_prunes_dormant_channels_within_accuracy(small_cnn):
    base, x, y = small_cnn
    model = copy.deepcopy(base)
    means = relu_means(model, x)  # (64,)
    a0 = accuracy(model, x, y)
    keys = set(model.state_dict())
    res = prune_last_conv(model, x, y, max_acc_drop=0.1, max_fraction=0.9)
    k, pruned = res["pruned"], res["pruned_channels"]
    assert res["channels"] == 64 and k == len(pruned) == len(set(pruned)) and 0 < k <= math.floor(0.9 * 64)
    assert res["clean_accuracy_before"] == pytest.approx(a0)
    assert res["clean_accuracy_after"] >= a0 - 0.1 - 1e-9
    assert accuracy(model, x, y) == pytest.approx(res["clean_accuracy_after"])
    rest = [c for c in range(64) if c not in pruned]
    assert means[pruned].max() <= means[rest].min() + 1e-6  # the most dormant ones
    assert set(model.state_dict()) == keys  # the mask stays out of checkpoints

    # The hook zeros the pruned channels (as seen by the next layer), in eval and in train mode.
    seen = []
    model.features[7].register_forward_hook(lambda m, i, o: seen.append(i[0].detach()))
    for mode in (False, True):
        model.train(mode)
        model(x[:16].contiguous(memory_format=torch.channels_last))
        assert (seen[-1][:, pruned] == 0).all() and (seen[-1][:, rest] != 0).any()
    # Deep copies keep the pruning.
    twin = copy.deepcopy(model).eval()
    assert twin.get_buffer(twin._advgen_prune_mask)[0, pruned].eq(0).all()


def test_prune_last_conv_stops_at_first_violation(small_cnn):
    base, x, y = small_cnn
    model = copy.deepcopy(base)
    res = prune_last_conv(model, x, y, max_acc_drop=0.0, max_fraction=1.0)
    a0, k = res["clean_accuracy_before"], res["pruned"]
    assert res["clean_accuracy_after"] >= a0
    if k < 64:  # the next channel broke the rule and was restored
        means = relu_means(base, x)
        nxt = int(torch.argsort(means, stable=True)[k])
        assert nxt not in res["pruned_channels"]
        mask = model.get_buffer(model._advgen_prune_mask)
        assert mask[0, nxt] == 1
        mask[0, nxt] = 0
        assert accuracy(model, x, y) < a0
    capped = prune_last_conv(copy.deepcopy(base), x, y, max_acc_drop=1.0, max_fraction=0.1)
    assert capped["pruned"] == math.floor(0.1 * 64)  # accuracy never binds: the cap does


def test_prune_last_conv_refuses_bad_models_and_arguments(small_cnn):
    base, x, y = small_cnn
    with pytest.raises(ValueError, match="LogReg"):
        prune_last_conv(build_model("logreg", (1, 8, 8), 3), x, y)
    pruned = copy.deepcopy(base)
    prune_last_conv(pruned, x, y, max_fraction=0.1)
    with pytest.raises(ValueError, match="already pruned"):
        prune_last_conv(pruned, x, y)
    with pytest.raises(ValueError, match="max_acc_drop"):
        prune_last_conv(copy.deepcopy(base), x, y, max_acc_drop=-0.1)
    with pytest.raises(ValueError, match="max_fraction"):
        prune_last_conv(copy.deepcopy(base), x, y, max_fraction=1.5)


def test_penultimate(small_cnn):
    model, x, _ = small_cnn
    model.train()
    feats = penultimate(model, x, batch_size=64)
    assert model.training  # mode restored
    model.eval()
    with torch.no_grad():
        want = model.embed(x.contiguous(memory_format=torch.channels_last))
    assert feats.shape == (300, 128)
    torch.testing.assert_close(feats, want)
    with pytest.raises(ValueError, match="LogReg"):
        penultimate(build_model("logreg", (1, 8, 8), 3), x)


# ----------------------------------------------------------------------------- scoring


def test_detection_metrics_by_hand():
    is_poison = torch.tensor([1, 1, 1, 0, 0, 0, 0, 0], dtype=torch.bool)
    flags = torch.tensor([1, 1, 0, 1, 0, 0, 0, 0], dtype=torch.bool)
    scores = torch.tensor([0.9, 0.8, 0.3, 0.7, 0.1, 0.2, 0.4, 0.0])
    m = detection_metrics(flags, scores, is_poison)
    assert m["tpr"] == pytest.approx(2 / 3) and m["fpr"] == pytest.approx(1 / 5)
    assert m["precision"] == pytest.approx(2 / 3) and m["n_flagged"] == 3 and m["n_poison"] == 3
    # Pairs (poison, clean) ranked right: 0.9 and 0.8 beat all 5; 0.3 beats 0.1, 0.2, 0.0.
    assert m["auroc"] == pytest.approx((5 + 5 + 3) / 15)
    one_class = detection_metrics(flags, scores, torch.zeros(8, dtype=torch.bool))
    assert one_class["auroc"] is None and one_class["tpr"] is None and one_class["fpr"] == pytest.approx(3 / 8)
    none_flagged = detection_metrics(torch.zeros(8, dtype=torch.bool), scores, is_poison)
    assert none_flagged["precision"] is None and none_flagged["tpr"] == 0.0
    with pytest.raises(ValueError, match="flags"):
        detection_metrics(flags[:4], scores, is_poison)


def test_der():
    assert der(0.9, 1.0, 0.88, 0.1) == pytest.approx((0.9 - 0.02 + 1) / 2)
    assert der(0.9, 1.0, 0.95, 0.1) == pytest.approx((0.9 + 1) / 2)  # clean accuracy gain: no credit
    assert der(0.9, 0.2, 0.9, 0.5) == pytest.approx(0.5)  # ASR rise: no penalty beyond 0
    assert der(0.9, 1.0, 0.9, 1.0) == pytest.approx(0.5)
    assert der(1.0, 1.0, 1.0, 0.0) == pytest.approx(1.0) and der(1.0, 0.0, 0.0, 1.0) == pytest.approx(0.0)
