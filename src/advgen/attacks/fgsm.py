from __future__ import annotations

import torch

from .base import Attack


class FGSM(Attack):
    r"""FGSM from "Explaining and Harnessing Adversarial Examples" (Goodfellow et al., 2015).

    One step of size ``eps`` along the sign of the input gradient of the cross-entropy:
    ``x* = clip(x + eps * sign(grad_x CE(f(x), y)), 0, 1)``. White box, untargeted, L-inf.

    Arguments:
        model (nn.Module): the model under attack.
        eps (float): maximum L-inf perturbation. (Default: 8/255)

    Shape:
        - images: (B, C, H, W) in [0, 1]. - labels: (B,) int64. - output: (B, C, H, W).
    """

    norms = ("Linf",)

    def __init__(self, model, eps: float = 8 / 255):
        super().__init__(model, eps, "Linf")

    def perturb(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        _, grad, _ = self.loss_and_grad(x, y)
        return (x + self.eps * grad.sign()).clamp(0.0, 1.0)
