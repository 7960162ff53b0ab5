"""Diffusion: the forward process, the training step, the samplers (DDPM, DDIM), classifier-free
guidance, the autoencoder, the files, the sample-set scores and the params checks, on tiny data."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from advgen.config import load_params, load_section
from advgen.generative import diffusion as D
from advgen.generative.autoencoder import Autoencoder, check_latent_shape, fit_autoencoder, reconstruction_scores
from advgen.generative.diffusion_run import balanced_labels, model_space, sample_plan, seeded_init, to_images
from advgen.generative.evaluate import Settings, evaluate_samples
from advgen.generative.features import FeatureNet, extract
from advgen.generative.params import DIFFUSION_SAMPLERS, DIFFUSION_SCHEDULES, DiffusionConfig
from advgen.generative.store import load_module, load_samples, save_module, save_samples
from advgen.generative.unet import UNet
from tests.conftest import ROOT, params_error

PARAMS = load_params(ROOT / "params.yaml")


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------------------------
# Schedules and the forward process


def test_schedules_are_diffusers_and_decrease_to_near_zero():
    assert tuple(sorted(D.SCHEDULES)) == DIFFUSION_SCHEDULES and tuple(sorted(D.SAMPLERS)) == DIFFUSION_SAMPLERS
    lin, cos = D.alphas_cumprod("linear", 1000), D.alphas_cumprod("cosine", 1000)
    assert lin[0] == pytest.approx(1 - 1e-4) and lin[-1] < 1e-4 and cos[-1] < 1e-4
    assert (lin[1:] < lin[:-1]).all() and (cos[1:] < cos[:-1]).all()
    # Nichol & Dhariwal: the cosine schedule destroys information more slowly in the middle
    assert cos[500] > lin[500] + 0.1
    # Ho et al.'s linear betas, scaled by 1000 / T for other T
    betas = D.make_scheduler("ddpm", "linear", 100).betas
    assert betas[0] == pytest.approx(1e-3) and betas[-1] == pytest.approx(0.2)


def _moments_ok(x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> bool:
    """Sample mean within 4 standard errors and sample variance within 3% of the given ones."""
    n = len(x)
    return bool(torch.allclose(x.mean(0), mean, atol=float(4 * (var / n).sqrt().max()))
                and torch.allclose(x.var(0), var, rtol=0.03))


def _iterate(abar: torch.Tensor, x0: torch.Tensor, t: int, n: int, g: torch.Generator, step=D.q_step) -> torch.Tensor:
    x = x0.expand(n, len(x0)).clone()
    for s in range(t + 1):  # x_0 -> x_t applies steps 0..t
        x = step(abar, x, s, torch.randn(x.shape, generator=g, dtype=torch.float64))
    return x


def test_closed_form_forward_process_matches_iterated_single_steps():
    """x_t drawn in closed form from x_0 has the mean and variance of t single noising steps."""
    abar = D.alphas_cumprod("linear", 1000).double()
    x0 = torch.tensor([0.8, -0.3, 0.0], dtype=torch.float64)
    n, t = 40_000, 300
    g = _gen(1)
    iterated = _iterate(abar, x0, t, n, g)
    closed = D.q_sample(abar, x0.expand(n, 3).reshape(n, 3, 1, 1), torch.full((n,), t),
                        torch.randn(n, 3, 1, 1, generator=g, dtype=torch.float64)).reshape(n, 3)
    mean, var = abar[t].sqrt() * x0, (1 - abar[t]).expand(3)
    assert _moments_ok(iterated, mean, var) and _moments_ok(closed, mean, var)
    # the check can fail: a step that forgets to shrink the signal, or closed form at the wrong t
    def no_shrink(abar, x, s, noise):
        return x + (1 - abar[s] / (abar[s - 1] if s > 0 else 1.0)).sqrt() * noise
    assert not _moments_ok(_iterate(abar, x0, t, n, g, no_shrink), mean, var)
    off = D.q_sample(abar, x0.expand(n, 3).reshape(n, 3, 1, 1), torch.full((n,), t + 20),
                     torch.randn(n, 3, 1, 1, generator=g, dtype=torch.float64)).reshape(n, 3)
    assert not _moments_ok(off, mean, var)


# ---------------------------------------------------------------------------------------------
# Training


def _toy(n: int = 256, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two trivially separable classes of 8x8 images in [0, 1]: dark (class 0) and bright (class 1)."""
    g = _gen(seed)
    y = torch.arange(n) % 2
    x = (0.15 + 0.7 * y.float()).reshape(-1, 1, 1, 1) + 0.05 * torch.randn(n, 1, 8, 8, generator=g)
    return x.clamp(0, 1), y


