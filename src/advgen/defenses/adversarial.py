"""Training-time defenses as per-batch losses for :func:`advgen.training.fit`.

Each class is a :class:`~advgen.training.BatchLoss`: it maps a training batch to its loss, so
the one training loop of the ``train`` stage trains every defended model. Inner attacks run on
the bare model in eval mode (BatchNorm uses its running statistics and dropout is off), so
crafting neither updates BatchNorm statistics nor draws dropout masks; the model is put back
in train mode before the update. Where a loss needs both clean and adversarial logits, the two
go through the network as one batch (one forward per backward, as DDP requires).

Every inner attack draws its randomness from the loss's own ``torch.Generator`` (CPU, then
moved to the batch's device), so training is reproducible without global seeding.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..attacks.fgsm import FGSM
from ..attacks.base import project
from ..attacks.pgd import random_start
from ..training import BatchLoss


def _layout(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``x`` in the memory layout of ``like`` (channels_last for conv models)."""
    fmt = torch.channels_last if like.dim() == 4 and like.is_contiguous(memory_format=torch.channels_last) \
        and not like.is_contiguous() else torch.contiguous_format
    return x.contiguous(memory_format=fmt)


def _input_grad(module: nn.Module, x: torch.Tensor, loss_of_logits) -> torch.Tensor:
    """d loss / d x (B, C, H, W) of ``module`` in eval mode, without parameter gradients."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(loss_of_logits(module(x)), x)
    return grad.detach()


class FGSMTraining(BatchLoss):
    r"""Adversarial training with FGSM and the two-term loss of Goodfellow et al. (ICLR 2015),
    "Explaining and Harnessing Adversarial Examples" (the lecture's form of C9):

    ``loss = alpha * CE(f(x), y) + (1 - alpha) * CE(f(x + eps * sign(grad_x CE(f(x), y))), y)``.

    Threat model trained against: L-inf, radius ``eps``, one gradient step from x itself.
    Arguments:
        eps (float): FGSM step, the training radius (Default in params: 0.1).
        alpha (float): weight of the clean term, in [0, 1] (Goodfellow et al.: 0.5).
    Shape: xb (B, C, H, W) in [0, 1], yb (B,); the returned logits are the adversarial ones (B, K).
    Cost: per example, 1 input gradient and 2 examples in the update.
    """

    def __init__(self, eps: float, alpha: float):
        super().__init__()
        self.eps, self.alpha = eps, alpha

    def craft(self, module: nn.Module, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        attack = FGSM(module, self.eps)
        adv = attack(xb, yb)
        self.grad_evals += attack.grad_evals
        return adv

    def __call__(self, net, module, xb, yb):
        adv = _layout(self.craft(module, xb, yb), xb)
        net.train()
        logits = net(torch.cat([xb, adv]))  # (2B, K)
        clean, adv_logits = logits[: len(yb)], logits[len(yb):]
        self.grad_evals += 2 * len(yb)
        loss = self.alpha * F.cross_entropy(clean, yb) + (1 - self.alpha) * F.cross_entropy(adv_logits, yb)
        return loss, adv_logits


class AdversarialOnly(BatchLoss):
    """Training on adversarial examples only: CE at ``craft(module, xb, yb)`` (B, C, H, W), which
    a subclass defines (FGSM-RS, PGD); one example per update counts in ``grad_evals``."""

    def craft(self, module: nn.Module, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, net, module, xb, yb):
        adv = _layout(self.craft(module, xb, yb), xb)
        net.train()
        logits = net(adv)
        self.grad_evals += len(yb)
        return F.cross_entropy(logits, yb), logits


class FastTraining(AdversarialOnly):
    r""""Fast" adversarial training, FGSM with a random start (FGSM-RS), from Wong, Rice & Kolter
    (ICLR 2020), "Fast is better than free: Revisiting adversarial training".

    ``delta ~ U(-eps, eps)``, one signed-gradient step of size ``step`` (Wong et al.: 1.25 eps),
    projected back onto the eps-ball and [0, 1]; the loss is CE on the result only. Known to
    suffer *catastrophic overfitting* (robustness to PGD collapses within an epoch while FGSM
    accuracy rises): watch it with :class:`advgen.defenses.monitor.OverfitMonitor`.
    Arguments:
        eps (float): training radius (L-inf).
        step (float): step size of the single step.
        generator (torch.Generator): draws the random starts.
    Shape: xb (B, C, H, W) in [0, 1], yb (B,); returns adversarial logits (B, K).
    Cost: per example, 1 input gradient and 1 example in the update.
    """

    def __init__(self, eps: float, step: float, generator: torch.Generator):
        super().__init__()
        self.eps, self.step, self.generator = eps, step, generator

    def craft(self, module: nn.Module, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        module.eval()
        start = (xb + random_start(xb, self.eps, "Linf", self.generator)).clamp(0, 1)
        grad = _input_grad(module, start, lambda z: F.cross_entropy(z, yb, reduction="sum"))
        self.grad_evals += len(yb)
        return project(start + self.step * grad.sign(), xb, self.eps, "Linf")

class PGDTraining(AdversarialOnly):
    r"""PGD adversarial training from Madry et al. (ICLR 2018), "Towards Deep Learning Models
    Resistant to Adversarial Attacks": minimise CE at the last iterate of a ``steps``-step L-inf
    PGD from a uniform random start in the eps-ball.
    Arguments:
        eps (float): training radius (L-inf). steps (int): PGD iterations (Default in params: 7).
        step (float): PGD step size. generator (torch.Generator): random starts.
    Shape: xb (B, C, H, W) in [0, 1], yb (B,); returns adversarial logits (B, K).
    Cost: per example, ``steps`` input gradients and 1 example in the update.
    """

    def __init__(self, eps: float, steps: int, step: float, generator: torch.Generator):
        super().__init__()
        self.eps, self.steps, self.step, self.generator = eps, steps, step, generator

    def craft(self, module: nn.Module, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        # Madry et al.'s loop, last iterate: the evaluation's PGD (best iterate, early stop) would
        # spend an extra forward per step on bookkeeping that training does not need.
        module.eval()
        adv = (xb + random_start(xb, self.eps, "Linf", self.generator)).clamp(0, 1)
        ce = lambda z: F.cross_entropy(z, yb, reduction="sum")
        for _ in range(self.steps):
            adv = project(adv + self.step * _input_grad(module, adv, ce).sign(), xb, self.eps, "Linf")
        self.grad_evals += self.steps * len(yb)
        return adv


class TRADESLoss(BatchLoss):
    r"""TRADES from Zhang et al. (ICML 2019), "Theoretically Principled Trade-off between
    Robustness and Accuracy":

    ``loss = CE(f(x), y) + beta * KL(softmax f(x) || softmax f(x'))``, where x' maximises the KL
    term within the L-inf eps-ball by ``steps`` signed-gradient steps of size ``step`` from
    ``x + 0.001 * N(0, I)`` (the official implementation's start).
    Arguments:
        eps (float), steps (int), step (float): the inner maximisation.
        beta (float): weight of the robustness term (Zhang et al.: 6 on CIFAR-10, 1-6 on MNIST).
        generator (torch.Generator): the start's noise.
    Shape: xb (B, C, H, W) in [0, 1], yb (B,); returns the logits of x' (B, K).
    Cost: per example, ``steps`` input gradients and 2 examples in the update.
    """

    def __init__(self, eps: float, steps: int, step: float, beta: float, generator: torch.Generator):
        super().__init__()
        self.eps, self.steps, self.step, self.beta, self.generator = eps, steps, step, beta, generator

    def craft(self, module: nn.Module, xb: torch.Tensor) -> torch.Tensor:
        module.eval()
        with torch.no_grad():
            p_clean = F.softmax(module(xb), dim=1)
        noise = torch.randn(xb.shape, generator=self.generator, device=self.generator.device, dtype=xb.dtype)
        adv = project(xb + 0.001 * noise.to(xb.device), xb, self.eps, "Linf")
        kl = lambda z: F.kl_div(F.log_softmax(z, dim=1), p_clean, reduction="sum")
        for _ in range(self.steps):
            grad = _input_grad(module, adv, kl)
            adv = project(adv + self.step * grad.sign(), xb, self.eps, "Linf")
        self.grad_evals += self.steps * len(xb)
        return adv

    def __call__(self, net, module, xb, yb):
        adv = _layout(self.craft(module, xb), xb)
        net.train()
        logits = net(torch.cat([xb, adv]))  # (2B, K)
        clean, adv_logits = logits[: len(yb)], logits[len(yb):]
        self.grad_evals += 2 * len(yb)
        robust = F.kl_div(F.log_softmax(adv_logits, dim=1), F.softmax(clean, dim=1), reduction="batchmean")
        return F.cross_entropy(clean, yb) + self.beta * robust, adv_logits


class GaussianNoiseTraining(BatchLoss):
    r"""Gaussian data augmentation, the base classifier of randomized smoothing (Cohen, Rosenfeld
    & Kolter, ICML 2019, "Certified Adversarial Robustness via Randomized Smoothing"): CE at
    ``x + sigma * N(0, I)``, not clipped to [0, 1] (as Cohen et al., and as the smoothed
    classifier is evaluated).
    Arguments:
        sigma (float): noise level in pixel units (Default in params: 0.25).
        generator (torch.Generator): draws the noise.
    Shape: xb (B, C, H, W), yb (B,); returns the logits of the noisy batch (B, K).
    """

    def __init__(self, sigma: float, generator: torch.Generator):
        super().__init__()
        self.sigma, self.generator = sigma, generator

    def __call__(self, net, module, xb, yb):
        noise = torch.randn(xb.shape, generator=self.generator, device=self.generator.device, dtype=xb.dtype)
        logits = net(_layout(xb + self.sigma * noise.to(xb.device), xb))
        self.grad_evals += len(yb)
        return F.cross_entropy(logits, yb), logits


@torch.no_grad()
def _predict(model: nn.Module, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    return torch.cat([model(x[i:i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])


def adversarial_augmentation(source: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
                             batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor, dict]:
    r"""Labelled adversarial augmentation (the lecture: "I perturb this cat and still label it
    cat"): FGSM examples crafted against a fixed, already trained ``source`` model, labelled
    with their true class and added to the training set (Goodfellow et al. 2015, section 6;
    Kurakin et al. 2017 note this static form protects poorly against attacks on the new model).

    Arguments: source (nn.Module, frozen, eval mode), x (N, C, H, W) in [0, 1], y (N,), eps (L-inf).
    Returns (x_aug (2N, C, H, W), y_aug (2N,), stats: the source's accuracy on its own FGSM
    examples and the input gradients spent).
    """
    source.eval()
    adv = torch.cat([FGSM(source, eps)(x[i:i + batch_size], y[i:i + batch_size])
                     for i in range(0, len(y), batch_size)])
    fooled = float((_predict(source, adv) != y).float().mean())
    return torch.cat([x, adv]), torch.cat([y, y]), {"source_fooled_rate": fooled, "grad_evals": len(y)}
