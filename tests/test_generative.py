"""GANs and generative evaluation: losses, the training step, generator files, metric sanity
on small data (8x8 digits and their CNN), mode coverage, code probes, params checks."""
from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from advgen.config import load_params
from advgen.generative import gan as G
from advgen.generative.codes import arithmetic, interpolation
from advgen.generative.curve import CurvePoint, ema_copy, flattened
from advgen.generative.evaluate import Settings, check_sizes, gradient_trace, read_columns
from advgen.generative.features import FeatureNet, extract, frechet_distance, load_feature_net
from advgen.generative.models import build_pair, generate, load_generator, save_generator
from advgen.generative.scores import (bootstrap_fid, class_coverage, expected_modes_uniform, fid, kid,
                                      kl_to_uniform, memorisation_threshold, memorised_share, nearest_distance,
                                      precision_recall, stacked_modes)
from advgen.generative.params import GAN_LOSSES
from tests.conftest import ROOT, params_error

PARAMS = load_params(ROOT / "params.yaml")


# ---------------------------------------------------------------------------------------------
# Losses and the step


def test_generator_losses_match_their_formulas_and_saturate_as_the_lecture_says():
    logits = torch.linspace(-6, 6, 25, requires_grad=True)
    d = torch.sigmoid(logits)
    assert torch.allclose(G.g_loss("minimax", logits), torch.log1p(-d).mean(), atol=1e-6)
    assert torch.allclose(G.g_loss("non_saturating", logits), -torch.log(d).mean(), atol=1e-6)
    gm, = torch.autograd.grad(G.g_loss("minimax", logits) * len(logits), logits)
    gn, = torch.autograd.grad(G.g_loss("non_saturating", logits) * len(logits), logits)
    assert torch.allclose(gm, -d, atol=1e-6) and torch.allclose(gn, -(1 - d), atol=1e-6)
    assert gm[0].abs() < 0.003 and gn[0].abs() > 0.99  # D(G(z)) ~ 0: minimax flat, non-saturating not
    real, fake = torch.tensor([2.0, 3.0]), torch.tensor([-1.0, 0.5])
    expect = -(torch.log(torch.sigmoid(real)).mean() + torch.log(1 - torch.sigmoid(fake)).mean())
    assert torch.allclose(G.d_loss("minimax", real, fake), expect, atol=1e-6)
    assert torch.allclose(G.d_loss("wgan_gp", real, fake), fake.mean() - real.mean())
    with pytest.raises(ValueError, match="unknown GAN loss 'hinge'"):
        G.g_loss("hinge", logits)
    assert G.LOSSES == GAN_LOSSES


def test_saturation_curves_are_the_analytic_derivatives():
    rows = G.saturation_curves(9)
    assert [r["d_fake"] for r in rows] == pytest.approx([i / 10 for i in range(1, 10)])
    r = rows[0]
    assert r["minimax_grad"] == pytest.approx(-1 / 0.9) and r["non_saturating_grad"] == pytest.approx(-10)
    assert r["minimax_grad_logit"] == pytest.approx(-0.1) and r["non_saturating_grad_logit"] == pytest.approx(-0.9)


def test_gradient_penalty_of_a_linear_critic_is_its_weight_norm_minus_one_squared():
    w = torch.randn(1, 1, 4, 4, generator=torch.Generator().manual_seed(0))

    class Linear(nn.Module):
        def forward(self, x):
            return (x * w).flatten(1).sum(1)

    real, fake = torch.rand(8, 1, 4, 4), torch.rand(8, 1, 4, 4)
    gp = G.gradient_penalty(Linear(), real, fake, torch.rand(8, generator=torch.Generator().manual_seed(1)))
    assert gp.item() == pytest.approx((w.norm().item() - 1) ** 2, rel=1e-5)


def _tiny_run(loss: str, d_steps: int, seed: int = 0, g_steps: int = 4, n: int = 256, fids=None, **kw):
    gen = torch.Generator().manual_seed(seed)
    g, d = build_pair(8, 1, 8, gen, "none" if loss == "wgan_gp" else "batch")
    real = torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(99))
    opt_g, opt_d = torch.optim.Adam(g.parameters(), 1e-3), torch.optim.Adam(d.parameters(), 1e-3)
    step = G.GANStep(g, d, loss, opt_g, opt_d, gen, 10.0)
    sched = G.GANSchedule(g_steps, 32, d_steps, log_every=2, trace_iters=3, fid_every=kw.pop("fid_every", 3), **kw)
    fids = iter(fids if fids is not None else [(v, v, v) for v in range(100)])
    hist = G.train_gan(step, n, lambda idx: real[idx], sched, gen, lambda i: CurvePoint(i, *next(fids)))
    return g, hist