def _unet(num_classes: int = 0, seed: int = 0) -> UNet:
    return seeded_init(lambda: UNet(1, 8, (1, 2), num_classes, emb_dim=32), _gen(seed))


def _train(model, x, y, steps, T=100, schedule="linear", p_uncond=0.1, seed=0, lr=3e-3):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    step = D.DiffusionStep(model, D.alphas_cumprod(schedule, T), opt, _gen(seed), p_uncond)
    data = D.to_model(x)
    order = _gen(seed + 1)
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, len(data), (64,), generator=order)
        losses.append(float(step(data[idx], None if y is None else y[idx], 64)))
    return losses


def test_the_loss_falls_on_a_toy_set():
    x, _ = _toy()
    losses = _train(_unet(), x, None, 300)
    first, last = sum(losses[:30]) / 30, sum(losses[-30:]) / 30
    assert last < 0.6 * first, (first, last)


def test_the_stage_step_is_a_hand_written_ddpm_step():
    """DiffusionStep = Ho et al.'s Algorithm 1 written out (and the benchmark's baseline)."""
    x, y = _toy(64)
    a, b = _unet(10), _unet(10)
    abar = D.alphas_cumprod("cosine", 50)
    opt_a, opt_b = torch.optim.Adam(a.parameters(), 1e-3), torch.optim.Adam(b.parameters(), 1e-3)
    step = D.DiffusionStep(a, abar, opt_a, _gen(5), p_uncond=0.3)
    g = _gen(5)
    x0 = D.to_model(x)
    for _ in range(3):
        step(x0, y, 64)
        t = torch.randint(0, 50, (64,), generator=g)
        noise = torch.randn(x0.shape, generator=g)
        drop = torch.rand(64, generator=g) < 0.3
        yy = torch.where(drop, torch.full_like(y, 10), y)
        ab = abar[t].reshape(-1, 1, 1, 1)
        loss = F.mse_loss(b(ab.sqrt() * x0 + (1 - ab).sqrt() * noise, t, yy), noise)
        opt_b.zero_grad()
        loss.backward()
        opt_b.step()
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.allclose(pa, pb, atol=1e-6)


def test_ema_moves_toward_the_model_after_a_warm_up():
    assert D.ema_decay_at(0, 0.999) == pytest.approx(0.1) and D.ema_decay_at(10**6, 0.999) == 0.999
    a, b = _unet(seed=0), _unet(seed=1)
    ema = D.ema_copy(a)
    D.ema_update(ema, b, 0.9)
    for pe, pa, pb in zip(ema.parameters(), a.parameters(), b.parameters()):
        assert torch.allclose(pe, 0.9 * pa + 0.1 * pb, atol=1e-6)
        assert not pe.requires_grad


def test_training_snapshot_and_log(tmp_path):
    x, y = _toy(128)
    model = _unet(10)
    step = D.DiffusionStep(model, D.alphas_cumprod("linear", 20), torch.optim.Adam(model.parameters(), 1e-3), _gen(),
                           0.1, D.ema_copy(model), 0.9)
    hist = D.train_diffusion(step, D.to_model(x), y, 2, 32, _gen(1), log_every=3, snapshot_iters=5)
    assert hist.iters == 8 and [r["iter"] for r in hist.log] == [3, 6, 8]
    assert hist.snapshot is not None and hist.snapshot_seconds > 0 and len(hist.epoch_seconds) == 2
    with pytest.raises(ValueError, match="fewer than one batch"):
        D.train_diffusion(step, D.to_model(x[:10]), y[:10], 1, 32, _gen(1))
    with pytest.raises(ValueError, match="'diffusion.snapshot_iters' = 9 exceeds the 8 training iterations"):
        D.train_diffusion(step, D.to_model(x), y, 2, 32, _gen(1), snapshot_iters=9)


