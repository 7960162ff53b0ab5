"""GAN losses and training: minimax, non-saturating and WGAN-GP, k discriminator steps per
generator step, data-parallel under torchrun.

Losses are written on D's logits l (D(x) = sigmoid(l)) so that they stay finite where the
probabilities saturate:

* discriminator (both JS losses): ``-[log D(x) + log(1 - D(G(z)))] = softplus(-l_real) + softplus(l_fake)``
* ``minimax`` generator (Goodfellow et al. 2014, saturating): ``log(1 - D(G(z))) = -softplus(l_fake)``
* ``non_saturating`` generator (the same paper's fix): ``-log D(G(z)) = softplus(-l_fake)``
* ``wgan_gp`` (Gulrajani et al. 2017): critic ``E[f(G(z))] - E[f(x)] + lambda E[(||grad f(x_hat)|| - 1)^2]``,
  generator ``-E[f(G(z))]``.

d/dl of the minimax generator loss is ``-sigmoid(l) = -D``, of the non-saturating one
``-(1 - D)``: at D(G(z)) -> 0 the first vanishes and the second does not (claim C11).
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..training import rank_world
from .curve import CurvePoint, ema_decay_at, ema_update, flattened
from ..utils import quiet

LOSSES = ("minimax", "non_saturating", "wgan_gp")


def d_loss(loss: str, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """The discriminator's (critic's) loss from logits (B,), without WGAN-GP's penalty."""
    if loss == "wgan_gp":
        return fake_logits.mean() - real_logits.mean()
    if loss in ("minimax", "non_saturating"):
        return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
    raise ValueError(f"unknown GAN loss {loss!r}; expected one of {list(LOSSES)}")


def g_loss(loss: str, fake_logits: torch.Tensor) -> torch.Tensor:
    """The generator's loss from D's logits on its samples (B,)."""
    if loss == "minimax":
        return -F.softplus(fake_logits).mean()  # log(1 - D(G(z)))
    if loss == "non_saturating":
        return F.softplus(-fake_logits).mean()  # -log D(G(z))
    if loss == "wgan_gp":
        return -fake_logits.mean()
    raise ValueError(f"unknown GAN loss {loss!r}; expected one of {list(LOSSES)}")


