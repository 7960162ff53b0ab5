from __future__ import annotations

import torch

from .base import Attack, project


def random_start(x: torch.Tensor, eps: float, norm: str, generator: torch.Generator | None) -> torch.Tensor:
    """A random perturbation in the eps-ball (B, C, H, W): uniform for L-inf, uniform in the ball for L2."""
    if norm == "Linf":
        u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return (2 * u - 1) * eps
    d = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    d = d / d.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
    r = torch.rand(len(x), generator=generator, device=x.device, dtype=x.dtype) ** (1.0 / x[0].numel())
    return d * (r * eps).view(-1, 1, 1, 1)


class PGD(Attack):
    r"""PGD from "Towards Deep Learning Models Resistant to Adversarial Attacks" (Madry et al., 2018).

    Iterated gradient steps projected onto the eps-ball, from a random start, with restarts.
    L-inf steps follow the gradient's sign; L2 steps follow the gradient normalised per example.
    Over restarts it keeps, per example, the worst case: the first adversarial image that is
    misclassified, else the one with the highest loss. White box, untargeted.

    Arguments:
        model (nn.Module): the model under attack.
        eps (float): radius of the threat model. (Default: 8/255)
        norm (str): "Linf" or "L2". (Default: "Linf")
        alpha (float | None): step size; None means 2.5 * eps / steps. (Default: None)
        steps (int): iterations per restart. (Default: 10)
        restarts (int): random restarts. (Default: 1)
        random_start (bool): start at a random point of the ball. (Default: True)
        generator (torch.Generator): randomness of the starts, on the inputs' device.

    ``perturb(x, y, init=delta)`` starts the first restart from ``x + delta`` instead.

    Shape: images (B, C, H, W) in [0, 1]; labels (B,); output (B, C, H, W).
    """

    def __init__(self, model, eps: float = 8 / 255, norm: str = "Linf", alpha: float | None = None,
                 steps: int = 10, restarts: int = 1, random_start: bool = True,
                 generator: torch.Generator | None = None):
        super().__init__(model, eps, norm)
        if steps < 1 or restarts < 1:
            raise ValueError(f"steps and restarts must be >= 1, found steps={steps}, restarts={restarts}")
        self.alpha = alpha if alpha is not None else 2.5 * eps / steps
        self.steps, self.restarts, self.random_start, self.generator = steps, restarts, random_start, generator

    def _step(self, grad: torch.Tensor) -> torch.Tensor:
        if self.norm == "Linf":
            return self.alpha * grad.sign()
        n = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
        return self.alpha * grad / n

    def _run(self, x: torch.Tensor, y: torch.Tensor, delta0: torch.Tensor | None) -> torch.Tensor:
        adv = x.clone() if delta0 is None else project(x + delta0, x, self.eps, self.norm)
        for _ in range(self.steps):
            _, grad, _ = self.loss_and_grad(adv, y)
            adv = project(adv + self._step(grad), x, self.eps, self.norm)
        return adv

    def perturb(self, x: torch.Tensor, y: torch.Tensor, init: torch.Tensor | None = None) -> torch.Tensor:
        best, best_loss = x.clone(), torch.full((len(x),), -float("inf"), device=x.device)
        fooled = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        for r in range(self.restarts):
            delta0 = init if (r == 0 and init is not None) else (
                random_start(x, self.eps, self.norm, self.generator) if self.random_start else None)
            adv = self._run(x, y, delta0)
            with torch.no_grad():
                z = self.logits(adv)
                loss = torch.nn.functional.cross_entropy(z, y, reduction="none")
                wrong = z.argmax(1) != y
            take = (~fooled) & (wrong | (loss > best_loss))
            best[take], best_loss[take] = adv[take], loss[take]
            fooled |= wrong
            if bool(fooled.all()):
                break
        return best