def test_a_u_net_too_deep_for_its_data_is_refused():
    from types import SimpleNamespace

    from advgen.generative.diffusion_run import fit_diffusion

    spec = SimpleNamespace(base=4, mults=[1, 2, 2], num_classes=0, schedule="linear", space="latent")
    ae = seeded_init(lambda: Autoencoder((4, 7, 7), 8), _gen())
    with pytest.raises(ValueError, match="'diffusion.configs.<name>.mults' has 3 levels.*7x7; use at most 1 levels"):
        fit_diffusion(spec, torch.rand(64, 1, 28, 28), None, ae, T=10, epochs=1, batch_size=32, lr=1e-3, ema_decay=0.9,
                      p_uncond=0.0, log_every=5, snapshot_iters=0, generator=_gen(), device=torch.device("cpu"))


# ---------------------------------------------------------------------------------------------
# Sampling


def test_ddim_eta0_depends_only_on_x_T_and_eta1_draws_noise():
    model = _unet()
    x_T = torch.randn(6, 1, 8, 8, generator=_gen(9))
    run = lambda eta, seed: D.sample(model, D.SamplerSpec("ddim", 10, eta), "linear", 100, (1, 8, 8), 6,
                                     _gen(seed), x_T=x_T)[0]
    assert torch.equal(run(0.0, 1), run(0.0, 2))  # eta = 0: deterministic given x_T, whatever the generator
    assert not torch.allclose(run(1.0, 1), run(1.0, 2), atol=1e-3)  # eta = 1: the generator's noise matters
    assert torch.equal(run(1.0, 1), run(1.0, 1))  # ... reproducibly
    a, _ = D.sample(model, D.SamplerSpec("ddim", 10, 0.0), "linear", 100, (1, 8, 8), 6, _gen(3))
    b, _ = D.sample(model, D.SamplerSpec("ddim", 10, 0.0), "linear", 100, (1, 8, 8), 6, _gen(3))
    assert torch.equal(a, b)  # x_T drawn from the generator: a fixed seed gives the same samples


def test_sampler_steps_batches_and_trajectory():
    model = _unet()
    x, strip = D.sample(model, D.SamplerSpec("ddpm", 20), "cosine", 20, (1, 8, 8), 7, _gen(), batch_size=4, frames=5)
    assert x.shape == (7, 1, 8, 8) and len(strip) == 5 and strip[0].shape == (4, 1, 8, 8)
    assert torch.equal(strip[-1], x[:4])  # the last frame is x_0
    assert strip[0].std() > 0.8  # the first is x_T ~ N(0, I)
    _, short = D.sample(model, D.SamplerSpec("ddim", 3), "cosine", 20, (1, 8, 8), 2, _gen(), frames=11)
    assert len(short) == 4  # x_T and the three steps' outputs: no more frames than steps


@pytest.mark.parametrize("spec, needle", [
    (D.SamplerSpec("ddim", 0), "steps must lie in \\[1, T = 20\\], found 0"),
    (D.SamplerSpec("ddim", 21), "steps must lie in \\[1, T = 20\\], found 21"),
    (D.SamplerSpec("ddpm", 10), "takes every one of the T = 20 steps"),
    (D.SamplerSpec("ddim", 5, 1.5), "eta must lie in \\[0, 1\\], found 1.5"),
    (D.SamplerSpec("euler", 5), "unknown sampler 'euler'"),
])
def test_bad_sampler_settings_are_refused(spec, needle):
    with pytest.raises(ValueError, match=needle):
        D.sample(_unet(), spec, "linear", 20, (1, 8, 8), 2, _gen())


