from __future__ import annotations

import torch

from .base import Attack, project


class UniformNoise(Attack):
    r"""Random-noise baseline: uniform noise in the eps-ball (a sanity check, not an attack).

    L-inf: each pixel gets U(-eps, eps). L2: a uniformly random direction scaled to radius eps.
    Uses no gradient and no query.

    Arguments:
        model (nn.Module): the model. eps (float): radius. norm (str): "Linf" or "L2".
        generator (torch.Generator): source of randomness (drawn on its device, then moved).

    Shape: images (B, C, H, W) in [0, 1] -> (B, C, H, W).
    """

    def __init__(self, model, eps: float, norm: str = "Linf", generator: torch.Generator | None = None):
        super().__init__(model, eps, norm)
        self.generator = generator

    def perturb(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # Drawn on the generator's device (CPU in the stages), then moved: same noise on a GPU.
        dev = self.generator.device if self.generator is not None else torch.device("cpu")
        if self.norm == "Linf":
            u = torch.rand(x.shape, generator=self.generator, device=dev, dtype=x.dtype)
            delta = (2 * u - 1) * self.eps
        else:
            d = torch.randn(x.shape, generator=self.generator, device=dev, dtype=x.dtype)
            delta = d / d.flatten(1).norm(dim=1).view(-1, 1, 1, 1) * self.eps
        return project(x + delta.to(x.device), x, self.eps, self.norm)
