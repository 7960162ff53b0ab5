"""The samplers of :func:`advgen.generative.diffusion.sample` against the math, with eps predictors
whose answers are known in closed form (no training).

Notation: abar_t = alphas_cumprod[t], x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, and an eps
predictor's implied x_0 is x0_hat = (x_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t). With clipping on
(pixels), a sampler must treat clip(x0_hat, -1, 1) as *the* prediction: DDIM has to re-derive its
eps from the clipped x0_hat, eps' = (x_t - sqrt(abar_t) clip(x0_hat)) / sqrt(1 - abar_t); mixing the
clipped x0_hat with the unclipped eps_hat adds sqrt(1 - abar_prev) sqrt(abar_t / (1 - abar_t))
(clip(x0_hat) - x0_hat) at every step, which pushes black pixels to grey more the more steps DDIM takes.

diffusers' DDIM (trailing spacing, ``set_alpha_to_one=False``) goes from t to t - T / k and ends
at the level abar_0, not at abar = 1: its output is x at level abar_0 (1 - abar_0 = 1e-3 at T = 100,
1e-4 at T = 1,000). DDPM's last step returns the clipped x0_hat itself.
"""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from advgen.generative import diffusion as D


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _level(abar: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """abar_t (B,) -> (B, 1, 1, 1), for broadcasting over (B, C, H, W)."""
    return abar[t].reshape(-1, 1, 1, 1)


class Scaled(nn.Module):
    """eps_hat(x_t, t) = factor * x_t: its x0_hat = x_t (1 - factor sqrt(1 - abar_t)) / sqrt(abar_t)
    leaves [-1, 1] for most pixels at high noise and for some at lower noise. Keeps its inputs."""

    def __init__(self, factor: float):
        super().__init__()
        self.factor, self.seen = factor, []

    def forward(self, x, t, y=None):
        self.seen.append((x.clone(), t.clone()))
        return self.factor * x


class PointMass(nn.Module):
    """The optimal eps predictor for data x_0 = c[ch] in each channel ch:
    eps*(x_t, t) = (x_t - sqrt(abar_t) c) / sqrt(1 - abar_t), so x0_hat = c at every step. With c
    beyond [-1, 1] it overshoots like a trained net on black or white pixels, and clipping turns
    it into the optimal predictor for the data clip(c)."""

    def __init__(self, abar: torch.Tensor, c: torch.Tensor):
        super().__init__()
        self.abar, self.c = abar, c.reshape(1, -1, 1, 1)  # (1, C, 1, 1)

    def forward(self, x, t, y=None):
        a = _level(self.abar, t)
        return (x - a.sqrt() * self.c) / (1 - a).sqrt()


# Toy data, one pixel per channel: 0 black background (x_0 = -1; the predictor overshoots to -1.2),
# 1 Gaussian N(MU, S^2), 2 black or white, P(x_0 = +1) = W.
OVERSHOOT, MU, S, W = -1.2, 0.2, 0.3, 0.3


class Toy(nn.Module):
    """The optimal eps predictor of the toy data per channel (B, 3, 1, 1), via its posterior mean
    E[x_0 | x_t]:

    * black, overshooting: x0_hat = -1.2 (clip: -1, the optimal one);
    * Gaussian: E[x_0 | x_t] = MU + sqrt(abar) S^2 (x_t - sqrt(abar) MU) / (abar S^2 + 1 - abar), i.e.
      eps* = sqrt(1 - abar) (x_t - sqrt(abar) MU) / (abar S^2 + 1 - abar);
    * two-point {-1, +1}: E[x_0 | x_t] = tanh(logit(W) / 2 + sqrt(abar) x_t / (1 - abar)).

    eps* = (x_t - sqrt(abar) E[x_0 | x_t]) / sqrt(1 - abar)."""

    def __init__(self, abar: torch.Tensor):
        super().__init__()
        self.abar = abar.double()

    def forward(self, x, t, y=None):
        a, xd = _level(self.abar, t), x.double()
        gauss = MU + a.sqrt() * S**2 * (xd[:, 1:2] - a.sqrt() * MU) / (a * S**2 + 1 - a)
        two = torch.tanh(0.5 * math.log(W / (1 - W)) + a.sqrt() * xd[:, 2:3] / (1 - a))
        x0 = torch.cat([torch.full_like(gauss, OVERSHOOT), gauss, two], 1)  # (B, 3, 1, 1)
        return ((xd - a.sqrt() * x0) / (1 - a).sqrt()).to(x.dtype)


def ddim_by_hand(eps_fn, x: torch.Tensor, abar: torch.Tensor, T: int, k: int, eta: float,
                 g: torch.Generator) -> torch.Tensor:
    """DDIM (Song et al. 2021, eq. 12 and 16) with clipping, trailing spacing t = T - 1, T - 1 - T/k, ...
    (k divides T):
    x0_hat = clip((x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t), -1, 1);
    eps' = (x_t - sqrt(abar_t) x0_hat) / sqrt(1 - abar_t);
    sigma = eta sqrt((1 - abar_prev) / (1 - abar_t)) sqrt(1 - abar_t / abar_prev);
    x_prev = sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev - sigma^2) eps' + sigma z, z ~ N(0, I) from g;
    abar_prev = abar_0 after the last step."""
    for t in range(T - 1, -1, -(T // k)):
        a, a_prev = abar[t], abar[max(t - T // k, 0)]
        tt = torch.full((len(x),), t, dtype=torch.long)
        x0 = ((x - (1 - a).sqrt() * eps_fn(x, tt)) / a.sqrt()).clamp(-1, 1)
        eps = (x - a.sqrt() * x0) / (1 - a).sqrt()
        sigma = eta * ((1 - a_prev) / (1 - a)).sqrt() * (1 - a / a_prev).sqrt()
        x = a_prev.sqrt() * x0 + (1 - a_prev - sigma**2).sqrt() * eps
        if eta > 0:
            x = x + sigma * torch.randn(x.shape, generator=g)
    return x


# ---------------------------------------------------------------------------------------------
# 1. DDIM steps against the closed form


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_steps_with_clipping_match_the_closed_form(eta):
    """Two DDIM steps of ``sample`` (T = 100, t = 99 -> 49 -> level abar_0), with an eps_hat whose
    x0_hat leaves [-1, 1], equal the hand-written update with the clipped x0_hat and the eps'
    re-derived from it (eta = 1: the same z from the same generator)."""
    T, k, model = 100, 2, Scaled(0.8)
    abar = D.alphas_cumprod("linear", T)
    sched = D.make_scheduler("ddim", "linear", T)
    sched.set_timesteps(k)
    assert [int(t) for t in sched.timesteps] == [99, 49]  # trailing: the first step starts at T - 1
    x_T = torch.randn(64, 1, 4, 4, generator=_gen(0))  # (B, C, H, W)
    got, _ = D.sample(model, D.SamplerSpec("ddim", k, eta), "linear", T, (1, 4, 4), 64, _gen(1), x_T=x_T)
    for x, t in model.seen:  # the clip is active at both steps, and not everywhere
        a = _level(abar, t)
        x0 = (x - (1 - a).sqrt() * model.factor * x) / a.sqrt()
        assert 0.05 < (x0.abs() > 1).float().mean() < 0.99, (int(t[0]), float((x0.abs() > 1).float().mean()))
    assert [int(t[0]) for _, t in model.seen] == [99, 49]
    want = ddim_by_hand(model, x_T, abar, T, k, eta, _gen(1))
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-5), float((got - want).abs().max())


# ---------------------------------------------------------------------------------------------
# 2. More DDIM steps must not drift away from the answer


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_does_not_drift_from_ddpm_as_steps_grow(eta):
    """Data x_0 = -1 (black) and +1 (white) in two channels, eps predictor overshooting to
    x0_hat = -1.2 and 1.1. Clipped, it is the optimal predictor, so DDPM-1000 returns exactly -1 and
    +1, and DDIM-k (any k) returns x at level abar_0: sqrt(abar_0) clip(c) plus noise of standard
    deviation sqrt(1 - abar_0) = 0.01. The mean of every DDIM-k, k = 10 to 250, stays within 4
    standard errors (0.0018) of it. (With the unclipped eps the error grew with k: 0.012, 0.045,
    0.24, 0.68 for eta = 0 and 0.0013, 0.0015, 0.020, 0.087 for eta = 1, at k = 10, 25, 100, 250.)"""
    T, n, c = 1000, 500, torch.tensor([-1.2, 1.1])
    abar = D.alphas_cumprod("linear", T)
    model = PointMass(abar, c)
    ddpm, _ = D.sample(model, D.SamplerSpec("ddpm", T), "linear", T, (2, 1, 1), n, _gen(0))
    assert torch.equal(ddpm, c.clamp(-1, 1).reshape(1, 2, 1, 1).expand(n, 2, 1, 1))
    want = abar[0].sqrt() * c.clamp(-1, 1)
    tol = 4 * (1 - abar[0]).sqrt() / n**0.5
    errors = []
    for k in (10, 25, 100, 250):
        x, _ = D.sample(model, D.SamplerSpec("ddim", k, eta), "linear", T, (2, 1, 1), n, _gen(k))
        errors.append(float((x.mean((0, 2, 3)) - want).abs().max()))
    assert max(errors) < tol, (errors, float(tol))


def test_ddim_eta0_is_the_exact_map_for_a_clipped_point_mass():
    """With x0_hat = clip(c) at every step, DDIM eta = 0 keeps eps' = (x_t - sqrt(abar_t) clip(c)) /
    sqrt(1 - abar_t) fixed, so for any k its output is, sample by sample,
    sqrt(abar_0) clip(c) + sqrt(1 - abar_0) (x_T - sqrt(abar_{T-1}) clip(c)) / sqrt(1 - abar_{T-1})."""
    T, n, c = 1000, 200, torch.tensor([-1.2, 1.1])
    abar = D.alphas_cumprod("linear", T)
    model, cc = PointMass(abar, c), c.clamp(-1, 1).reshape(1, 2, 1, 1)
    x_T = torch.randn(n, 2, 1, 1, generator=_gen(0))  # (B, C, H, W)
    want = abar[0].sqrt() * cc + (1 - abar[0]).sqrt() * (x_T - abar[-1].sqrt() * cc) / (1 - abar[-1]).sqrt()
    for k in (10, 100, 1000):
        x, _ = D.sample(model, D.SamplerSpec("ddim", k), "linear", T, (2, 1, 1), n, _gen(1), x_T=x_T)
        assert torch.allclose(x, want, atol=1e-4), (k, float((x - want).abs().max()))


# ---------------------------------------------------------------------------------------------
# 3. Toy data with the optimal predictor: the samples have the data's moments


def _target(spec: D.SamplerSpec, a0: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance per channel of the toy data as the sampler returns it: DDPM returns
    E[x_0 | x at level abar_0], clipped (black: -1; Gaussian: variance S^2 a0 S^2 / (a0 S^2 + 1 - a0);
    two-point: exact, its posterior is certain at 1 - a0 = 1e-4); DDIM returns x at level abar_0
    (mean sqrt(a0) m, variance a0 v + 1 - a0)."""
    mean = torch.tensor([-1.0, MU, 2 * W - 1], dtype=torch.float64)
    var = torch.tensor([0.0, S**2, 4 * W * (1 - W)], dtype=torch.float64)
    if spec.sampler == "ddpm":
        var[1] = S**2 * a0 * S**2 / (a0 * S**2 + 1 - a0)
        return mean, var
    return a0**0.5 * mean, a0 * var + 1 - a0


@pytest.mark.parametrize("spec", [D.SamplerSpec("ddpm", 1000), D.SamplerSpec("ddim", 1000, 0.0),
                                  D.SamplerSpec("ddim", 1000, 1.0), D.SamplerSpec("ddim", 250, 0.0)],
                         ids=lambda s: s.name)
def test_samples_of_the_optimal_predictor_have_the_data_moments(spec):
    """T = 1,000, linear schedule, clip on, 4,000 samples of the toy data (black background, Gaussian,
    black-or-white) from its optimal predictor: per channel the sample mean lies within 4 standard
    errors (s / sqrt(n)) of the target and the sample variance within 4 standard errors
    (sqrt((m4 - s^4) / n), m4 the sample's fourth central moment), plus 1e-6.

    The two-point channel never clips (its posterior mean lies in [-1, 1]), the Gaussian one rarely
    (0.4% of its mass lies above 1; clipping moves its moments by < 0.001), and both were right
    before; the black channel clips at every step: DDPM was right before (this case checks it), DDIM
    was not (its black pixels came out at -0.38 from DDIM-1000 eta 1, -0.32 from DDIM-250 and +2.02,
    white, from DDIM-1000 eta 0).

    The step counts are those whose own discretization error stays well inside the tolerance: with
    the exact predictor the Gaussian's variance comes out 2.5% low from DDPM-1000, 0.8% and 2.3% from
    DDIM-1000 eta 0 and 1, 3.2% from DDIM-250 eta 0, but 8% from DDIM-250 eta 1 and 29% from DDIM-25
    eta 0 (the schemes' own error, computed in closed form, not a bug; the tolerance is 9%)."""
    T, n = 1000, 4000
    abar = D.alphas_cumprod("linear", T)
    x, _ = D.sample(Toy(abar), spec, "linear", T, (3, 1, 1), n, _gen(3))
    x = x.double().reshape(n, 3)  # (B, C) with H = W = 1
    mean, var = _target(spec, float(abar[0]))
    m, v = x.mean(0), x.var(0)
    m4 = ((x - m) ** 4).mean(0)
    se_mean, se_var = (v / n).sqrt(), ((m4 - v**2).clamp(min=0) / n).sqrt()
    assert ((m - mean).abs() <= 4 * se_mean + 1e-6).all(), (m.tolist(), mean.tolist())
    assert ((v - var).abs() <= 4 * se_var + 1e-6).all(), (v.tolist(), var.tolist())