def test_bad_schedule_t_scale_and_labels_are_refused():
    with pytest.raises(ValueError, match="unknown noise schedule 'sigmoid'"):
        D.make_scheduler("ddpm", "sigmoid", 100)
    with pytest.raises(ValueError, match="T \\(diffusion steps\\) must be >= 1, found 0"):
        D.make_scheduler("ddpm", "linear", 0)
    cond = _unet(2)
    with pytest.raises(ValueError, match="guidance scale must be >= 0, found -1"):
        D.sample(cond, D.SamplerSpec("ddim", 2), "linear", 20, (1, 8, 8), 2, _gen(), torch.tensor([0, 1]), -1)
    with pytest.raises(ValueError, match="class labels must lie in \\[0, 2\\), found \\[0, 2\\]"):
        D.sample(cond, D.SamplerSpec("ddim", 2), "linear", 20, (1, 8, 8), 2, _gen(), torch.tensor([0, 2]), 3)
    with pytest.raises(ValueError, match="class labels were given to an unconditional model"):
        D.sample(_unet(), D.SamplerSpec("ddim", 2), "linear", 20, (1, 8, 8), 2, _gen(), torch.tensor([0, 1]), 3)


def test_guidance_formula():
    class Fake(torch.nn.Module):
        num_classes = 3

        def forward(self, x, t, y):  # eps = label value (null = 3)
            return y.float().reshape(-1, 1, 1, 1).expand_as(x) if y is not None else torch.full_like(x, 3.0)

    x, t, y = torch.zeros(2, 1, 2, 2), torch.zeros(2, dtype=torch.long), torch.tensor([0, 1])
    assert torch.equal(D.guided_eps(Fake(), x, t, y, 0.0), torch.full_like(x, 3.0))
    assert torch.equal(D.guided_eps(Fake(), x, t, y, 1.0)[:, 0, 0, 0], torch.tensor([0.0, 1.0]))
    # 3 + 2 (y - 3)
    assert torch.equal(D.guided_eps(Fake(), x, t, y, 2.0)[:, 0, 0, 0], torch.tensor([-3.0, -1.0]))


def test_a_conditional_model_produces_the_requested_class():
    """Trained on dark (0) and bright (1) images, guided samples come out in the requested class."""
    x, y = _toy(512)
    model = _unet(2, seed=3)
    _train(model, x, y, 1000, T=50, p_uncond=0.2, seed=3)  # 400 steps passed only through the DDIM clipping bug
    labels = torch.tensor([0, 1] * 16)
    z, _ = D.sample(model, D.SamplerSpec("ddim", 20), "linear", 50, (1, 8, 8), 32, _gen(4), labels, 3.0)
    brightness = D.to_image(z).mean((1, 2, 3))
    predicted = (brightness > 0.5).long()
    assert (predicted == labels).float().mean() >= 0.9, brightness


def test_balanced_labels():
    assert balanced_labels(7, 3).tolist() == [0, 1, 2, 0, 1, 2, 0]


# ---------------------------------------------------------------------------------------------
# Autoencoder and latent space


def test_latent_shapes():
    assert check_latent_shape([4, 7, 7]) == (4, 7, 7) and check_latent_shape([2, 14, 14]) == (2, 14, 14)
    for bad, needle in (([4, 8, 8], "h = w in \\[7, 14\\]"), ([4, 7, 14], "h = w"), ([4, 7], "three positive")):
        with pytest.raises(ValueError, match=needle):
            check_latent_shape(bad)
    ae = Autoencoder((3, 14, 14), 8)
    assert ae.encode(torch.zeros(2, 1, 28, 28)).shape == (2, 3, 14, 14)


def test_autoencoder_learns_and_scales_its_latents():
    g = _gen()
    x = (torch.rand(4, 1, 7, 7, generator=g).repeat_interleave(32, 0) > 0.5).float()
    x = F.interpolate(x, size=28)  # 4 blocky patterns, 128 images
    ae = seeded_init(lambda: Autoencoder((4, 7, 7), 8), _gen(1))
    before = reconstruction_scores(ae, x)[1]["mse"]
    fit = fit_autoencoder(ae, x, 30, 32, 3e-3, _gen(2), kl_weight=1e-4)
    rec, scores = reconstruction_scores(ae, x)
    assert scores["mse"] < 0.3 * before and rec.shape == x.shape
    assert fit.log[-1]["train_mse"] < fit.log[0]["train_mse"]
    z = model_space(x, ae)
    # each channel standardised on its own: mean 0, standard deviation 1 over the training set
    assert z.shape == (128, 4, 7, 7)
    assert torch.allclose(z.mean(dim=(0, 2, 3)), torch.zeros(4), atol=1e-4)
    assert torch.allclose(z.std(dim=(0, 2, 3)), torch.ones(4), atol=1e-3)
    raw = ae.posterior(x)[0]
    assert not torch.allclose(raw.std(dim=(0, 2, 3)), raw.std(dim=(0, 2, 3)).mean().expand(4), rtol=0.05)  # scales differ
    assert torch.allclose(to_images(z, ae), rec, atol=1e-5)


