"""The base class every attack shares: threat model checks, query and gradient counting."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

NORMS = ("Linf", "L2")


class AttackError(ValueError):
    """Bad input to an attack: a negative eps, an unknown norm, inputs outside [0, 1] ..."""


def check_images(x: torch.Tensor, y: torch.Tensor | None = None, num_classes: int | None = None) -> None:
    """Raise AttackError unless ``x`` (B, C, H, W) lies in [0, 1] and labels are in range."""
    if x.dim() != 4:
        raise AttackError(f"expected images of shape (B, C, H, W), found {tuple(x.shape)}")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0.0 or hi > 1.0:
        raise AttackError(f"inputs must lie in [0, 1], found values in [{lo:.4g}, {hi:.4g}]")
    if y is not None:
        if y.shape != (x.shape[0],):
            raise AttackError(f"expected labels of shape ({x.shape[0]},), found {tuple(y.shape)}")
        if num_classes is not None and len(y) and (int(y.min()) < 0 or int(y.max()) >= num_classes):
            raise AttackError(f"class labels must lie in [0, {num_classes}), found [{int(y.min())}, {int(y.max())}]")


def lp_norm(v: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-example norm of (B, ...) -> (B,)."""
    flat = v.flatten(1)
    return flat.abs().amax(1) if norm == "Linf" else flat.norm(dim=1)


def project(x_adv: torch.Tensor, x: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """Project ``x_adv`` onto the eps-ball around ``x`` in ``norm``, then onto [0, 1]."""
    delta = x_adv - x
    if norm == "Linf":
        delta = delta.clamp(-eps, eps)
    else:
        n = delta.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (x.dim() - 1))
        delta = delta * torch.clamp(eps / n, max=1.0)
    return (x + delta).clamp(0.0, 1.0)


def dlr_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Difference of Logits Ratio (Croce & Hein 2020), per example (B,); larger is better for the attacker."""
    srt, _ = logits.sort(dim=1)
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    top_is_y = (logits.argmax(1) == y).float()
    z_other = srt[:, -2] * top_is_y + srt[:, -1] * (1.0 - top_is_y)
    return -(z_y - z_other) / (srt[:, -1] - srt[:, -3] + 1e-12)


def dlr_targeted_loss(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Targeted DLR (Croce & Hein 2020): -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2), per example (B,).

    Needs at least 4 classes; larger is better for the attacker (it pushes z_t above z_y).
    """
    srt, _ = logits.sort(dim=1)
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    z_t = logits.gather(1, target[:, None]).squeeze(1)
    return -(z_y - z_t) / (srt[:, -1] - 0.5 * (srt[:, -3] + srt[:, -4]) + 1e-12)


def margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """z_y - max_{j != y} z_j per example (B,): the example is misclassified when < 0."""
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.scatter(1, y[:, None], float("-inf")).amax(1)
    return z_y - other


class Attack:
    """Base class: holds the model and the threat model, counts queries and gradients.

    Arguments:
        model (nn.Module): maps (B, C, H, W) in [0, 1] to logits (B, K); put in eval mode.
        eps (float): radius of the threat model, >= 0.
        norm (str): ``"Linf"`` or ``"L2"``.

    Counters: ``queries`` counts per-example forward passes, ``grad_evals`` per-example
    gradients of the loss with respect to the input.
    """

    norms: tuple[str, ...] = NORMS

    def __init__(self, model: nn.Module, eps: float, norm: str = "Linf"):
        if not isinstance(eps, (int, float)) or eps < 0:
            raise AttackError(f"eps must be a number >= 0, found {eps!r}")
        if norm not in self.norms:
            raise AttackError(f"norm must be one of {self.norms} for {type(self).__name__}, found {norm!r}")
        self.model = model.eval()
        self.eps = float(eps)
        self.norm = norm
        self.queries = 0
        self.grad_evals = 0

    @property
    def num_classes(self) -> int | None:
        meta = getattr(self.model, "sidecar", None)
        return meta.get("num_classes") if isinstance(meta, dict) else None

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        self.queries += len(x)
        return self.model(x)

    def loss_and_grad(self, x: torch.Tensor, y: torch.Tensor, loss: str = "ce",
                      target: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return (per-example loss (B,), gradient wrt x (B, C, H, W), logits (B, K)).

        ``loss`` is "ce", "dlr", or "dlr_targeted" (then ``target`` (B,) gives the classes).
        """
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            z = self.logits(x)
            if loss == "ce":
                per = F.cross_entropy(z, y, reduction="none")
            elif loss == "dlr":
                per = dlr_loss(z, y)
            else:
                per = dlr_targeted_loss(z, y, target)
            (grad,) = torch.autograd.grad(per.sum(), x)
        self.grad_evals += len(x)
        return per.detach(), grad.detach(), z.detach()

    def validate(self, x: torch.Tensor, y: torch.Tensor) -> None:
        check_images(x, y, self.num_classes)

    def perturb(self, x: torch.Tensor, y: torch.Tensor, **kwargs) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, x: torch.Tensor, y: torch.Tensor, **kwargs) -> torch.Tensor:
        """Adversarial images (B, C, H, W) within ``eps`` of ``x`` in ``norm`` and inside [0, 1]."""
        self.validate(x, y)
        if self.eps == 0:
            return x.clone()
        return self.perturb(x, y, **kwargs).detach()
