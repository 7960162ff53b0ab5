from __future__ import annotations

import math

import torch

from .base import Attack, project
from .pgd import random_start


def checkpoints(n_iter: int) -> list[int]:
    """APGD's checkpoints w_j = ceil(p_j * N), p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)."""
    p = [0.0, 0.22]
    while p[-1] < 1.0:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    return sorted({min(n_iter, math.ceil(q * n_iter - 1e-9)) for q in p[1:]} - {0})


class APGD(Attack):
    r"""APGD from "Reliable evaluation of adversarial robustness with an ensemble of diverse
    parameter-free attacks" (Croce & Hein, 2020).

    PGD with momentum (alpha = 0.75) whose step size starts at 2 * eps and is halved at
    checkpoints w_j when (1) fewer than rho = 75% of the steps since the last checkpoint
    increased the loss, or (2) the step was not halved at the last checkpoint and the best
    loss has not improved since; on halving, it restarts from the best point found.
    White box, untargeted, with the cross-entropy (APGD-CE) or the Difference-of-Logits-
    Ratio loss (APGD-DLR, invariant to the logits' scale, so harder to mask).

    Arguments:
        model (nn.Module): the model under attack.
        eps (float): radius. (Default: 8/255)
        norm (str): "Linf" or "L2". (Default: "Linf")
        loss (str): "ce" or "dlr". (Default: "ce")
        steps (int): iterations per restart. (Default: 100)
        restarts (int): random restarts, run on the examples not yet fooled. (Default: 1)
        rho (float): the fraction of loss increases below which the step is halved. (Default: 0.75)
        generator (torch.Generator): randomness of the starts, on the inputs' device.

    Shape: images (B, C, H, W) in [0, 1]; labels (B,); output (B, C, H, W).
    """

    def __init__(self, model, eps: float = 8 / 255, norm: str = "Linf", loss: str = "ce", steps: int = 100,
                 restarts: int = 1, rho: float = 0.75, generator: torch.Generator | None = None):
        super().__init__(model, eps, norm)
        if loss not in ("ce", "dlr"):
            raise ValueError(f"loss must be 'ce' or 'dlr', found {loss!r}")
        if steps < 1 or restarts < 1:
            raise ValueError(f"steps and restarts must be >= 1, found steps={steps}, restarts={restarts}")
        self.loss, self.steps, self.restarts, self.rho, self.generator = loss, steps, restarts, rho, generator

    def _direction(self, grad: torch.Tensor) -> torch.Tensor:
        if self.norm == "Linf":
            return grad.sign()
        return grad / grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)

    def _loss_grad(self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None):
        loss = self.loss if target is None else "dlr_targeted"
        return self.loss_and_grad(x, y, loss, target)

    def _run(self, x: torch.Tensor, y: torch.Tensor,
             target: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One restart: returns (best adversarial-or-highest-loss images, fooled mask).

        Only the examples not yet fooled are computed at each iteration (each example's
        step size and checkpoints are its own, so dropping the others changes nothing).
        """
        view = (-1, 1, 1, 1)
        adv = project(x + random_start(x, self.eps, self.norm, self.generator), x, self.eps, self.norm)
        loss, grad, z = self._loss_grad(adv, y, target)
        fooled = z.argmax(1) != y
        out = adv.clone()
        best, best_loss, best_grad = adv.clone(), loss.clone(), grad.clone()
        step = torch.full((len(x),), 2.0 * self.eps, device=x.device)
        marks = checkpoints(self.steps)
        last_mark, prev_loss = 0, loss.clone()
        increases = torch.zeros(len(x), device=x.device)
        reduced_last = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        best_at_last_mark = best_loss.clone()
        prev = adv.clone()
        for i in range(self.steps):
            idx = (~fooled).nonzero().squeeze(1)
            if len(idx) == 0:
                break
            a = 1.0 if i == 0 else 0.75
            xa, cur, before = x[idx], adv[idx], prev[idx]
            z_step = project(cur + step[idx].view(view) * self._direction(grad[idx]), xa, self.eps, self.norm)
            new = project(cur + a * (z_step - cur) + (1 - a) * (cur - before), xa, self.eps, self.norm)
            prev[idx], adv[idx] = cur, new
            loss, g, z = self._loss_grad(new, y[idx], None if target is None else target[idx])
            grad[idx] = g
            wrong = z.argmax(1) != y[idx]
            out[idx[wrong]] = new[wrong]
            fooled[idx[wrong]] = True
            increases[idx] += (loss > prev_loss[idx]).float()
            prev_loss[idx] = loss
            better = loss > best_loss[idx]
            bi = idx[better]
            best[bi], best_loss[bi], best_grad[bi] = new[better], loss[better], g[better]
            if i + 1 in marks:
                height = (i + 1) - last_mark
                reduce = (increases < self.rho * height) | (~reduced_last & (best_at_last_mark >= best_loss))
                step[reduce] /= 2.0
                adv[reduce], grad[reduce] = best[reduce], best_grad[reduce]
                prev[reduce] = adv[reduce]
                reduced_last, best_at_last_mark = reduce, best_loss.clone()
                increases.zero_()
                last_mark = i + 1
        out[~fooled] = best[~fooled]
        return out, fooled

    def perturb(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = x.clone()
        todo = torch.ones(len(x), dtype=torch.bool, device=x.device)
        for _ in range(self.restarts):
            idx = todo.nonzero().squeeze(1)
            if len(idx) == 0:
                break
            adv, fooled = self._run(x[idx], y[idx])
            out[idx] = adv
            todo[idx[fooled]] = False
        return out


class APGDT(APGD):
    r"""Targeted APGD with the targeted DLR loss (APGD-T) from Croce & Hein (2020).

    For each of the ``n_target_classes`` classes the model ranks highest after the true one
    (on the clean input), runs APGD maximising -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2) on
    the examples no earlier target fooled; success is any misclassification (the evaluation is
    untargeted). This is AutoAttack's standard APGD-T (9 targets, 100 iterations, 1 restart
    each). White box.

    Arguments:
        model (nn.Module): the model under attack (at least 4 classes).
        eps (float): radius. (Default: 8/255)
        norm (str): "Linf" or "L2". (Default: "Linf")
        steps (int): iterations per target class. (Default: 100)
        n_target_classes (int): how many target classes to try. (Default: 9)
        rho (float): as in APGD. (Default: 0.75)
        generator (torch.Generator): randomness of the starts (drawn on its device, then moved).

    Shape: images (B, C, H, W) in [0, 1]; labels (B,); output (B, C, H, W).
    """

    def __init__(self, model, eps: float = 8 / 255, norm: str = "Linf", steps: int = 100,
                 n_target_classes: int = 9, rho: float = 0.75, generator: torch.Generator | None = None):
        super().__init__(model, eps, norm, loss="dlr", steps=steps, restarts=1, rho=rho, generator=generator)
        if n_target_classes < 1:
            raise ValueError(f"n_target_classes must be >= 1, found {n_target_classes}")
        self.n_target_classes = n_target_classes

    def perturb(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            ranked = self.logits(x).argsort(dim=1, descending=True)  # (B, K)
        k = ranked.shape[1]
        if k < 4:
            raise ValueError(f"APGD-T's targeted DLR loss needs at least 4 classes, found {k}")
        out = x.clone()
        todo = torch.ones(len(x), dtype=torch.bool, device=x.device)
        for j in range(1, min(self.n_target_classes, k - 1) + 1):
            idx = todo.nonzero().squeeze(1)
            if len(idx) == 0:
                break
            # The j-th highest class other than the true one (the true one may not be ranked first).
            others = ranked[idx][ranked[idx] != y[idx, None]].view(len(idx), k - 1)
            adv, fooled = self._run(x[idx], y[idx], target=others[:, j - 1])
            out[idx] = adv
            todo[idx[fooled]] = False
        return out