def test_the_kl_term_is_the_closed_form_kl_to_a_standard_normal():
    from advgen.generative.autoencoder import kl_to_standard_normal

    g = _gen(3)
    mean, logvar = torch.randn(2, 4, 7, 7, generator=g), torch.randn(2, 4, 7, 7, generator=g)
    ref = torch.distributions.kl_divergence(torch.distributions.Normal(mean, (0.5 * logvar).exp()),
                                            torch.distributions.Normal(0.0, 1.0)).mean()
    assert float(kl_to_standard_normal(mean, logvar)) == pytest.approx(float(ref), rel=1e-5)
    assert float(kl_to_standard_normal(torch.zeros(3), torch.zeros(3))) == 0.0


def test_the_autoencoder_loss_adds_the_weighted_kl_to_the_sample_mse():
    from advgen.generative.autoencoder import ae_loss, kl_to_standard_normal

    ae = seeded_init(lambda: Autoencoder((4, 7, 7), 8), _gen(1))
    x = torch.rand(8, 1, 28, 28, generator=_gen(2))
    total, mse = ae_loss(ae, x, 0.5, _gen(5))
    mean, logvar = ae.posterior(x)
    z = mean + (0.5 * logvar).exp() * torch.randn(mean.shape, generator=_gen(5))  # the same posterior sample
    assert float(mse) == pytest.approx(float(F.mse_loss(ae.decoder(z), x)), rel=1e-5)
    assert float(total) == pytest.approx(float(mse) + 0.5 * float(kl_to_standard_normal(mean, logvar)), rel=1e-5)


def test_the_learning_rate_warms_up_linearly_then_stays():
    from advgen.generative.diffusion_run import warmup_schedule

    opt = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=1e-3)
    sched = warmup_schedule(opt, 4)
    lrs = []
    for _ in range(6):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3])


def test_the_block_embedding_goes_through_silu_before_its_projection():
    """Ho et al. and diffusers: emb -> SiLU -> Linear, added after the first convolution."""
    from advgen.generative.unet import ResBlock

    block = ResBlock(4, 16, 8)
    seen = []
    block.emb.register_forward_hook(lambda m, inp, out: seen.append(inp[0]))
    x, emb = torch.randn(2, 4, 6, 6, generator=_gen(0)), torch.randn(2, 8, generator=_gen(1)) * 3
    block(x, emb)
    assert torch.equal(seen[0], F.silu(emb))


def test_training_stops_once_the_curve_flattens_but_not_before_the_snapshot():
    from advgen.generative.curve import CurvePoint

    x = D.to_model(_toy(128)[0])  # 2 batches of 64 per epoch
    fids = {1: (100, 95, 105), 2: (60, 50, 70), 3: (58, 48, 68), 4: (57, 47, 67), 5: (56, 46, 66)}
    def run(snapshot_iters, window=3):
        model = _unet()
        step = D.DiffusionStep(model, D.alphas_cumprod("linear", 50), torch.optim.Adam(model.parameters()), _gen(), 0.0,
                               D.ema_copy(model))
        return D.train_diffusion(step, x, None, 5, 64, _gen(1), log_every=1, snapshot_iters=snapshot_iters,
                                 fid_fn=lambda e: CurvePoint(e, *fids[e]), converge_window=window)
    h = run(0)
    assert h.converged_at == 4 and h.epochs == 4 and h.iters == 8 and len(h.fid) == 4
    assert run(0, window=0).epochs == 5  # no stopping rule: the whole budget
    h = run(9)  # the snapshot is at iteration 9, in epoch 5
    assert h.converged_at == 5 and h.snapshot is not None


