"""Universal adversarial patch with printability and smoothness terms."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .base import AttackError


def apply_patch(x: torch.Tensor, patch: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Paste ``patch`` (C, k, k) into each image of ``x`` (B, C, H, W) at (rows[i], cols[i])."""
    b, c, h, w = x.shape
    k = patch.shape[-1]
    ar = torch.arange(k, device=x.device)
    r = (rows[:, None] + ar).view(b, k, 1).expand(b, k, k)  # (B, k, k)
    q = (cols[:, None] + ar).view(b, 1, k).expand(b, k, k)
    mask = torch.zeros(b, 1, h, w, device=x.device)
    canvas = torch.zeros(b, c, h, w, device=x.device, dtype=x.dtype)
    bi = torch.arange(b, device=x.device).view(b, 1, 1).expand(b, k, k)
    mask[bi, 0, r, q] = 1.0
    canvas[bi, :, r, q] = patch.permute(1, 2, 0).expand(b, k, k, c)
    return x * (1 - mask) + canvas * mask


def random_locations(n: int, size: int, k: int, generator: torch.Generator | None,
                     device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Uniform top-left corners (rows, cols) for a k x k patch in a size x size image."""
    hi = size - k + 1
    rc = torch.randint(0, hi, (2, n), generator=generator, device=device)
    return rc[0], rc[1]


def non_printability(patch: torch.Tensor, palette: torch.Tensor) -> torch.Tensor:
    """Mean over pixels of the distance to the nearest printable colour (Sharif et al. 2016)."""
    px = patch.permute(1, 2, 0).reshape(-1, 1, patch.shape[0])  # (k*k, 1, C)
    pal = palette.view(1, -1, patch.shape[0])  # (1, P, C)
    return (px - pal).norm(dim=2).min(1).values.mean()


def total_variation(patch: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of neighbouring pixels (smoothness)."""
    return ((patch[:, 1:, :] - patch[:, :-1, :]).abs().mean() + (patch[:, :, 1:] - patch[:, :, :-1]).abs().mean())


@dataclass
class PatchResult:
    patch: torch.Tensor  # (C, k, k) in [0, 1]
    history: list[dict]


def train_patch(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, k: int, target: int | None,
                epochs: int, batch_size: int, lr: float, w_nps: float, w_tv: float, palette: torch.Tensor,
                num_classes: int, generator: torch.Generator) -> PatchResult:
    r"""Universal patch from "Adversarial Patch" (Brown et al., 2017) with the printability and
    smoothness terms of Thys et al. (2019).

    One k x k patch is optimised over all of ``x`` at random locations. Targeted
    (``target`` = t): minimise CE(f(x_patched), t); untargeted (``target`` = None): maximise
    CE(f(x_patched), y). Plus ``w_nps`` * non-printability (distance to the nearest colour of
    ``palette`` (P, C)) and ``w_tv`` * total variation. The patch is parametrised through a
    sigmoid so that it stays in [0, 1]. White box, physical-world threat model.

    Shape: x (N, C, H, W) in [0, 1]; y (N,); patch (C, k, k).
    """
    c, h, w = x.shape[1:]
    if not 1 <= k <= min(h, w):
        raise AttackError(f"patch size k must lie in [1, {min(h, w)}], found {k}")
    if target is not None and not 0 <= target < num_classes:
        raise AttackError(f"target class must lie in [0, {num_classes}), found {target}")
    if palette.dim() != 2 or palette.shape[1] != c:
        raise AttackError(f"palette must have shape (P, {c}), found {tuple(palette.shape)}")
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    theta = torch.logit(torch.rand((c, k, k), generator=generator).clamp(0.05, 0.95)).to(x.device).requires_grad_(True)
    opt = torch.optim.Adam([theta], lr=lr)
    history = []
    for epoch in range(epochs):
        order = torch.randperm(len(y), generator=generator)
        tot = {"loss": 0.0, "nps": 0.0, "tv": 0.0, "n": 0}
        for start in range(0, len(y), batch_size):
            idx = order[start:start + batch_size]
            xb, yb = x[idx], y[idx]
            rows, cols = random_locations(len(idx), h, k, generator)
            patch = torch.sigmoid(theta)
            z = model(apply_patch(xb, patch, rows.to(x.device), cols.to(x.device)))
            adv = (F.cross_entropy(z, torch.full_like(yb, target)) if target is not None
                   else -F.cross_entropy(z, yb))
            nps, tv = non_printability(patch, palette.to(x.device)), total_variation(patch)
            loss = adv + w_nps * nps + w_tv * tv
            opt.zero_grad()
            loss.backward()
            opt.step()
            n = len(idx)
            tot["loss"] += float(adv.detach()) * n
            tot["nps"] += float(nps.detach()) * n
            tot["tv"] += float(tv.detach()) * n
            tot["n"] += n
        history.append({"epoch": epoch + 1, **{key: tot[key] / tot["n"] for key in ("loss", "nps", "tv")}})
    for p in model.parameters():
        p.requires_grad_(True)
    return PatchResult(torch.sigmoid(theta).detach(), history)


@torch.no_grad()
def patch_success(model: nn.Module, x: torch.Tensor, y: torch.Tensor, patch: torch.Tensor, target: int | None,
                  generator: torch.Generator, batch_size: int = 500) -> float:
    """Success rate on held-out images at random locations.

    Targeted: fraction of images not of class ``target`` predicted as ``target``.
    Untargeted: fraction of images misclassified.
    """
    k = patch.shape[-1]
    keep = (y != target) if target is not None else torch.ones_like(y, dtype=torch.bool)
    x, y = x[keep], y[keep]
    hits = 0
    for start in range(0, len(y), batch_size):
        xb, yb = x[start:start + batch_size], y[start:start + batch_size]
        rows, cols = random_locations(len(yb), x.shape[-2], k, generator)
        pred = model(apply_patch(xb, patch, rows.to(x.device), cols.to(x.device))).argmax(1)
        hits += int((pred == target).sum() if target is not None else (pred != yb).sum())
    return hits / max(len(y), 1)
