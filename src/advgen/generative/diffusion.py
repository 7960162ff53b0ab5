"""Denoising diffusion: schedules, the training step, samplers and classifier-free guidance.

* **Forward process** (Ho et al. 2020): x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, eps ~ N(0, I),
  drawn in closed form for t uniform on {0, ..., T-1}; the network eps_theta(x_t, t, y) learns eps
  under the L2 loss.
* **Schedules** come from diffusers: ``linear`` (Ho et al.: beta from 1e-4 to 0.02 at T = 1,000,
  scaled by 1000 / T for other T) and ``cosine`` (Nichol & Dhariwal 2021, diffusers'
  ``squaredcos_cap_v2``).
* **Samplers** are diffusers' ``DDPMScheduler`` (ancestral, every one of the T steps) and
  ``DDIMScheduler`` (Song et al. 2021; eta = 0 deterministic, eta = 1 DDPM-like noise). DDIM
  uses "trailing" timestep spacing, so its first step starts from t = T - 1, pure noise, like
  DDPM's (Lin et al. 2024: the default "leading" spacing never visits the last timestep).
* **Classifier-free guidance** (Ho & Salimans 2022): the label is replaced by the null class with
  probability ``p_uncond`` during training; at sampling eps = eps(x, null) + s (eps(x, y) - eps(x, null)),
  diffusers' convention: s = 0 is the unconditional model, s = 1 the conditional one, s > 1 guided.

Images live in [-1, 1] inside the model (``to_model`` / ``to_image``); latents (C17) are the
autoencoder's posterior means standardised per channel (training-set mean and standard deviation).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..utils import quiet
from .curve import CurvePoint, ema_copy, ema_decay_at, ema_update, flattened  # noqa: F401  (re-exported)
from .gan import _allreduce_grads

SCHEDULES = {"linear": "linear", "cosine": "squaredcos_cap_v2"}
SAMPLERS = ("ddpm", "ddim")


def make_scheduler(sampler: str, schedule: str, T: int, clip: bool = True):
    """A fresh diffusers scheduler: ``sampler`` ddpm or ddim over ``schedule`` with T training steps.
    ``clip`` clips the predicted x_0 to [-1, 1] (pixel space; off for latents)."""
    from diffusers import DDIMScheduler, DDPMScheduler

    if schedule not in SCHEDULES:
        raise ValueError(f"unknown noise schedule {schedule!r}; expected one of {sorted(SCHEDULES)}")
    if T < 1:
        raise ValueError(f"T (diffusion steps) must be >= 1, found {T}")
    scale = 1000 / T  # keeps the linear schedule's total noise at other T (Nichol & Dhariwal)
    kw = dict(num_train_timesteps=T, beta_schedule=SCHEDULES[schedule], beta_start=min(1e-4 * scale, 0.5),
              beta_end=min(0.02 * scale, 0.999), clip_sample=clip, prediction_type="epsilon")
    if sampler == "ddpm":
        return DDPMScheduler(variance_type="fixed_small", **kw)
    if sampler == "ddim":
        return DDIMScheduler(timestep_spacing="trailing", set_alpha_to_one=False, **kw)
    raise ValueError(f"unknown sampler {sampler!r}; expected one of {list(SAMPLERS)}")


def alphas_cumprod(schedule: str, T: int) -> torch.Tensor:
    """abar_t for t = 0..T-1 (T,), float32, as diffusers computes it."""
    return make_scheduler("ddpm", schedule, T).alphas_cumprod.clone()


def q_sample(abar: torch.Tensor, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Closed-form forward process: x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise; x0 (B, C, H, W), t (B,)."""
    a = abar.to(x0.device)[t].reshape(-1, 1, 1, 1)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def q_step(abar: torch.Tensor, x_prev: torch.Tensor, t: int, noise: torch.Tensor) -> torch.Tensor:
    """One forward step x_{t-1} -> x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) noise (t >= 1;
    t = 0 is x_0 -> x_0's first noising with beta_0 = 1 - abar_0)."""
    beta = 1 - abar[t] / (abar[t - 1] if t > 0 else 1.0)
    return (1 - beta).sqrt() * x_prev + beta.sqrt() * noise