@pytest.mark.parametrize("loss", GAN_LOSSES)
def test_training_is_deterministic_and_counts_k_discriminator_steps(loss):
    g1, h1 = _tiny_run(loss, 2)
    g2, h2 = _tiny_run(loss, 2)
    for a, b in zip(g1.state_dict().values(), g2.state_dict().values()):
        assert torch.equal(a, b)
    assert h1.log == h2.log
    assert h1.d_iters == 8 and h1.g_iters == 4  # 4 G updates, 2 D steps (one batch of 32) before each
    assert h1.epochs == 1.0  # 8 batches of 32 = the 256 images once
    assert [p.step for p in h1.fid] == [3, 4]  # every 3 G iterations and at the end
    traced = [r for r in h1.log if "g_grad_minimax" in r]
    assert len(traced) == (0 if loss == "wgan_gp" else 3)
    assert {"d_loss", "g_loss", "d_real", "d_fake", "g_grad_norm"} <= set(h1.log[0])
    _, other = _tiny_run(loss, 2, seed=1)
    assert other.log != h1.log


def test_d_steps_below_one_is_refused():
    with pytest.raises(ValueError, match="d_steps must be >= 1, found 0"):
        G.GANSchedule(1, 32, 0)


def test_fewer_images_than_a_batch_and_a_zero_budget_are_refused():
    gen = torch.Generator().manual_seed(0)
    g, d = build_pair(8, 1, 8, gen, "none")
    step = G.GANStep(g, d, "wgan_gp", torch.optim.Adam(g.parameters()), torch.optim.Adam(d.parameters()), gen, 10.0)
    with pytest.raises(ValueError, match="gan: 20 training images are fewer than one batch of 32"):
        G.train_gan(step, 20, lambda idx: torch.rand(len(idx), 1, 28, 28), G.GANSchedule(1, 32, 5), gen)
    with pytest.raises(ValueError, match="g_steps must be >= 1, found 0"):
        G.GANSchedule(0, 32)


def test_the_budget_is_generator_updates_across_epochs():
    """k = 2 takes twice the D steps for the same G updates, running on into a second pass over the data."""
    _, h1 = _tiny_run("non_saturating", 1, g_steps=12)
    _, h2 = _tiny_run("non_saturating", 2, g_steps=12)
    assert (h1.g_iters, h1.d_iters, h1.epochs) == (12, 12, 1.5)  # 8 batches per epoch
    assert (h2.g_iters, h2.d_iters, h2.epochs) == (12, 24, 3.0)


def test_training_stops_once_the_fid_curve_has_flattened():
    falling = [(100.0 - 20 * i, 95.0 - 20 * i, 105.0 - 20 * i) for i in range(10)]  # disjoint intervals
    flat = falling[:2] + [(60.0, 50.0, 70.0), (58.0, 48.0, 68.0), (57.0, 47.0, 67.0), (56.0, 46.0, 66.0)]
    _, h = _tiny_run("non_saturating", 1, g_steps=12, fids=falling, fid_every=2, converge=True)
    assert h.g_iters == 12 and h.converged_at is None and len(h.fid) == 6  # the budget ended first
    _, h = _tiny_run("non_saturating", 1, g_steps=12, fids=flat, fid_every=2, converge=True)
    # 80 [75, 85] does not overlap 60 [50, 70]: flat only once 60, 58 and 57 are the last three
    assert h.converged_at == 10 and h.g_iters == 10 and [p.fid for p in h.fid] == [100, 80, 60, 58, 57]
    _, h = _tiny_run("non_saturating", 1, g_steps=12, fids=flat, fid_every=2, converge=True, converge_window=4)
    assert h.converged_at == 12
    _, h = _tiny_run("non_saturating", 1, g_steps=12, fids=flat, fid_every=2, converge=False)
    assert h.converged_at is None and h.g_iters == 12


