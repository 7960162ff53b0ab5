"""FAB-T, the targeted Fast Adaptive Boundary attack of AutoAttack's standard version."""
from __future__ import annotations

import torch

from .base import Attack


def project_linf(w: torch.Tensor, c: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, iters: int = 30) -> torch.Tensor:
    """The smallest L-inf step d (B, D) with w . d >= c inside the box lo <= d <= hi (per row).

    The optimum is d(t) = clip(t * sign(w), lo, hi) for the least radius t with w . d(t) >= c,
    as w . d(t) grows with t; t is found by bisection on [0, max(|lo|, |hi|)]. A row whose
    hyperplane lies beyond the box gets the box's farthest point in w's direction. w, lo, hi
    (B, D); c (B,). Rows with c <= 0 need no step (d = 0)."""
    s = w.sign()
    top = torch.maximum(lo.abs(), hi.abs()).amax(1)  # (B,)
    a = torch.zeros_like(c)
    b = top.clone()

    def step(t: torch.Tensor) -> torch.Tensor:
        return torch.minimum(torch.maximum(t[:, None] * s, lo), hi)

    reach = (w * step(b)).sum(1) >= c
    for _ in range(iters):
        mid = (a + b) / 2
        ok = (w * step(mid)).sum(1) >= c
        b = torch.where(ok, mid, b)
        a = torch.where(ok, a, mid)
    t = torch.where(reach, b, top)
    return torch.where((c > 0)[:, None], step(t), torch.zeros_like(w))


class FABT(Attack):
    r"""Targeted FAB (FAB-T) from "Minimally distorted adversarial examples with a fast adaptive
    boundary attack" (Croce & Hein, 2020), L-inf, as AutoAttack's standard version runs it.

    White box, minimum-norm: for each of the ``n_target_classes`` classes ranked highest after
    the true one, starting at x, it repeats: linearise z_t - z_y at the current point, project
    both the current point and x onto that hyperplane inside [0, 1] (the smallest L-inf steps
    d1, d2), move to the convex combination (1 - a)(x_cur + eta d1) + a (x + eta d2) with
    a = min(|d1| / (|d1| + |d2|), alpha_max) (biased towards x), and when that point is
    misclassified keep it if it is the closest so far and step back towards x by ``beta``.
    Success at ``eps`` is a misclassified point within eps; an example stops at its first target
    that succeeds. One forward and one gradient per iteration.

    Arguments:
        model (nn.Module): the model under attack (logits).
        eps (float): radius at which success is counted. (Default: 8/255)
        steps (int): iterations per target class. (Default: 100)
        n_target_classes (int): how many target classes. (Default: 9)
        alpha_max (float), eta (float), beta (float): the paper's and AutoAttack's 0.1, 1.05, 0.9.

    Shape: images (B, C, H, W) in [0, 1]; labels (B,); output (B, C, H, W): the closest
    adversarial found when it is within eps, else x.
    """

    def __init__(self, model, eps: float = 8 / 255, steps: int = 100, n_target_classes: int = 9,
                 alpha_max: float = 0.1, eta: float = 1.05, beta: float = 0.9):
        super().__init__(model, eps, "Linf")
        if n_target_classes < 1:
            raise ValueError(f"n_target_classes must be >= 1, found {n_target_classes}")
        self.steps, self.n_target_classes = steps, n_target_classes
        self.alpha_max, self.eta, self.beta = alpha_max, eta, beta

    def _diff_and_grad(self, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor):
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            z = self.logits(x)
            diff = z.gather(1, t[:, None]).squeeze(1) - z.gather(1, y[:, None]).squeeze(1)  # (B,)
            (g,) = torch.autograd.grad(diff.sum(), x)
        self.grad_evals += len(x)
        return diff.detach(), g.detach(), z.detach()

    def _one_target(self, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The closest misclassified point found for each example (inf distance: none), (B, C, H, W)."""
        b = len(y)
        flat = x.flatten(1)
        best = x.clone()
        best_d = torch.full((b,), float("inf"), device=x.device)
        cur = x.clone()
        for _ in range(self.steps):
            diff, g, _ = self._diff_and_grad(cur, y, t)
            w = g.flatten(1)
            cf = cur.flatten(1)
            # hyperplane: diff + w . (p - cur) = 0; the step from cur needs w . d >= -diff
            d1 = project_linf(w, -diff, -cf, 1 - cf)
            # from x: w . (x + d - cur) + diff >= 0
            d2 = project_linf(w, -diff - (w * (flat - cf)).sum(1), -flat, 1 - flat)
            n1, n2 = d1.abs().amax(1), d2.abs().amax(1)
            alpha = torch.clamp(n1 / (n1 + n2).clamp_min(1e-12), max=self.alpha_max)[:, None]
            nxt = ((1 - alpha) * (cf + self.eta * d1) + alpha * (flat + self.eta * d2)).clamp(0, 1)
            nxt = nxt.view_as(x)
            with torch.no_grad():
                wrong = self.logits(nxt).argmax(1) != y
            dist = (nxt - x).flatten(1).abs().amax(1)
            closer = wrong & (dist < best_d)
            best = torch.where(closer.view(-1, 1, 1, 1), nxt, best)
            best_d = torch.where(closer, dist, best_d)
            # a misclassified point: step back towards x and search closer to it
            back = ((1 - self.beta) * x + self.beta * nxt)
            cur = torch.where(wrong.view(-1, 1, 1, 1), back, nxt)
        self._best_d = best_d
        return best

    def perturb(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            z = self.logits(x)
        ranked = z.argsort(dim=1, descending=True)
        out = x.clone()
        todo = z.argmax(1) == y
        for j in range(1, min(self.n_target_classes, z.shape[1] - 1) + 1):
            idx = todo.nonzero().squeeze(1)
            if len(idx) == 0:
                break
            others = ranked[idx][ranked[idx] != y[idx, None]].view(len(idx), -1)  # classes other than y, by rank
            t = others[:, j - 1]
            adv = self._one_target(x[idx], y[idx], t)
            ok = self._best_d <= self.eps + 1e-9
            out[idx[ok]] = adv[ok]
            todo[idx[ok]] = False
        return out
