"""What an attacker sees of a deployed classifier, and the attacks that need only that.

:class:`PredictionAPI` stands in front of a model as a prediction service does: full scores
(probabilities), scores rounded to ``decimals`` (the lecture's "output layers that hide
information"), or the top-1 label only. It counts every image it is asked about as one query.

:class:`HopSkipJump` (Chen, Jordan & Wainwright 2020) and :class:`BoundaryAttack` (Brendel,
Rauber & Bethge 2018) are decision-based: they need only the label. Both start from an
adversarial image far from x and walk it towards x along the decision boundary, so what they
buy with queries is distance: :attr:`trace` records, per example, the distance of the best
adversarial after each query count, from which accuracy at an eps and budget follows
(:func:`accuracy_at`). Square (:class:`advgen.attacks.square.Square`) attacks the rounded
scores through :meth:`PredictionAPI.as_model`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from .base import AttackError, check_images

MODES = ("scores", "rounded", "label")


class PredictionAPI:
    """A classifier behind an API: ``mode`` ``"scores"`` (softmax probabilities), ``"rounded"``
    (probabilities rounded to ``decimals``) or ``"label"`` (top-1 only). ``queries`` counts the
    images asked about. Inputs (B, C, H, W) in [0, 1]."""

    def __init__(self, model: nn.Module, mode: str = "label", decimals: int = 2):
        if mode not in MODES:
            raise AttackError(f"API mode {mode!r}: expected one of {list(MODES)}")
        if decimals < 0:
            raise AttackError(f"decimals must be >= 0, found {decimals}")
        self.model, self.mode, self.decimals = model.eval(), mode, decimals
        self.queries = 0

    @torch.no_grad()
    def scores(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, K)
        """What a score API returns: probabilities, rounded in ``"rounded"`` mode."""
        if self.mode == "label":
            raise AttackError("a label-only API returns no scores")
        self.queries += len(x)
        p = self.model(x).softmax(1)
        if self.mode == "rounded":
            scale = 10.0 ** self.decimals
            p = torch.round(p * scale) / scale
        return p

    @torch.no_grad()
    def label(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B,)
        """The top-1 label (what every mode reveals; a rounded API's top score ties break to the
        lowest class, as argmax does)."""
        if self.mode == "label":
            self.queries += len(x)
            return self.model(x).argmax(1)
        return self.scores(x).argmax(1)

    def as_model(self) -> nn.Module:
        """The score API as a module returning log-scores (B, K), for score-based attacks such
        as Square: a rounded zero becomes log(1e-12), so rounding flattens the margin loss."""
        api = self

        class _Scores(nn.Module):
            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return api.scores(x).clamp_min(1e-12).log()

        return _Scores()


def _norm(v: torch.Tensor, norm: str) -> torch.Tensor:  # (B, ...) -> (B,)
    flat = v.flatten(1)
    return flat.abs().amax(1) if norm == "Linf" else flat.norm(dim=1)


def _view(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.view(-1, *[1] * (like.dim() - 1))


@dataclass
class Trace:
    """Per example, the distance of the best adversarial so far after each query count."""

    queries: list[torch.Tensor] = field(default_factory=list)  # each (B,) long
    distance: list[torch.Tensor] = field(default_factory=list)  # each (B,) float; inf: none yet

    def add(self, q: torch.Tensor, d: torch.Tensor) -> None:
        self.queries.append(q.clone().cpu())
        self.distance.append(d.clone().cpu())

    def at(self, budget: int) -> torch.Tensor:  # (B,)
        """The best distance reached within ``budget`` queries per example (inf: none)."""
        q, d = torch.stack(self.queries), torch.stack(self.distance)  # (T, B)
        return torch.where(q <= budget, d, torch.full_like(d, math.inf)).amin(0)


def accuracy_at(trace: Trace, clean_correct: torch.Tensor, eps: float, budgets: list[int]) -> dict[int, float]:
    """Accuracy under attack at ``eps`` per query budget: an example counts as correct unless it
    was misclassified to begin with or the attack found an adversarial within ``eps`` in budget."""
    out = {}
    for b in budgets:
        broken = trace.at(b) <= eps + 1e-9
        out[b] = float((clean_correct.cpu() & ~broken).float().mean())
    return out


class _DecisionAttack:
    """Shared by the decision-based attacks: the label oracle with per-example query counts, and
    the start from blended uniform noise (foolbox's LinearSearchBlendedUniformNoiseAttack, with a
    binary search for the blend)."""

    def __init__(self, api: PredictionAPI, norm: str, max_queries: int, init_tries: int,
                 generator: torch.Generator | None):
        if norm not in ("L2", "Linf"):
            raise AttackError(f"norm {norm!r}: expected 'L2' or 'Linf'")
        if max_queries < 1:
            raise AttackError(f"max_queries must be >= 1, found {max_queries}")
        self.api, self.norm, self.max_queries, self.init_tries = api, norm, max_queries, init_tries
        self.generator = generator
        self.trace = Trace()

    def _rand(self, shape: tuple[int, ...], like: torch.Tensor, kind: str = "uniform") -> torch.Tensor:
        dev = self.generator.device if self.generator is not None else torch.device("cpu")
        if kind == "uniform":
            r = torch.rand(shape, generator=self.generator, device=dev)
        else:
            r = torch.randn(shape, generator=self.generator, device=dev)
        return r.to(like.device, like.dtype)

    def _adv(self, x: torch.Tensor, y: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        """(B,) bool: is x[i] misclassified? Queries only the ``active`` examples (one each)."""
        out = torch.zeros(len(y), dtype=torch.bool, device=y.device)
        idx = active.nonzero().squeeze(1)
        if len(idx):
            out[idx] = self.api.label(x[idx]) != y[idx]
            self.q[idx.cpu()] += 1
        return out

    def _start(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """An adversarial start per example (uniform noise, then the closest blend towards x) and
        whether one was found. Misclassified examples start at themselves (distance 0)."""
        n = len(y)
        self.q = torch.zeros(n, dtype=torch.long)
        found = self._adv(x, y, torch.ones(n, dtype=torch.bool, device=y.device))
        start = x.clone()
        clean_wrong = found.clone()
        for _ in range(self.init_tries):
            todo = ~found
            if not todo.any():
                break
            noise = self._rand(tuple(x.shape), x)
            hit = self._adv(noise, y, todo)
            start[hit] = noise[hit]
            found |= hit
        # binary search of the blend (1 - a) x + a noise for examples started from noise
        lo = torch.zeros(n, device=x.device)
        hi = torch.ones(n, device=x.device)
        active = found & ~clean_wrong
        noise = start.clone()
        for _ in range(10):
            mid = (lo + hi) / 2
            cand = (1 - _view(mid, x)) * x + _view(mid, x) * noise
            hit = self._adv(cand, y, active)
            hi = torch.where(active & hit, mid, hi)
            lo = torch.where(active & ~hit, mid, lo)
        blend = (1 - _view(hi, x)) * x + _view(hi, x) * noise
        start = torch.where(_view(active, x), blend, start)
        return start, found

    def _record(self, x: torch.Tensor, x_adv: torch.Tensor, found: torch.Tensor) -> None:
        d = _norm(x_adv - x, self.norm)
        self.trace.add(self.q, torch.where(found, d, torch.full_like(d, math.inf)))


class HopSkipJump(_DecisionAttack):
    r"""HopSkipJumpAttack from "HopSkipJumpAttack: a query-efficient decision-based attack"
    (Chen, Jordan & Wainwright, 2020), untargeted, L2 or L-inf.

    Decision-based black box: it reads only the top-1 label from ``api``. From an adversarial
    start it repeats: binary search to the decision boundary (to within theta = d^{-3/2} for L2,
    d^{-2} for L-inf, as a fraction of the current distance); a Monte-Carlo estimate of the
    boundary's normal from ``init_evals * sqrt(t)`` (at most ``max_evals``) random unit
    directions at radius delta (the paper's sqrt(d) theta dist for L2, d theta dist for L-inf;
    0.1 at the first step), baseline-subtracted; a geometric step of size dist / sqrt(t) along it
    (its sign for L-inf), halved until the step stays adversarial. Every label costs one query;
    an example stops once it has used ``max_queries``.

    Arguments:
        api (PredictionAPI): the label oracle (any mode).
        norm (str): ``"L2"`` or ``"Linf"``: the distance minimised. (Default: "L2")
        steps (int): at most this many iterations. (Default: 64)
        max_queries (int): query budget per example. (Default: 10000)
        init_evals (int), max_evals (int): the gradient estimate's directions. (Default: 100, 10000)
        gamma (float): theta = gamma / d^{3/2} (L2) or gamma / d^2 (L-inf). (Default: 1.0)
        generator (torch.Generator): every random draw. ``None``: torch's global generator.

    Shape: x (B, C, H, W) in [0, 1], y (B,) -> (B, C, H, W); :attr:`trace` holds the distance
    per query count, :attr:`found` (B,) whether an adversarial start was found.
    """

    def __init__(self, api: PredictionAPI, norm: str = "L2", steps: int = 64, max_queries: int = 10000,
                 init_evals: int = 100, max_evals: int = 10000, gamma: float = 1.0, init_tries: int = 1000,
                 chunk: int = 2000, generator: torch.Generator | None = None):
        super().__init__(api, norm, max_queries, init_tries, generator)
        self.steps, self.init_evals, self.max_evals, self.gamma, self.chunk = steps, init_evals, max_evals, gamma, chunk

    def _project(self, x: torch.Tensor, x_adv: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """The point a fraction ``a`` (B,) of the way from x to x_adv: a blend (L2) or x_adv's
        perturbation clipped to a times its L-inf size (L-inf)."""
        if self.norm == "L2":
            return (1 - _view(a, x)) * x + _view(a, x) * x_adv
        r = _view(a * _norm(x_adv - x, "Linf"), x)
        return x + (x_adv - x).clamp(-r, r)

    def _boundary(self, x: torch.Tensor, y: torch.Tensor, x_adv: torch.Tensor, active: torch.Tensor,
                  theta: float) -> torch.Tensor:
        lo = torch.zeros(len(y), device=x.device)
        hi = torch.ones(len(y), device=x.device)
        for _ in range(math.ceil(math.log2(1 / theta)) + 1):
            todo = active & (hi - lo > theta)
            if not todo.any():
                break
            mid = (lo + hi) / 2
            hit = self._adv(self._project(x, x_adv, mid), y, todo)
            hi = torch.where(todo & hit, mid, hi)
            lo = torch.where(todo & ~hit, mid, lo)
        return torch.where(_view(active, x), self._project(x, x_adv, hi), x_adv)

    def _gradient(self, x_b: torch.Tensor, y: torch.Tensor, delta: torch.Tensor, n_evals: int,
                  active: torch.Tensor) -> torch.Tensor:
        """The estimated normal (B, C, H, W) of the boundary at x_b, unit (L2) or signed (L-inf)."""
        shape = x_b.shape[1:]
        total = torch.zeros_like(x_b)
        for idx in active.nonzero().squeeze(1).tolist():
            rv = self._rand((n_evals, *shape), x_b, "normal" if self.norm == "L2" else "uniform")
            if self.norm == "Linf":
                rv = rv * 2 - 1
            rv = rv / _view(rv.flatten(1).norm(dim=1), rv)
            cand = (x_b[idx] + delta[idx] * rv).clamp(0, 1)
            rv = (cand - x_b[idx]) / delta[idx]
            phi = torch.cat([(self.api.label(cand[i:i + self.chunk]) != y[idx]).float() * 2 - 1
                             for i in range(0, n_evals, self.chunk)])
            self.q[idx] += n_evals
            mean = phi.mean()
            if mean.abs() == 1:
                g = mean * rv.mean(0)
            else:
                g = ((phi - mean).view(-1, *[1] * len(shape)) * rv).mean(0)
            total[idx] = g
        if self.norm == "Linf":
            return total.sign()
        return total / _view(total.flatten(1).norm(dim=1).clamp_min(1e-12), total)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        check_images(x, y)
        d = x[0].numel()
        theta = self.gamma / (d ** 1.5 if self.norm == "L2" else d ** 2)
        x_adv, found = self._start(x, y)
        start_dist = _norm(x_adv - x, self.norm)
        active = found & (start_dist > 0) & (self.q.to(y.device) < self.max_queries)
        x_adv = self._boundary(x, y, x_adv, active, theta)
        self._record(x, x_adv, found)
        dist = _norm(x_adv - x, self.norm)
        for t in range(1, self.steps + 1):
            active = found & (dist > 0) & (self.q.to(y.device) < self.max_queries)
            if not active.any():
                break
            if t == 1:
                delta = torch.full_like(dist, 0.1)
            else:
                delta = (math.sqrt(d) if self.norm == "L2" else d) * theta * dist
            n_evals = int(min(self.init_evals * math.sqrt(t), self.max_evals))
            grad = self._gradient(x_adv, y, delta, n_evals, active)
            eps = dist / math.sqrt(t)
            step_ok = torch.zeros_like(active)
            for _ in range(25):  # geometric step-size search
                todo = active & ~step_ok
                if not todo.any():
                    break
                cand = (x_adv + _view(eps, x) * grad).clamp(0, 1)
                hit = self._adv(cand, y, todo)
                step_ok |= hit
                eps = torch.where(todo & ~hit, eps / 2, eps)
            moved = (x_adv + _view(eps, x) * grad).clamp(0, 1)
            x_new = torch.where(_view(active & step_ok, x), moved, x_adv)
            x_new = self._boundary(x, y, x_new, active & step_ok, theta)
            new_dist = _norm(x_new - x, self.norm)
            better = active & step_ok & (new_dist < dist)  # keep the best adversarial found
            x_adv = torch.where(_view(better, x), x_new, x_adv)
            dist = torch.where(better, new_dist, dist)
            self._record(x, x_adv, found)
        self.found = found
        return x_adv


class BoundaryAttack(_DecisionAttack):
    r"""Boundary Attack from "Decision-based adversarial attacks: reliable attacks against
    black-box machine learning models" (Brendel, Rauber & Bethge, 2018), untargeted, L2.

    Decision-based black box: it reads only the top-1 label. From an adversarial start, each step
    draws a Gaussian perturbation orthogonal to the direction to x, scaled to ``spherical_step``
    times the current distance and projected back onto the sphere around x (the spherical
    candidate, queried to adapt the step sizes), then moves ``source_step`` of the distance
    towards x (the candidate, queried; kept when adversarial). Every 10 steps (per example) the
    sizes adapt by ``step_adaptation``: both grow when more than half of the spherical candidates
    were adversarial and shrink below a fifth; the source step alone likewise on the candidates.
    Two queries per step; an example stops once it has used ``max_queries``.

    Arguments:
        api (PredictionAPI): the label oracle (any mode).
        steps (int): at most this many steps. (Default: 5000)
        max_queries (int): query budget per example. (Default: 10000)
        spherical_step, source_step (float): initial sizes, relative to the distance. (Default: 0.01)
        step_adaptation (float): factor of each adaptation. (Default: 1.5)
        generator (torch.Generator): every random draw.

    Shape: x (B, C, H, W) in [0, 1], y (B,) -> (B, C, H, W); :attr:`trace` as HopSkipJump's (L2).
    """

    def __init__(self, api: PredictionAPI, steps: int = 5000, max_queries: int = 10000, spherical_step: float = 0.01,
                 source_step: float = 0.01, step_adaptation: float = 1.5, init_tries: int = 1000,
                 record_every: int = 10, generator: torch.Generator | None = None):
        super().__init__(api, "L2", max_queries, init_tries, generator)
        self.steps, self.spherical0, self.source0 = steps, spherical_step, source_step
        self.adapt, self.record_every = step_adaptation, record_every

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        check_images(x, y)
        x_adv, found = self._start(x, y)
        self._record(x, x_adv, found)
        n = len(y)
        sph = torch.full((n,), self.spherical0, device=x.device)
        src = torch.full((n,), self.source0, device=x.device)
        sph_hits = torch.zeros(n, device=x.device)
        src_hits = torch.zeros(n, device=x.device)
        for step in range(1, self.steps + 1):
            dist = _norm(x_adv - x, "L2")
            active = found & (dist > 0) & (self.q.to(y.device) + 2 <= self.max_queries)
            if not active.any():
                break
            source = x - x_adv  # (B, C, H, W)
            source_norm = _view(dist.clamp_min(1e-12), x)
            direction = source / source_norm
            pert = self._rand(tuple(x.shape), x, "normal")
            pert = pert - _view((pert * direction).flatten(1).sum(1), x) * direction
            pert = pert * _view(sph, x) * source_norm / _view(pert.flatten(1).norm(dim=1).clamp_min(1e-12), x)
            spherical = (x + (pert - source) / _view(torch.sqrt(sph ** 2 + 1), x)).clamp(0, 1)
            new_source = x - spherical
            new_norm = _view(new_source.flatten(1).norm(dim=1).clamp_min(1e-12), x)
            length = (_view(src, x) * source_norm + (new_norm - source_norm)).clamp_min(0) / new_norm
            cand = (spherical + length * new_source).clamp(0, 1)
            sph_ok = self._adv(spherical, y, active)
            ok = self._adv(cand, y, active)
            x_adv = torch.where(_view(active & ok, x), cand, x_adv)
            sph_hits += (active & sph_ok).float()
            src_hits += (active & ok).float()
            if step % 10 == 0:  # adapt on the last 10 steps' success rates
                up, down = sph_hits > 5, sph_hits < 2
                sph = torch.where(up, sph * self.adapt, torch.where(down, sph / self.adapt, sph))
                src = torch.where(up, src * self.adapt, torch.where(down, src / self.adapt, src))
                src = torch.where(src_hits > 5, src * self.adapt, torch.where(src_hits < 2, src / self.adapt, src))
                sph_hits.zero_()
                src_hits.zero_()
            if step % self.record_every == 0:
                self._record(x, x_adv, found)
        self._record(x, x_adv, found)
        self.found = found
        return x_adv