def test_flattened_needs_every_point_inside_every_other_points_interval():
    pts = lambda *iv: [CurvePoint(i, f, lo, hi) for i, (f, lo, hi) in enumerate(iv)]  # noqa: E731
    assert flattened(pts((2, 1, 3), (2.5, 1.5, 3.5), (2.2, 1.2, 3.2)), 3)
    assert not flattened(pts((1, 0, 2), (2.5, 1.5, 3.5), (4, 3, 5)), 3)  # neighbours agree, the ends do not
    # the intervals overlap pairwise, but the first estimate lies outside the last interval: still falling
    assert not flattened(pts((199, 180, 217), (179, 161, 205), (168, 144, 192)), 3)
    assert not flattened(pts((2, 1, 3), (2, 1, 3)), 3)  # too few points
    assert flattened(pts((9, 8, 10), (2, 1, 3), (2.5, 1.5, 3.5), (2.2, 1.2, 3.2)), 3)  # only the last window counts
    assert flattened(pts((1, 0, 2), (2, 1, 3), (1.5, 0.5, 2.5)), 3)  # on an interval's edge agrees


def test_the_ema_generator_follows_the_warm_up_recursion():
    """After one G update, EMA = d0 * initial + (1 - d0) * updated with d0 = min(decay, 1/10)."""
    gen = torch.Generator().manual_seed(0)
    g, d = build_pair(8, 1, 8, gen)
    ema = ema_copy(g)
    init = [p.detach().clone() for p in g.parameters()]
    step = G.GANStep(g, d, "non_saturating", torch.optim.Adam(g.parameters(), 1e-2), torch.optim.Adam(d.parameters()), gen)
    real = torch.rand(64, 1, 28, 28)
    G.train_gan(step, 64, lambda idx: real[idx], G.GANSchedule(1, 32, 1, ema_decay=0.999), gen, ema=ema)
    for e, p0, p1 in zip(ema.parameters(), init, g.parameters()):
        assert not torch.equal(p0, p1)
        assert torch.allclose(e, 0.1 * p0 + 0.9 * p1, atol=1e-6)