# ---------------------------------------------------------------------------------------------
# Files


def test_network_round_trip_and_bad_files(tmp_path):
    model = _unet(2)
    save_module(model, tmp_path, "denoiser", {"produced_by": "diffusion",
                                             "arch_kwargs": {"channels": 1, "base": 8, "mults": [1, 2], "num_classes": 2,
                                                             "emb_dim": 32}})
    build = lambda kw: UNet(kw["channels"], kw["base"], tuple(kw["mults"]), kw["num_classes"], kw["emb_dim"])
    back = load_module(tmp_path, "denoiser", "diffusion", build)
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([1, 2])
    assert torch.equal(back(x, t, None), model.eval()(x, t, None))
    with pytest.raises(ValueError, match="produced by 'autoencoder'"):
        load_module(tmp_path, "denoiser", "autoencoder", build)
    weights = tmp_path / "denoiser.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x00")
    with pytest.raises(ValueError, match="does not match the sidecar"):
        load_module(tmp_path, "denoiser", "diffusion", build)
    with pytest.raises(FileNotFoundError, match="snapshot.json: not found"):
        load_module(tmp_path, "snapshot", "diffusion", build)


def test_sample_sets_round_trip_as_uint8(tmp_path):
    x = torch.rand(5, 1, 4, 4, generator=_gen())
    save_samples(tmp_path, {"main": {"images": x, "labels": None, "role": "main"},
                            "g": {"images": x[:3], "labels": torch.tensor([0, 1, 2]), "role": "guidance", "scale": 3.0}})
    sets = load_samples(tmp_path)
    assert sets["main"]["n"] == 5 and sets["main"]["labels"] is None and sets["g"]["scale"] == 3.0
    assert (sets["main"]["images"] - x).abs().max() <= 0.5 / 255 + 1e-7
    assert sets["g"]["labels"].tolist() == [0, 1, 2]
    (tmp_path / "samples.safetensors").write_bytes((tmp_path / "samples.safetensors").read_bytes()[:-1] + b"\x01")
    with pytest.raises(ValueError, match="does not match"):
        load_samples(tmp_path)


# ---------------------------------------------------------------------------------------------
# Scores of sample sets (8x8 digits and their CNN)


def test_conditional_accuracy_and_small_sets_use_the_first_real_images(digits_cnn):
    model, xte, yte, (xtr, ytr) = digits_cnn
    from advgen.generative.evaluate import RealSets

    net = FeatureNet(model, "f" * 64)
    real = RealSets(xtr[:200], xte[:200], yte[:200], extract(net, xtr[:200]))
    s = Settings(200, 0, 10, 10, 5, 50, 3, 0.01, 10, 10, 11, 0.02)
    from advgen.generative.features import classify

    pred = classify(net, xte[:100]).argmax(1)
    right = evaluate_samples(xte[:100], pred, net, real, s, _gen(), 0)
    wrong = evaluate_samples(xte[:100], (pred + 1) % 10, net, real, s, _gen(), 0)
    assert right["conditional_accuracy"] == 1.0 and wrong["conditional_accuracy"] == 0.0
    assert right["n"] == 100 and right["coverage"]["classes_covered"] >= 8
    with pytest.raises(ValueError, match="exceeds evaluate_generative's N = 200"):
        evaluate_samples(xtr[:300], None, net, real, s, _gen(), 0)


# ---------------------------------------------------------------------------------------------
# Params


def _error(edit) -> str:
    return params_error(PARAMS, edit)