def gradient_penalty(d: nn.Module, real: torch.Tensor, fake: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Gulrajani et al.'s penalty E[(||grad_x f(x_hat)||_2 - 1)^2] at x_hat = eps x + (1 - eps) G(z)
    on random segments between real and fake images (B, C, H, W); ``eps`` (B,) in [0, 1]."""
    eps = eps.reshape(-1, 1, 1, 1).to(real.device)
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    grad, = torch.autograd.grad(d(x_hat).sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).square().mean()


def grad_norm(params: list[torch.Tensor]) -> torch.Tensor:
    """L2 norm of the gradients held by ``params`` (0 for those without one)."""
    norms = [p.grad.norm() for p in params if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack(norms)) if norms else torch.zeros(())


def both_generator_grads(g: nn.Module, d: nn.Module, z: torch.Tensor) -> tuple[float, float, float]:
    """At one state and one batch of codes z (B, z_dim): the norm of the gradient reaching G's
    parameters under the minimax and under the non-saturating loss, and mean D(G(z)).
    Leaves no gradients behind."""
    params = [p for p in g.parameters() if p.requires_grad]
    logits = d(g(z))
    mm = torch.autograd.grad(g_loss("minimax", logits), params, retain_graph=True)
    ns = torch.autograd.grad(g_loss("non_saturating", logits), params)
    norm = lambda gs: float(torch.linalg.vector_norm(torch.stack([t.norm() for t in gs])))  # noqa: E731
    return norm(mm), norm(ns), float(torch.sigmoid(logits.detach()).mean())


def _allreduce_grads(module: nn.Module, world: int) -> None:
    """Average parameter gradients over ranks (plain data parallelism, which, unlike DDP's
    reducer, also works through the double backward of the gradient penalty)."""
    if world == 1:
        return
    for p in module.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= world


@dataclass
class StepStats:
    """Per-step figures, kept as tensors on the device (no host sync inside the loop)."""

    d_loss: torch.Tensor
    real_logit: torch.Tensor  # mean D logit on real images
    fake_logit: torch.Tensor  # mean D logit on generated images
    d_real: torch.Tensor  # mean D(x) = sigmoid(logit)
    d_fake: torch.Tensor  # mean D(G(z))


class GANStep:
    """One discriminator step and one generator step of a GAN: what the training loop and the
    throughput benchmark both call.

    Args:
        g, d: the generator (B, z_dim) -> (B, C, H, W) and the discriminator -> logits (B,).
        loss: one of :data:`LOSSES`.
        opt_g, opt_d: their optimizers.
        gp_weight: lambda of WGAN-GP's penalty (ignored by the other losses).
        generator: CPU ``torch.Generator`` for codes and the penalty's mixing weights.
    Under torchrun each rank passes its share of the batch and gradients are averaged.
    """

    def __init__(self, g: nn.Module, d: nn.Module, loss: str, opt_g: torch.optim.Optimizer,
                 opt_d: torch.optim.Optimizer, generator: torch.Generator, gp_weight: float = 10.0):
        if loss not in LOSSES:
            raise ValueError(f"unknown GAN loss {loss!r}; expected one of {list(LOSSES)}")
        self.g, self.d, self.loss, self.opt_g, self.opt_d = g, d, loss, opt_g, opt_d
        self.generator, self.gp_weight = generator, gp_weight
        self.z_dim = g.z_dim
        self.rank, self.world = rank_world()
        self.device = next(g.parameters()).device

    def codes(self, n: int) -> torch.Tensor:
        """n codes for this rank: every rank draws the whole batch and takes its stride."""
        return torch.randn(n, self.z_dim, generator=self.generator)[self.rank::self.world].to(self.device)

    def d_step(self, real: torch.Tensor, n: int) -> StepStats:
        """One update of D on ``real`` (this rank's share of a batch of n, (b, C, H, W))."""
        with torch.no_grad():
            fake = self.g(self.codes(n))
        real_logits, fake_logits = self.d(real), self.d(fake)
        loss = d_loss(self.loss, real_logits, fake_logits)
        if self.loss == "wgan_gp":  # every rank draws the whole batch's weights: the streams stay in step
            eps = torch.rand(n, generator=self.generator)[self.rank::self.world]
            loss = loss + self.gp_weight * gradient_penalty(self.d, real, fake, eps)
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        _allreduce_grads(self.d, self.world)
        self.opt_d.step()
        r, f = real_logits.detach(), fake_logits.detach()
        return StepStats(loss.detach(), r.mean(), f.mean(), torch.sigmoid(r).mean(), torch.sigmoid(f).mean())

    def g_step(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One update of G on a batch of n codes; returns (G loss, norm of the gradient reaching G)."""
        for p in self.d.parameters():
            p.requires_grad_(False)
        loss = g_loss(self.loss, self.d(self.g(self.codes(n))))
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        for p in self.d.parameters():
            p.requires_grad_(True)
        _allreduce_grads(self.g, self.world)
        norm = grad_norm(list(self.g.parameters()))
        self.opt_g.step()
        return loss.detach(), norm


@dataclass
class GANSchedule:
    """How long and how often. The budget is ``g_steps`` generator updates, D taking ``d_steps``
    steps (one real batch each) before each of them, so configs with different ``d_steps``
    compare at equal generator updates (their wall time is reported beside them)."""

    g_steps: int
    batch_size: int
    d_steps: int = 1
    log_every: int = 50  # G iterations between logged rows
    trace_iters: int = 200  # every one of the first G iterations is logged, with both losses' gradients
    fid_every: int = 500  # G iterations between FID points (and sample grids), and one at the end
    converge: bool = False  # stop once the FID curve has flattened
    converge_window: int = 3  # ... over its last this many points
    ema_decay: float = 0.0  # > 0: an EMA of G's weights, updated after every G step

    def __post_init__(self) -> None:
        if self.d_steps < 1:
            raise ValueError(f"d_steps must be >= 1, found {self.d_steps}")
        if self.g_steps < 1:
            raise ValueError(f"g_steps must be >= 1, found {self.g_steps}")


@dataclass
class GANHistory:
    log: list[dict] = field(default_factory=list)  # training curves
    fid: list[CurvePoint] = field(default_factory=list)  # FID curve
    g_iters: int = 0
    d_iters: int = 0
    epochs: float = 0.0  # passes of D over the real images
    converged_at: int | None = None  # the G iteration at which the curve flattened (None: the budget ended first)


RealBatch = Callable[[torch.Tensor], torch.Tensor]  # indices (b,) -> images (b, C, H, W) on the device
FidFn = Callable[[int], CurvePoint]  # G iteration -> a point of the curve for the current (EMA) G


def _batches(n_real: int, bs: int, rank: int, world: int, order_gen: torch.Generator):
    """Endless whole batches of indices (this rank's stride), a fresh order from ``order_gen``
    every pass over the data; yields (epoch, indices)."""
    if n_real < bs:
        raise ValueError(f"gan: {n_real} training images are fewer than one batch of {bs} (raise the profile's "
                         "gan.n_train)")
    epoch = 0
    while True:
        epoch += 1
        order = torch.randperm(n_real, generator=order_gen)
        for start in range(0, n_real - bs + 1, bs):  # whole batches only: every step sees bs images
            yield epoch, order[start:start + bs][rank::world]


def train_gan(step: GANStep, n_real: int, real_batch: RealBatch, schedule: GANSchedule,
              order_gen: torch.Generator, fid_fn: FidFn | None = None, ema: nn.Module | None = None,
              after_point: Callable[[int], None] | None = None) -> GANHistory:
    """Alternate ``schedule.d_steps`` D steps (one real batch each) with one G step, for
    ``schedule.g_steps`` G steps or until the FID curve flattens (``schedule.converge``).

    ``real_batch(idx)`` returns the real images of a batch (indices into 0..n_real-1 in an order
    drawn from ``order_gen``); ``fid_fn(g_iter)`` scores the current G (its EMA if ``ema``),
    rank 0 only, every ``fid_every`` G iterations and at the end; ``after_point(g_iter)`` runs
    after each point (sample grids). Logged rows hold: G iteration, images seen by D, D loss,
    G loss, mean D(x), mean D(G(z)), the mean D logits on both, and the norm of the gradient
    reaching G; during the first ``trace_iters`` G iterations also the gradient norms under both
    generator losses at the same state (JS losses); that extra forward runs G in training mode,
    so it also moves G's BatchNorm running statistics (a batch of the same code distribution;
    momentum 0.1 washes it out within a few dozen iterations). Under torchrun, rank 0 decides
    when the curve has flattened and the other ranks follow.
    """
    rank, world = step.rank, step.world
    hist = GANHistory()
    bs = schedule.batch_size
    pending: list[StepStats] = []
    bar = tqdm(total=schedule.g_steps, desc="G steps", disable=quiet() or rank > 0)
    batches = _batches(n_real, bs, rank, world, order_gen)
    while hist.g_iters < schedule.g_steps:
        epoch, idx = next(batches)
        pending.append(step.d_step(real_batch(idx), bs))
        hist.d_iters += 1
        if hist.d_iters % schedule.d_steps:
            continue
        trace = hist.g_iters < schedule.trace_iters and step.loss != "wgan_gp"
        if trace or hist.g_iters % schedule.log_every == 0:
            extra = {}
            if trace:
                mm, ns, _ = both_generator_grads(step.g, step.d, step.codes(bs))
                extra = {"g_grad_minimax": mm, "g_grad_non_saturating": ns}
            g_loss_v, g_norm = step.g_step(bs)
            hist.log.append(_row(hist, pending, g_loss_v, g_norm, bs, extra))
        else:
            step.g_step(bs)
        if ema is not None:
            ema_update(ema, step.g, ema_decay_at(hist.g_iters, schedule.ema_decay))
        pending = []
        hist.g_iters += 1
        bar.update(1)
        if fid_fn is not None and (hist.g_iters % schedule.fid_every == 0 or hist.g_iters == schedule.g_steps):
            if _point(hist, fid_fn, schedule, rank, world, after_point, step.device):
                break
    bar.close()
    hist.epochs = hist.d_iters * bs / n_real
    return hist


def _point(hist: GANHistory, fid_fn: FidFn, schedule: GANSchedule, rank: int, world: int,
           after_point: Callable[[int], None] | None, device: torch.device) -> bool:
    """Take a point of the FID curve (rank 0); True when training should stop (all ranks agree)."""
    stop = torch.zeros(1, device=device)
    if rank == 0:
        hist.fid.append(fid_fn(hist.g_iters))
        if after_point is not None:
            after_point(hist.g_iters)
        if schedule.converge and flattened(hist.fid, schedule.converge_window):
            hist.converged_at = hist.g_iters
            stop += 1
    if world > 1:
        dist.broadcast(stop, 0)
    return bool(stop.item())


def _row(hist: GANHistory, pending: list[StepStats], g_loss_v: torch.Tensor, g_norm: torch.Tensor,
         bs: int, extra: dict) -> dict:
    last = pending[-1]  # the D step just before this G step
    return {"g_iter": hist.g_iters, "images": hist.d_iters * bs, "d_loss": float(last.d_loss),
            "g_loss": float(g_loss_v), "d_real": float(last.d_real), "d_fake": float(last.d_fake),
            "real_logit": float(last.real_logit), "fake_logit": float(last.fake_logit),
            "g_grad_norm": float(g_norm), **extra}


def saturation_probe(g: nn.Module, d: nn.Module, real: torch.Tensor, steps: int, batch_size: int,
                     lr: float, betas: tuple[float, float], generator: torch.Generator) -> list[dict]:
    """C11 at initialisation: G frozen at its initial weights, a copy of D trained ``steps``
    discriminator steps to reject G's samples. Before each step (and after the last), on one
    fixed batch of codes: mean D(G(z)) and the norm of the gradient reaching G under the minimax
    and the non-saturating loss. ``real`` (N, C, H, W) on the device. G and D are left untouched."""
    g, d = copy.deepcopy(g), copy.deepcopy(d)
    opt = torch.optim.Adam(d.parameters(), lr=lr, betas=betas)
    device = next(g.parameters()).device
    z_probe = torch.randn(batch_size, g.z_dim, generator=generator).to(device)
    rows = []
    for s in range(steps + 1):
        mm, ns, d_fake = both_generator_grads(g, d, z_probe)
        rows.append({"d_step": s, "d_fake": d_fake, "g_grad_minimax": mm, "g_grad_non_saturating": ns,
                     "ratio": ns / mm if mm > 0 else None})  # None: no finite ratio (JSON has no inf)
        if s == steps:
            break
        idx = torch.randint(0, len(real), (batch_size,), generator=generator)
        with torch.no_grad():
            fake = g(torch.randn(batch_size, g.z_dim, generator=generator).to(device))
        loss = d_loss("non_saturating", d(real[idx.to(real.device)]), d(fake))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return rows


def saturation_curves(n: int = 99) -> list[dict]:
    """C11(a), analytic: both generator losses and their derivatives against D = D(G(z)) on (0, 1).

    minimax: log(1 - D), d/dD = -1 / (1 - D), d/dlogit = -D; non-saturating: -log D,
    d/dD = -1 / D, d/dlogit = -(1 - D). Through the sigmoid, the minimax gradient vanishes as
    D -> 0 (the gradient reaching G is the logit derivative times dlogit/dG)."""
    rows = []
    for i in range(1, n + 1):
        p = i / (n + 1)
        rows.append({"d_fake": p, "minimax_loss": math.log1p(-p), "minimax_grad": -1 / (1 - p),
                     "minimax_grad_logit": -p, "non_saturating_loss": -math.log(p),
                     "non_saturating_grad": -1 / p, "non_saturating_grad_logit": -(1 - p)})
    return rows
