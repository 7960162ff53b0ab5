from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from .base import Attack, project


def random_start(x: torch.Tensor, eps: float, norm: str, generator: torch.Generator | None) -> torch.Tensor:
    """A random perturbation in the eps-ball (B, C, H, W): uniform for L-inf, uniform in the ball for L2.

    Drawn on the generator's device (a CPU generator in the stages) and then moved to x's
    device, so a GPU run starts from the same points as a CPU run.
    """
    dev = generator.device if generator is not None else torch.device("cpu")
    if norm == "Linf":
        u = torch.rand(x.shape, generator=generator, device=dev, dtype=x.dtype)
        return ((2 * u - 1) * eps).to(x.device)
    d = torch.randn(x.shape, generator=generator, device=dev, dtype=x.dtype)
    d = d / d.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
    r = torch.rand(len(x), generator=generator, device=dev, dtype=x.dtype) ** (1.0 / x[0].numel())
    return (d * (r * eps).view(-1, 1, 1, 1)).to(x.device)


Evaluate = Callable[[torch.Tensor, torch.Tensor, bool], tuple[torch.Tensor, torch.Tensor, "torch.Tensor | None"]]


def ascend(x: torch.Tensor, y: torch.Tensor, adv: torch.Tensor, steps: int, step: Callable[[torch.Tensor], torch.Tensor],
           evaluate: Evaluate, eps: float, norm: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The early-stopping projected ascent shared by :class:`PGD` and the adaptive attacks built
    on it (e.g. :class:`advgen.defenses.squeeze.DetectorAwarePGD`).

    From ``adv`` (B, C, H, W), ``steps`` times: ``evaluate(iterates, labels, with_grad)`` returns
    (loss (n,), success (n,) bool, gradient or None); per example the first successful iterate is
    kept and the example stops, otherwise the highest-loss iterate; the others move by
    ``step(grad)`` and are projected onto the ``eps``-ball of ``x`` (``norm``) and [0, 1]. The
    last iterate is scored without a gradient. Returns (best (B, C, H, W), success (B,), best loss (B,)).
    """
    best, best_loss = adv.clone(), torch.full((len(x),), -float("inf"), device=x.device)
    done = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    active = torch.arange(len(x), device=x.device)
    for k in range(steps + 1):
        xa, ya = adv[active], y[active]
        loss, success, grad = evaluate(xa, ya, k < steps)
        better = success | (loss > best_loss[active])
        best[active[better]], best_loss[active[better]] = xa[better], loss[better]
        done[active[success]] = True
        if k == steps:
            break
        keep = ~success  # a successful example is done: its first successful iterate is its result
        active, xa, grad = active[keep], xa[keep], grad[keep]
        if len(active) == 0:
            break
        adv[active] = project(xa + step(grad), x[active], eps, norm)
    return best, done, best_loss


class PGD(Attack):
    r"""PGD from "Towards Deep Learning Models Resistant to Adversarial Attacks" (Madry et al., 2018).

    Iterated gradient steps projected onto the eps-ball, from a random start, with restarts.
    L-inf steps follow the gradient's sign; L2 steps follow the gradient normalised per example.
    White box, untargeted.

    Per example and per restart it keeps the best iterate seen, not the last one: the first
    iterate that is misclassified, else the one with the highest cross-entropy. An example
    stops being attacked once an iterate fools the model (that iterate is its result), so the
    robust accuracy is the same as without stopping, at a fraction of the cost; restarts run
    only on the examples no earlier restart fooled. Over restarts the worst case is kept.

    Arguments:
        model (nn.Module): the model under attack.
        eps (float): radius of the threat model. (Default: 8/255)
        norm (str): "Linf" or "L2". (Default: "Linf")
        alpha (float | None): step size; None means 2.5 * eps / steps. (Default: None)
        steps (int): iterations per restart. (Default: 10)
        restarts (int): random restarts. (Default: 1)
        random_start (bool): start at a random point of the ball. (Default: True)
        generator (torch.Generator): randomness of the starts (drawn on its device, then moved).
        early_stop (bool): stop an example at its first fooling iterate. False runs every step
            and keeps the highest-loss iterate (for transfer attacks, where crossing the
            surrogate's boundary barely is not the goal). (Default: True)

    ``perturb(x, y, init=delta)`` starts the first restart from ``x + delta`` instead.

    Shape: images (B, C, H, W) in [0, 1]; labels (B,); output (B, C, H, W).
    """

    def __init__(self, model, eps: float = 8 / 255, norm: str = "Linf", alpha: float | None = None,
                 steps: int = 10, restarts: int = 1, random_start: bool = True,
                 generator: torch.Generator | None = None, early_stop: bool = True):
        super().__init__(model, eps, norm)
        if steps < 1 or restarts < 1:
            raise ValueError(f"steps and restarts must be >= 1, found steps={steps}, restarts={restarts}")
        self.alpha = alpha if alpha is not None else 2.5 * eps / steps
        self.steps, self.restarts, self.random_start, self.generator = steps, restarts, random_start, generator
        self.early_stop = early_stop

    def _step(self, grad: torch.Tensor) -> torch.Tensor:
        if self.norm == "Linf":
            return self.alpha * grad.sign()
        n = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
        return self.alpha * grad / n

    def _evaluate(self, xa: torch.Tensor, ya: torch.Tensor,
                  with_grad: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(CE loss (n,), fooled (n,), gradient (n, C, H, W) or None) at the iterates xa."""
        if with_grad:
            loss, grad, z = self.loss_and_grad(xa, ya)
        else:  # the last iterate is scored too, without a gradient
            with torch.no_grad():
                z = self.logits(xa)
                loss = F.cross_entropy(z, ya, reduction="none")
            grad = None
        # Without early stopping every example runs every step and the highest loss wins.
        return loss, (z.argmax(1) != ya) & self.early_stop, grad

    def _run(self, x: torch.Tensor, y: torch.Tensor,
             delta0: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One restart: (best iterate (B, C, H, W), fooled (B,), its loss (B,))."""
        adv = x.clone() if delta0 is None else project(x + delta0, x, self.eps, self.norm)
        return ascend(x, y, adv, self.steps, self._step, self._evaluate, self.eps, self.norm)

    def perturb(self, x: torch.Tensor, y: torch.Tensor, init: torch.Tensor | None = None) -> torch.Tensor:
        best, best_loss = x.clone(), torch.full((len(x),), -float("inf"), device=x.device)
        fooled = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        for r in range(self.restarts):
            todo = (~fooled).nonzero().squeeze(1)
            if len(todo) == 0:
                break
            # Drawn for the whole batch, so each example's start does not depend on the others.
            delta0 = init if (r == 0 and init is not None) else (
                random_start(x, self.eps, self.norm, self.generator) if self.random_start else None)
            adv, hit, loss = self._run(x[todo], y[todo], None if delta0 is None else delta0[todo])
            take = hit | (loss > best_loss[todo])
            best[todo[take]], best_loss[todo[take]] = adv[take], loss[take]
            fooled[todo[hit]] = True
        return best