@pytest.mark.parametrize("edit, needle", [
    (lambda p: p["profiles"]["default"]["diffusion"].update(T=0), "'profiles.default.diffusion.T' must be >= 1, found 0"),
    (lambda p: p["profiles"]["smoke"]["diffusion"]["sweep"][1].update(steps=50),
     "'diffusion.sweep[1]' steps must be <= T = 20, found 50"),
    (lambda p: p["profiles"]["smoke"]["diffusion"]["sweep"][1].update(steps=0),
     "'diffusion.sweep[1].steps' must be >= 1, found 0"),
    (lambda p: p["profiles"]["smoke"]["diffusion"]["sweep"][0].update(steps=10),
     "the ancestral ddpm sampler takes all T = 20 steps"),
    (lambda p: p["profiles"]["smoke"]["diffusion"]["main_sampler"].update(sampler="euler"),
     "'diffusion.main_sampler.sampler' must be one of ['ddim', 'ddpm']"),
    (lambda p: p["profiles"]["smoke"]["diffusion"]["main_sampler"].update(eta=1.5),
     "'diffusion.main_sampler.eta' must lie in [0, 1], found 1.5"),
    (lambda p: p["diffusion"]["configs"]["cosine"].update(schedule="sigmoid"),
     "'diffusion.configs.cosine.schedule' must be one of ['cosine', 'linear']"),
    (lambda p: p["diffusion"]["configs"]["latent"].update(guidance=True, conditional=False),
     "'diffusion.configs.latent.guidance' needs conditional: true"),
    (lambda p: p["diffusion"].update(guidance_scales=[0, -1]), "'diffusion.guidance_scales' must be scales >= 0"),
    (lambda p: p["diffusion"].update(guidance_scales=[0, 3, 3]), "'diffusion.guidance_scales' names a scale twice"),
    (lambda p: p["profiles"]["smoke"]["diffusion"].update(snapshot_iters=-1),
     "'profiles.smoke.diffusion.snapshot_iters' must be >= 0, found -1"),
    (lambda p: p["diffusion"].update(p_uncond=1.0), "'diffusion.p_uncond' must lie in [0, 1), found 1.0"),
    (lambda p: p["autoencoder"].update(latent=[4, 8, 8]), "'autoencoder.latent' the autoencoder maps 28x28 images"),
    (lambda p: p["autoencoder"].update(latent=[4, 7]), "'autoencoder.latent' must be three positive integers"),
    (lambda p: p["evaluate_generative"].update(diffusion=["linear", "ddpm"]),
     "'evaluate_generative.diffusion' names ['ddpm'], which are not diffusion configs"),
    (lambda p: p["profiles"]["smoke"]["diffusion"].update(n_sample=500),
     "'diffusion.n_sample' = 500 exceeds 'evaluate_generative.n' = 200"),
])
def test_diffusion_params_are_checked(edit, needle):
    assert needle in _error(edit)


def test_plan_lists_every_set_in_drawing_order():
    cfg = load_section(DiffusionConfig, PARAMS, "diffusion", "default")
    plan = sample_plan(cfg, "linear")
    names = list(plan)
    assert names[0] == "ddim50_eta0" and plan[names[0]]["role"] == "main" and plan[names[0]]["n"] == 2000
    # a conditional model's main set is conditional (guidance 1, balanced classes); its null label a set of its own
    assert plan["ddim50_eta0"]["guided"] and plan["ddim50_eta0"]["scale"] == 1.0
    assert names[1] == "uncond_ddim50_eta0" and plan[names[1]]["role"] == "unconditional" and "guided" not in plan[names[1]]
    assert names[2] == "snapshot_ddim50_eta0" and "guided" not in plan[names[2]]
    assert plan["sweep_ddpm1000"]["frames"] == 11 and "frames" not in plan["ddim50_eta0"]
    assert [plan[k]["scale"] for k in names if k.startswith("guidance")] == [0.0, 1.0, 3.0, 5.0]
    assert len([k for k in names if k.startswith("sweep_")]) == 11
    assert list(sample_plan(cfg, "latent")) == ["ddim50_eta0", "uncond_ddim50_eta0"]
    assert sample_plan(cfg, "latent")["ddim50_eta0"]["frames"] == 11
    params = copy.deepcopy(PARAMS)
    params["diffusion"]["configs"]["latent"]["conditional"] = False
    unconditional = sample_plan(load_section(DiffusionConfig, params, "diffusion", "default"), "latent")
    assert list(unconditional) == ["ddim50_eta0"] and "guided" not in unconditional["ddim50_eta0"]