def test_the_generator_ends_in_a_stride_one_convolution_and_d_norms_are_built():
    """No transposed convolution straight to pixels (Odena et al.'s checkerboards)."""
    from advgen.generative.models import DCGANDiscriminator, DCGANGenerator

    g = DCGANGenerator(16, 1, 8)
    convs = [m for m in g.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert type(convs[-1]) is nn.Conv2d and convs[-1].stride == (1, 1) and convs[-1].kernel_size == (3, 3)
    assert g(torch.randn(4, 16)).shape == (4, 1, 28, 28)
    for norm, kind in (("batch", nn.BatchNorm2d), ("none", None), ("spectral", None)):
        d = DCGANDiscriminator(1, 8, norm)
        assert d(torch.rand(4, 1, 28, 28)).shape == (4,)
        assert any(isinstance(m, nn.BatchNorm2d) for m in d.modules()) == (kind is not None)
    assert any(hasattr(m, "parametrizations") for m in DCGANDiscriminator(1, 8, "spectral").modules())
    with pytest.raises(ValueError, match="unknown discriminator norm 'layer'"):
        DCGANDiscriminator(1, 8, "layer")


def test_fit_gan_refuses_other_image_sizes_and_too_large_n_fid(digits):
    from advgen.generative.training import fit_gan
    from advgen.generative.params import GANSpec

    net = digits[0]
    spec = GANSpec(loss="non_saturating")
    sched = G.GANSchedule(1, 32)
    with pytest.raises(ValueError, match="built for 28x28 grey images, but the dataset's images are \\(1, 8, 8\\)"):
        fit_gan(spec, sched, torch.rand(64, 1, 8, 8), net, n_fid=10, grid=2, probe_steps=0, n_boot=5,
                generator=torch.Generator(), device=torch.device("cpu"))
    with pytest.raises(ValueError, match="'gan.n_fid' = 100 exceeds the 64 training images"):
        fit_gan(spec, sched, torch.rand(64, 1, 28, 28), net, n_fid=100, grid=2, probe_steps=0, n_boot=5,
                generator=torch.Generator(), device=torch.device("cpu"))


def test_the_saturation_probe_drives_d_fake_down_and_the_ratio_up():
    gen = torch.Generator().manual_seed(0)
    g, d = build_pair(8, 1, 8, gen, "none")  # BatchNorm would normalise away the brightness that tells them apart
    real = torch.rand(64, 1, 28, 28, generator=gen) * 0.2 + 0.8  # bright images, easy to tell from G's
    before = {k: v.clone() for k, v in d.state_dict().items()}
    rows = G.saturation_probe(g, d, real, 60, 32, 3e-3, (0.5, 0.999), gen)  # 1e-2 diverges with 2 threads
    assert len(rows) == 61 and rows[0]["ratio"] == pytest.approx(1.0, abs=0.1)
    assert rows[-1]["d_fake"] < 0.1 and rows[-1]["ratio"] > 5
    assert all(torch.equal(before[k], v) for k, v in d.state_dict().items())  # D itself untouched


def test_the_stage_step_matches_a_hand_written_non_saturating_step():
    """GANStep.d_step + g_step is the textbook step: the same updates from the same state."""
    import torch.nn.functional as F

    def pair():
        g, d = build_pair(8, 1, 8, torch.Generator().manual_seed(0))
        return g, d, torch.optim.SGD(g.parameters(), 0.1), torch.optim.SGD(d.parameters(), 0.1)

    real = torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    g, d, og, od = pair()
    G.GANStep(g, d, "non_saturating", og, od, torch.Generator().manual_seed(2)).d_step(real, 16)
    step = G.GANStep(g, d, "non_saturating", og, od, torch.Generator().manual_seed(3))
    step.g_step(16)
    g2, d2, og2, od2 = pair()
    z = torch.randn(16, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        fake = g2(z)
    loss = F.softplus(-d2(real)).mean() + F.softplus(d2(fake)).mean()
    od2.zero_grad(); loss.backward(); od2.step()  # noqa: E702
    z = torch.randn(16, 8, generator=torch.Generator().manual_seed(3))
    loss = F.softplus(-d2(g2(z))).mean()
    og2.zero_grad(); loss.backward(); og2.step()  # noqa: E702
    for a, b in [*zip(g.parameters(), g2.parameters()), *zip(d.parameters(), d2.parameters())]:
        assert torch.allclose(a, b, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Generator files


def test_generator_round_trip_and_bad_files(tmp_path):
    g, _ = build_pair(16, 3, 8, torch.Generator().manual_seed(0))
    save_generator(g, tmp_path, {"arch_kwargs": {"z_dim": 16, "channels": 3, "width": 8}, "produced_by": "gan"})
    back = load_generator(tmp_path)
    z = torch.randn(4, 16)
    assert torch.equal(generate(g, z), generate(back, z)) and back.sidecar["arch"] == "dcgan"
    assert generate(g, z).shape == (4, 3, 28, 28) and 0 <= generate(g, z).min() and generate(g, z).max() <= 1
    meta = json.loads((tmp_path / "generator.json").read_text())
    (tmp_path / "generator.json").write_text(json.dumps({**meta, "produced_by": "train"}))
    with pytest.raises(ValueError, match="generator.json: expected format 'advgen-generator/1' produced by 'gan'"):
        load_generator(tmp_path)
    (tmp_path / "generator.json").write_text(json.dumps({**meta, "weights_sha256": "0" * 64}))
    with pytest.raises(ValueError, match="generator.safetensors: sha256 .* does not match"):
        load_generator(tmp_path)
    (tmp_path / "generator.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="generator.safetensors: not found; it is written by the gan"):
        load_generator(tmp_path)
    with pytest.raises(ValueError, match="z_dim must be >= 1, found 0"):
        build_pair(0, 1, 8, torch.Generator())


# ---------------------------------------------------------------------------------------------
# Scores on small data: 8x8 digits and a CNN trained on them (conftest's digits_cnn)


@pytest.fixture(scope="module")
def digits(digits_cnn):
    model, x_test, y_test, (x_train, y_train) = digits_cnn
    return FeatureNet(model, "f" * 64), x_train, y_train, x_test, y_test


def test_fid_matches_torchmetrics_and_sanity(digits):
    net, xtr, ytr, xte, _ = digits
    real, other = xtr[:400], xtr[400:800]
    f_real, f_other = extract(net, real), extract(net, other)
    fid_tm = fid(net, real, other)
    assert fid_tm == pytest.approx(frechet_distance(f_real, f_other), rel=1e-3, abs=1e-3)
    assert frechet_distance(f_real, f_real) == pytest.approx(0, abs=1e-4)  # identical sets
    assert fid(net, real, real) == pytest.approx(0, abs=1e-3)
    floor = frechet_distance(f_real, extract(net, xte))
    noisy = [frechet_distance(f_real, extract(net, (other + s * torch.randn(other.shape, generator=torch.Generator()
                                                                            .manual_seed(0))).clamp(0, 1)))
             for s in (0.0, 0.05, 0.1, 0.2, 0.4)]
    assert all(a < b for a, b in zip(noisy, noisy[1:])), noisy  # FID grows with the noise
    assert noisy[0] < 2 * floor + 1  # real vs real stays near the floor
    collapsed = xtr[ytr == 3][:1].expand(400, -1, -1, -1)  # copies of one image of one class
    f_col = extract(net, collapsed)
    assert frechet_distance(f_real, f_col) > 5 * max(noisy[0], 1e-3)
    p, r = precision_recall(f_real, f_col)
    p0, r0 = precision_recall(f_real, f_other)
    assert r < 0.05 and r0 > 0.5 and p0 > 0.5
    cov = class_coverage(net.logits(collapsed).argmax(1), 10)
    assert cov["classes_covered"] == 1 and cov["kl_uniform"] == pytest.approx(torch.log(torch.tensor(10.0)).item(), 1e-6)
    assert class_coverage(net.logits(xte).argmax(1), 10)["classes_covered"] == 10


def test_kid_is_near_zero_for_one_distribution_and_reproducible(digits):
    net, xtr, ytr, _, _ = digits
    a = kid(net, xtr[:300], xtr[300:600], 10, 100, seed=0)
    b = kid(net, xtr[:300], xtr[300:600], 10, 100, seed=0)
    c = kid(net, xtr[:300], xtr[ytr == 3][:1].expand(300, -1, -1, -1), 10, 100, seed=0)
    assert a == b and abs(a[0]) < c[0] / 20
    state = torch.get_rng_state()
    kid(net, xtr[:300], xtr[300:600], 5, 100, seed=1)
    assert torch.equal(state, torch.get_rng_state())  # the caller's global RNG is untouched


def test_bootstrap_interval_matches_the_spread_of_fresh_samples(digits):
    """The interval from one pair of sets is about as wide as the spread of FID over independent
    pairs of sets of the same size, and narrows with n."""
    net, xtr, _, _, _ = digits
    f = extract(net, xtr)  # (~1500, F)
    gen = torch.Generator().manual_seed(0)
    fresh = []
    for _ in range(40):
        perm = torch.randperm(len(f), generator=gen)
        fresh.append(frechet_distance(f[perm[:150]], f[perm[150:300]]))
    fresh_t = torch.tensor(fresh, dtype=torch.float64)
    fresh_width = float(fresh_t.quantile(0.975) - fresh_t.quantile(0.025))
    lo, hi = bootstrap_fid(f[:150], f[150:300], 100, torch.Generator().manual_seed(1))
    assert lo <= frechet_distance(f[:150], f[150:300]) <= hi
    assert fresh_width / 3 < hi - lo < 3 * fresh_width, (hi - lo, fresh_width)
    lo2, hi2 = bootstrap_fid(f[:600], f[600:1200], 100, torch.Generator().manual_seed(1))
    assert hi2 - lo2 < (hi - lo) / 1.5


def test_precision_recall_on_point_clouds():
    a = torch.randn(300, 4, generator=torch.Generator().manual_seed(0))
    assert precision_recall(a, a.clone()) == (1.0, 1.0)
    p, r = precision_recall(a, a + 100)
    assert p == 0 and r == 0
    p, r = precision_recall(a, a[:50].repeat(6, 1) * 0.1)  # a tight clump inside the data: precise, no recall
    assert p > 0.9 and r < 0.3
    with pytest.raises(ValueError, match="needs more than 3 samples"):
        precision_recall(a[:3], a)


# ---------------------------------------------------------------------------------------------
# Memorisation: the share of samples nearer a training image than the test set's 1st percentile


def _gauss(n: int, seed: int, dim: int = 8) -> torch.Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_copies_of_training_features_are_all_memorised():
    train, test = _gauss(3000, 0), _gauss(1000, 1)
    t = memorisation_threshold(train, test, 0.01)
    assert t > 0.1
    copies = train[torch.randperm(3000, generator=torch.Generator().manual_seed(2))[:500]]  # (500, 8)
    assert memorised_share(train, copies, t) == 1.0
    half = torch.cat([copies[:250], _gauss(250, 3) + 10])  # half copies, half far from every training point
    assert memorised_share(train, half, t) == 0.5


def test_samples_from_the_training_distribution_score_about_q():
    """Held-out-like samples fall below the test set's q-quantile about q of the time: the
    binomial spread of the share plus that of the threshold's own estimate."""
    train, test, samples = _gauss(20000, 0), _gauss(4000, 1), _gauss(4000, 2)
    q = 0.01
    share = memorised_share(train, samples, memorisation_threshold(train, test, q))
    sd = (q * (1 - q) * (1 / 4000 + 1 / 4000)) ** 0.5  # ~0.0022
    assert abs(share - q) < 4 * sd, share
    assert memorised_share(train, test, memorisation_threshold(train, test, q)) == pytest.approx(q, abs=1 / 4000)


def test_threshold_is_the_hand_computed_quantile_of_nearest_training_distances():
    train = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    test = torch.tensor([[1.0, 0.0], [8.0, 0.0], [0.0, 13.0], [5.0, 5.5], [0.0, 4.0]])
    nearest = sorted(min(math.dist(a, b) for b in train.tolist()) for a in test.tolist())  # brute force
    assert nearest == pytest.approx([1.0, 2.0, 3.0, 4.0, math.dist([5, 5.5], [0, 10])])
    for q in (0.0, 0.1, 0.25, 0.6, 1.0):
        pos = q * (len(nearest) - 1)  # linear interpolation between order statistics
        lo = int(pos)
        expect = nearest[lo] + (pos - lo) * (nearest[min(lo + 1, len(nearest) - 1)] - nearest[lo])
        assert memorisation_threshold(train, test, q) == pytest.approx(expect, abs=1e-5), q
    assert nearest_distance(train, test).tolist() == pytest.approx([1.0, 2.0, 3.0, nearest[-1], 4.0], abs=1e-5)


def test_share_is_strictly_below_and_the_nearest_neighbour_excludes_nothing():
    train = torch.tensor([[0.0, 0.0], [10.0, 0.0]], dtype=torch.float64)
    test = torch.tensor([[0.0, 3.0], [0.0, 4.0], [10.0, 5.0]], dtype=torch.float64)  # nearest: 3, 4, 5
    t = memorisation_threshold(train, test, 0.0)
    assert t == 3.0
    at = torch.tensor([[0.0, 3.0], [10.0, -3.0]], dtype=torch.float64)  # exactly at the threshold: not below
    assert memorised_share(train, at, t) == 0.0
    inside = torch.tensor([[0.0, 2.0], [10.0, 0.0], [10.0, 2.9], [0.0, 3.0]], dtype=torch.float64)
    assert memorised_share(train, inside, t) == 0.75  # a copy (distance 0) and two nearer points; not the last
    assert nearest_distance(train, inside).tolist() == [2.0, 0.0, 2.9, 3.0]  # the nearest, itself included


def test_chunking_does_not_change_the_answer():
    train, test, samples = _gauss(500, 0), _gauss(101, 1), torch.cat([_gauss(60, 2), _gauss(500, 0)[:37]])
    whole = nearest_distance(train, samples, chunk=10_000)
    t = memorisation_threshold(train, test, 0.05, chunk=10_000)
    share = memorised_share(train, samples, t, chunk=10_000)
    for chunk in (1, 7, 64, 97):
        assert torch.equal(nearest_distance(train, samples, chunk=chunk), whole), chunk
        assert memorisation_threshold(train, test, 0.05, chunk=chunk) == t
        assert memorised_share(train, samples, t, chunk=chunk) == share
    assert share == pytest.approx((37 + (whole[:60] < t).sum().item()) / 97) and (whole[60:] == 0).all()


def test_memorisation_reference_splits_the_test_features_and_scores_every_set(digits):
    """The threshold comes from the test images at even positions; the real-vs-real share from
    those at odd positions against it; evaluate_samples reports a copy set as memorised."""
    from advgen.generative.evaluate import RealSets, evaluate_samples, floor, memorisation

    net, xtr, _, xte, yte = digits
    f_train, f_test = extract(net, xtr), extract(net, xte)  # (~1600, F), (200, F)
    m = memorisation(f_train, f_test, 0.1)
    assert m.threshold == memorisation_threshold(f_train, f_test[0::2], 0.1)
    assert m.real_share == memorised_share(f_train, f_test[1::2], m.threshold)
    assert (m.n_threshold, m.n_real) == (100, 100) and 0 < m.real_share < 0.3
    assert m.record() == {"q": 0.1, "threshold": m.threshold, "real_share": m.real_share, "n_reference": len(xtr),
                          "n_threshold": 100, "n_real": 100}
    real = RealSets(xtr[:200], xte, yte, extract(net, xtr[:200]), m)
    s = Settings(200, 0, 10, 10, 5, 50, 3, 0.01, 10, 10, 11, 0.02)
    copies = evaluate_samples(xtr[-150:], None, net, real, s, torch.Generator().manual_seed(0), 0)  # not in real.train
    assert copies["memorised"] == 1.0
    assert floor(net, real, s, torch.Generator().manual_seed(0), 0)["memorised"] == m.real_share
    real.memo = None
    assert "memorised" not in evaluate_samples(xtr[-150:], None, net, real, s, torch.Generator().manual_seed(0), 0)


def test_mode_counts_and_kl():
    assert kl_to_uniform(torch.tensor([5, 5, 5, 5])) == pytest.approx(0)
    assert kl_to_uniform(torch.tensor([8, 0, 0, 0])) == pytest.approx(torch.log(torch.tensor(4.0)).item())
    pred = torch.tensor([[1, 2, 3], [1, 2, 3], [0, 0, 9]])
    m = stacked_modes(pred)
    assert m["modes_covered"] == 2 and m["modes_total"] == 1000
    shares = class_coverage(torch.tensor([0] * 99 + [1]), 3, min_share=0.01)
    assert shares["classes_covered"] == 2 and shares["shares"] == [0.99, 0.01, 0.0]
    assert expected_modes_uniform(1, 1000) == pytest.approx(1)
    assert expected_modes_uniform(10_000, 1000) == pytest.approx(1000, abs=0.1)


def test_feature_network_hash_pin(tmp_path, monkeypatch, digits_cnn):
    from advgen.models import save_model

    monkeypatch.chdir(tmp_path)
    (tmp_path / "models/cnn").mkdir(parents=True)
    save_model(digits_cnn[0], tmp_path / "models/cnn", {"arch": "cnn", "arch_kwargs": {"width": 16, "dropout": 0.0},
                                                         "in_shape": [1, 8, 8], "num_classes": 10})
    net = load_feature_net("cnn")
    assert len(net.sha256) == 64 and net.num_features == 128
    assert load_feature_net("cnn", net.sha256).sha256 == net.sha256
    with pytest.raises(ValueError, match="'evaluate_generative.feature_sha256' = 0{64} but models/cnn/model.safetensors"):
        load_feature_net("cnn", "0" * 64)


# ---------------------------------------------------------------------------------------------
# Code probes, with a generator whose class is a known linear function of the code


class _LinearGenerator(nn.Module):
    """z (B, 2) -> an 8x8 digit image mixing two templates by z[:, 0]: a code space that is linear."""

    def __init__(self, a: torch.Tensor, b: torch.Tensor):
        super().__init__()
        self.z_dim, self.channels = 2, 1
        self.a, self.b = a, b
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, z):
        t = torch.sigmoid(3 * z[:, :1])[:, :, None, None]  # (B, 1, 1, 1)
        return t * self.a + (1 - t) * self.b


def test_code_probes_on_a_linear_code_space(digits):
    net, xtr, ytr, _, _ = digits
    g = _LinearGenerator(xtr[ytr == 0][:1], xtr[ytr == 1][:1])
    interp = interpolation(g, net, 20, 11, 0.02, torch.Generator().manual_seed(0))
    assert interp["n_paths"] == 20 and interp["monotone_fraction"] == 1.0
    assert interp["mean_end_prob"][-1] > interp["mean_end_prob"][0]
    assert interp["images"].shape == (8 * 11, 1, 8, 8)
    arith = arithmetic(g, net, 400, 10, torch.Generator().manual_seed(0))
    assert arith["classes_with_mean"] == 2 and arith["n_tests"] > 0
    assert arith["success_rate"] > 0.8 and arith["chance"] < 0.7


def test_interpolation_of_a_one_class_generator_has_no_paths(digits):
    net, xtr, ytr, _, _ = digits
    g = _LinearGenerator(xtr[ytr == 0][:1], xtr[ytr == 0][:1])
    out = interpolation(g, net, 10, 5, 0.02, torch.Generator().manual_seed(0), max_rounds=3)
    assert out["n_paths"] == 0 and out["monotone_fraction"] is None


def test_gradient_trace_reads_the_training_log(tmp_path):
    log = tmp_path / "log.tsv"
    log.write_text("g_iter\tg_grad_norm\tg_grad_minimax\tg_grad_non_saturating\td_fake\n"
                   "0\t1\t1\t2\t0.5\n1\t1\t0.5\t4\t0.2\n300\t1\t\t\t0.5\n")
    t = gradient_trace(read_columns(log), 200)
    assert t["iters"] == 2 and t["median_ratio"] in (2.0, 8.0) and t["minimax"] == 0.75 and t["non_saturating"] == 3
    log.write_text("g_iter\tg_grad_norm\td_fake\n0\t1\t0.5\n")
    assert gradient_trace(read_columns(log), 200) is None


# ---------------------------------------------------------------------------------------------
# Params


def _error(edit) -> str:
    return params_error(PARAMS, edit)


@pytest.mark.parametrize("edit, needle", [
    (lambda p: p["gan"]["configs"]["nonsat"].update(d_steps=0), "'gan.configs.nonsat.d_steps' must be >= 1, found 0"),
    (lambda p: p["gan"]["configs"]["nonsat"].update(loss="hinge"), "'gan.configs.nonsat.loss' must be one of"),
    (lambda p: p["gan"]["configs"]["nonsat"].update(z_dim=0), "'gan.configs.nonsat.z_dim' must be >= 1, found 0"),
    (lambda p: p["gan"]["configs"]["nonsat"].update(gp_weight=10.0), "'gan.configs.nonsat.gp_weight' must be set for "
                                                                    "loss 'wgan_gp' and only there"),
    (lambda p: p["gan"]["configs"]["wgan_gp"].pop("gp_weight"), "'gan.configs.wgan_gp.gp_weight' must be set"),
    (lambda p: p["gan"].update(feature_model="vit"), "'gan.feature_model' names ['vit'], which are not models"),
    (lambda p: p["evaluate_generative"].update(models=["nonsat", "ddpm"]),
     "'evaluate_generative.models' names ['ddpm'], which are not generative models"),
    (lambda p: p["evaluate_generative"].update(feature_sha256="abc"), "'evaluate_generative.feature_sha256' must be a 64"),
    (lambda p: p["profiles"]["smoke"]["evaluate_generative"].update(kid_subset_size=500),
     "'profiles.smoke.evaluate_generative.kid_subset_size' must lie in [2, n = 200], found 500"),
])
def test_gan_params_are_checked(edit, needle):
    assert needle in _error(edit)


def test_n_larger_than_the_real_images_is_refused():
    s = Settings(20000, 0, 10, 10, 10, 100, 3, 0.01, 10, 10, 11, 0.02)
    with pytest.raises(ValueError, match="'evaluate_generative.n' = 20000 exceeds the real images available"):
        check_sizes(s, 60000, 10000)
    check_sizes(Settings(10000, 10000, 10, 10, 10, 100, 3, 0.01, 10, 10, 11, 0.02), 60000, 10000)
    with pytest.raises(ValueError, match="'evaluate_generative.n_stacked' = 70000 exceeds the 60000 training images"):
        check_sizes(Settings(100, 0, 70000, 10, 10, 100, 3, 0.01, 10, 10, 11, 0.02), 60000, 10000)


def test_grid_png_is_torchvisions_make_grid_and_save_image(tmp_path):
    from torchvision.utils import make_grid, save_image

    from advgen.plots import grid_png

    for shape, nrow in (((64, 1, 28, 28), 8), ((22, 1, 28, 28), 11), ((9, 3, 28, 28), 4)):
        x = torch.rand(*shape, generator=torch.Generator().manual_seed(0))
        save_image(make_grid(x, nrow=nrow, padding=2, pad_value=1.0), tmp_path / "tv.png")
        assert grid_png(x, nrow) == (tmp_path / "tv.png").read_bytes(), shape