def to_model(x: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] -> the model's [-1, 1]."""
    return 2 * x - 1


def to_image(x: torch.Tensor) -> torch.Tensor:
    """The model's [-1, 1] -> images in [0, 1], clamped."""
    return ((x + 1) / 2).clamp(0, 1)


class DiffusionStep:
    """One training step of a DDPM noise predictor: what the training loop and the benchmark
    both call (Ho et al. 2020, Algorithm 1, with Ho & Salimans' label dropout).

    Args:
        model: eps_theta(x_t (B, C, H, W), t (B,), y (B,) or None) -> (B, C, H, W).
        abar: alphas_cumprod (T,) of the schedule.
        opt: the model's optimizer.
        generator: CPU ``torch.Generator`` for t, the noise and the label dropout.
        p_uncond: probability of replacing a label with the null class (``model.num_classes``);
            ignored for unconditional models.
        ema: an EMA copy of ``model`` updated after every step (None: no EMA).
        ema_decay: its decay, reached after a warm-up (:func:`ema_decay_at`).
        scheduler: a learning-rate scheduler stepped after every update (the warm-up), or None.
    Under torchrun each rank passes its share of the batch (every rank draws the whole batch's
    t and noise and takes its stride, so the streams stay in step) and gradients are averaged.
    """

    def __init__(self, model: nn.Module, abar: torch.Tensor, opt: torch.optim.Optimizer, generator: torch.Generator,
                 p_uncond: float = 0.1, ema: nn.Module | None = None, ema_decay: float = 0.999,
                 rank: int = 0, world: int = 1, scheduler: torch.optim.lr_scheduler.LRScheduler | None = None):
        self.model, self.opt, self.generator, self.p_uncond = model, opt, generator, p_uncond
        self.scheduler = scheduler
        self.ema, self.ema_decay, self.rank, self.world = ema, ema_decay, rank, world
        self.device = next(model.parameters()).device
        self.abar = abar.to(self.device)
        self.T = len(abar)
        self.num_classes = getattr(model, "num_classes", 0)
        self.steps = 0

    def draw(self, shape: tuple[int, ...], y: torch.Tensor | None):
        """t (b,), noise (b, C, H, W) and the (dropped) labels for this rank's share of a batch whose
        whole shape is ``shape``."""
        sl = slice(self.rank, None, self.world)
        t = torch.randint(0, self.T, shape[:1], generator=self.generator)[sl]
        noise = torch.randn(shape, generator=self.generator)[sl]
        drop = torch.rand(shape[0], generator=self.generator)[sl] < self.p_uncond
        if self.num_classes and y is not None:
            y = y.cpu()
            y = torch.where(drop, torch.full_like(y, self.num_classes), y)
        else:
            y = None
        return t.to(self.device), noise.to(self.device), (None if y is None else y.to(self.device))

    def __call__(self, x0: torch.Tensor, y: torch.Tensor | None, batch: int) -> torch.Tensor:
        """One update on x0 (this rank's share (b, C, H, W) of a batch of ``batch``) with labels y (b,).
        Returns the loss (a device tensor: no host sync)."""
        t, noise, y = self.draw((batch, *x0.shape[1:]), y)
        if x0.is_contiguous(memory_format=torch.channels_last):
            noise = noise.contiguous(memory_format=torch.channels_last)
        loss = F.mse_loss(self.model(q_sample(self.abar, x0, t, noise), t, y), noise)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        _allreduce_grads(self.model, self.world)
        self.opt.step()
        if self.scheduler is not None:
            self.scheduler.step()
        if self.ema is not None:
            ema_update(self.ema, self.model, ema_decay_at(self.steps, self.ema_decay))
        self.steps += 1
        return loss.detach()


@dataclass
class TrainHistory:
    log: list[dict] = field(default_factory=list)  # iteration, images seen, mean loss since last row
    iters: int = 0
    epoch_seconds: list[float] = field(default_factory=list)
    snapshot: dict[str, torch.Tensor] | None = None  # EMA weights at ``snapshot_iters``
    snapshot_seconds: float | None = None
    fid: list[CurvePoint] = field(default_factory=list)  # the FID curve, one point per epoch
    epochs: int = 0  # epochs run
    converged_at: int | None = None  # the epoch at which the curve flattened (None: the budget ended first)


def train_diffusion(step: DiffusionStep, x: torch.Tensor, y: torch.Tensor | None, epochs: int, batch_size: int,
                    order_gen: torch.Generator, log_every: int = 50, snapshot_iters: int = 0,
                    fid_fn: Callable[[int], CurvePoint] | None = None, converge_window: int = 0) -> TrainHistory:
    """At most ``epochs`` passes over x (N, C, H, W) on the device in whole batches of
    ``batch_size`` drawn in an order from ``order_gen``. Logs the mean loss every ``log_every``
    iterations; at iteration ``snapshot_iters`` (0: never) keeps a copy of the EMA weights and the
    training wall time so far (C15 at equal training wall time). After every epoch ``fid_fn(epoch)``
    (rank 0) adds a point to the FID curve; with ``converge_window`` > 0 training stops once the
    last that many points agree within their intervals (:func:`advgen.generative.curve.flattened`),
    though not before the snapshot is taken. Epoch seconds exclude the curve's sampling."""
    hist = TrainHistory()
    n = len(x)
    if n < batch_size:
        raise ValueError(f"diffusion: {n} training images are fewer than one batch of {batch_size}")
    total = epochs * (n // batch_size)
    if snapshot_iters > total:
        raise ValueError(f"params.yaml: the profile's 'diffusion.snapshot_iters' = {snapshot_iters} exceeds the {total} "
                         f"training iterations ({epochs} epoch(s) of {n} images in batches of {batch_size})")
    rank, world = step.rank, step.world
    bar = tqdm(total=epochs * (n // batch_size), desc="diffusion steps", disable=quiet() or rank > 0)
    losses: list[torch.Tensor] = []
    elapsed = 0.0
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        order = torch.randperm(n, generator=order_gen)
        for s in range(0, n - batch_size + 1, batch_size):
            idx = order[s:s + batch_size][rank::world].to(x.device)
            losses.append(step(x[idx], None if y is None else y[idx], batch_size))
            hist.iters += 1
            bar.update(1)
            if hist.iters % log_every == 0:
                hist.log.append({"iter": hist.iters, "images": hist.iters * batch_size,
                                 "loss": float(torch.stack(losses).mean())})
                losses = []
            if hist.iters == snapshot_iters:
                model = step.ema if step.ema is not None else step.model
                hist.snapshot = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
                hist.snapshot_seconds = elapsed + time.perf_counter() - start
        hist.epoch_seconds.append(time.perf_counter() - start)
        elapsed += hist.epoch_seconds[-1]
        hist.epochs = epoch
        if fid_fn is not None and _curve_point(hist, fid_fn, epoch, converge_window, snapshot_iters, step):
            break
    bar.close()
    if losses:
        hist.log.append({"iter": hist.iters, "images": hist.iters * batch_size, "loss": float(torch.stack(losses).mean())})
    return hist


def _curve_point(hist: TrainHistory, fid_fn: Callable[[int], CurvePoint], epoch: int, window: int,
                 snapshot_iters: int, step: DiffusionStep) -> bool:
    """Add the epoch's point to the curve (rank 0); True when training should stop (all ranks agree)."""
    stop = torch.zeros(1, device=step.device)
    if step.rank == 0:
        hist.fid.append(fid_fn(epoch))
        if window and flattened(hist.fid, window) and hist.iters >= snapshot_iters:
            hist.converged_at = epoch
            stop += 1
    if step.world > 1:
        import torch.distributed as dist

        dist.broadcast(stop, 0)
    return bool(stop.item())


def guided_eps(model: nn.Module, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None, scale: float) -> torch.Tensor:
    """eps(x, null) + scale (eps(x, y) - eps(x, null)); one network call when it is not guided
    (no labels, or scale 0 or 1), else one call on the doubled batch."""
    if y is None or scale == 0:
        return model(x, t, None)
    if scale == 1:
        return model(x, t, y)
    null = torch.full_like(y, model.num_classes)
    both = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null]))
    cond, uncond = both.chunk(2)
    return uncond + scale * (cond - uncond)


@dataclass
class SamplerSpec:
    """How to sample: ``sampler`` ddpm (all T steps) or ddim with ``steps`` and ``eta``."""

    sampler: str
    steps: int
    eta: float = 0.0

    @property
    def name(self) -> str:
        return f"ddpm{self.steps}" if self.sampler == "ddpm" else f"ddim{self.steps}_eta{self.eta:g}"

    def check(self, T: int) -> None:
        if self.sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {self.sampler!r}; expected one of {list(SAMPLERS)}")
        if not 1 <= self.steps <= T:
            raise ValueError(f"sampler {self.sampler} steps must lie in [1, T = {T}], found {self.steps}")
        if self.sampler == "ddpm" and self.steps != T:
            raise ValueError(f"the ancestral DDPM sampler takes every one of the T = {T} steps, found steps = {self.steps}")
        if not 0 <= self.eta <= 1:
            raise ValueError(f"DDIM eta must lie in [0, 1], found {self.eta}")


@torch.no_grad()
def sample(model: nn.Module, spec: SamplerSpec, schedule: str, T: int, shape: tuple[int, int, int], n: int,
           generator: torch.Generator, labels: torch.Tensor | None = None, scale: float = 0.0, clip: bool = True,
           batch_size: int = 500, frames: int = 0, device: torch.device | str = "cpu",
           x_T: torch.Tensor | None = None) -> tuple[torch.Tensor, list]:
    """n samples (n, *shape) in model space from x_T ~ N(0, I), by the reverse process of ``spec``.

    ``labels`` (n,) request classes (guidance ``scale``); None samples unconditionally.
    ``frames`` > 0 also returns, for the first batch, x_t at ``frames`` evenly spaced points of
    the reverse process, x_T first and x_0 last: a list of (b, *shape) tensors (fewer when the
    sampler takes fewer steps). All noise (x_T and the samplers' own) comes from ``generator``
    (CPU), batch by batch; ``x_T`` (n, *shape) gives the starting noise instead.
    """
    spec.check(T)
    if scale < 0:
        raise ValueError(f"guidance scale must be >= 0, found {scale}")
    if labels is not None and not getattr(model, "num_classes", 0):
        raise ValueError("class labels were given to an unconditional model (num_classes = 0)")
    if labels is not None and not (0 <= int(labels.min()) and int(labels.max()) < model.num_classes):
        raise ValueError(f"class labels must lie in [0, {model.num_classes}), found [{int(labels.min())}, "
                         f"{int(labels.max())}]")
    sched = make_scheduler(spec.sampler, schedule, T, clip)
    sched.set_timesteps(spec.steps)
    timesteps = list(sched.timesteps)
    L = len(timesteps)
    m = min(frames - 1, L)  # frames after x_T, evenly spaced, ending at x_0
    keep = {round((k + 1) * L / m) - 1 for k in range(m)} if m > 0 else set()
    out, strip = [], []
    was = model.training
    model.eval()
    for b0 in range(0, n, batch_size):
        b = min(batch_size, n - b0)
        x = (torch.randn((b, *shape), generator=generator) if x_T is None else x_T[b0:b0 + b]).to(device)
        y = None if labels is None else labels[b0:b0 + b].to(device)
        if frames and b0 == 0:
            strip.append(x.cpu())
        for i, t in enumerate(timesteps):
            tt = torch.full((b,), int(t), device=device, dtype=torch.long)
            eps = guided_eps(model, x, tt, y, scale)
            # DDIM with clipping must re-derive eps from the clipped x0 (diffusers' docstring):
            # mixing the clipped x0 with the unclipped eps adds a bias at every step that grows
            # with the step count and with the guidance scale.
            kw = {"eta": spec.eta, "use_clipped_model_output": True} if spec.sampler == "ddim" else {}
            x = sched.step(eps, int(t), x, generator=generator, **kw).prev_sample
            if b0 == 0 and i in keep:
                strip.append(x.cpu())
        out.append(x.float().cpu())
    model.train(was)
    return torch.cat(out), strip
