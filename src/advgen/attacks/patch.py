"""Universal adversarial patch with printability and smoothness terms, and the size sweep (C8)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..stats import accuracy_ci
from ..utils import generator as make_generator
from .base import AttackError

#: What :func:`patch_sweep` measures at each size: two trained patches and two baselines.
VARIANTS = ("with_terms", "without_terms", "random_baseline", "grey_baseline")


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
    """Uniform top-left corners (rows, cols) for a k x k patch in a size x size image.

    Drawn on the CPU from ``generator`` and then moved to ``device``, so every device draws
    the same locations.
    """
    hi = size - k + 1
    rc = torch.randint(0, hi, (2, n), generator=generator).to(device)
    return rc[0], rc[1]


def non_printability(patch: torch.Tensor, palette: torch.Tensor) -> torch.Tensor:
    """Mean over pixels of the distance to the nearest printable colour (Sharif et al. 2016)."""
    px = patch.permute(1, 2, 0).reshape(-1, 1, patch.shape[0])  # (k*k, 1, C)
    pal = palette.reshape(1, -1, patch.shape[0])  # (1, P, C)
    return (px - pal).norm(dim=2).min(1).values.mean()


def total_variation(patch: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of vertically plus horizontally neighbouring pixels (smoothness)."""
    return ((patch[:, 1:, :] - patch[:, :-1, :]).abs().mean() + (patch[:, :, 1:] - patch[:, :, :-1]).abs().mean())


def patch_loss(model: nn.Module, xb: torch.Tensor, yb: torch.Tensor, patch: torch.Tensor, rows: torch.Tensor,
               cols: torch.Tensor, *, target: int | None, w_nps: float, w_tv: float,
               palette: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    r"""The training loss of :func:`train_patch` on one batch, and its parts.

    ``adv`` is CE(f(x_patched), target) (targeted) or -CE(f(x_patched), y) (untargeted),
    averaged over the batch; ``nps`` and ``tv`` are the per-pixel means of
    :func:`non_printability` and :func:`total_variation` (the figures the stage reports).

    The weights are **per pixel**: the loss adds ``w_nps`` times the *sum* over the patch's
    pixels of the distance to the palette and ``w_tv`` times the *sum* of the absolute
    differences of neighbouring pixels, so each pixel's gradient from the terms does not depend
    on the patch size. The cross-entropy's gradient with respect to one patch pixel does not
    shrink as the patch grows (about 0.1-0.2 per pixel for the default cnn at 4x4 to 16x16),
    so per-pixel means (which divide each pixel's gradient by ~k^2) made the same weights 16x
    weaker at 16x16 than at 4x4 and turned a sweep over patch sizes into a sweep over
    regularisation strength as well.
    """
    logits = model(apply_patch(xb, patch, rows, cols))
    adv = (F.cross_entropy(logits, torch.full_like(yb, target)) if target is not None
           else -F.cross_entropy(logits, yb))
    nps, tv = non_printability(patch, palette), total_variation(patch)
    kh, kw = patch.shape[-2:]
    c = patch.shape[0]
    nps_sum = nps * (kh * kw)  # the mean is over the kh*kw pixels
    tv_sum = ((patch[:, 1:, :] - patch[:, :-1, :]).abs().sum() + (patch[:, :, 1:] - patch[:, :, :-1]).abs().sum()) / c
    return adv + w_nps * nps_sum + w_tv * tv_sum, {"adv": adv, "nps": nps, "tv": tv}


class _Adam:
    """Adam (Kingma & Ba 2015) on one tensor, the update of ``torch.optim.Adam`` with its defaults.

    Written out because constructing any ``torch.optim`` optimizer imports ``torch._dynamo``,
    about 1.5 s of every stage process (a tenth of the smoke profile's budget for this stage).
    """

    def __init__(self, param: torch.Tensor, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.param, self.lr, self.betas, self.eps, self.t = param, lr, betas, eps, 0
        self.m, self.v = torch.zeros_like(param), torch.zeros_like(param)

    @torch.no_grad()
    def step(self, grad: torch.Tensor) -> None:
        b1, b2 = self.betas
        self.t += 1
        self.m.lerp_(grad, 1 - b1)
        self.v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        denom = (self.v.sqrt() / (1 - b2 ** self.t) ** 0.5).add_(self.eps)
        self.param.addcdiv_(self.m, denom, value=-self.lr / (1 - b1 ** self.t))


@dataclass
class PatchResult:
    patch: torch.Tensor  # (C, k, k) in [0, 1]
    history: list[dict]


def _check_patch_args(x: torch.Tensor, k: int, target: int | None, palette: torch.Tensor, num_classes: int) -> None:
    c, h, w = x.shape[1:]
    if not 1 <= k <= min(h, w):
        raise AttackError(f"patch size k must lie in [1, {min(h, w)}] (the image is {h}x{w}), found {k}")
    if target is not None and not 0 <= target < num_classes:
        raise AttackError(f"target class must lie in [0, {num_classes}), found {target}")
    if palette.dim() != 2 or palette.shape[1] != c:
        raise AttackError(f"palette must have shape (P, {c}), found {tuple(palette.shape)}")


def train_patch(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, k: int, target: int | None,
                epochs: int, batch_size: int, lr: float, w_nps: float, w_tv: float, palette: torch.Tensor,
                num_classes: int, generator: torch.Generator) -> PatchResult:
    r"""Universal patch from "Adversarial Patch" (Brown et al., 2017) with the printability and
    smoothness terms of Thys et al. (2019).

    One k x k patch is optimised over all of ``x`` at random locations. Targeted
    (``target`` = t): minimise CE(f(x_patched), t); untargeted (``target`` = None): maximise
    CE(f(x_patched), y). Plus the non-printability (distance to the nearest colour of
    ``palette`` (P, C)) and total variation terms with per-pixel weights ``w_nps`` and ``w_tv``
    (see :func:`patch_loss`). The patch is parametrised through a sigmoid so that it stays in
    [0, 1]. White box, physical-world threat model.

    Every random draw (initial patch, batch order, locations) comes from ``generator``, a CPU
    generator; the draws are moved to ``x``'s device. The model's ``requires_grad`` flags are
    restored on return. ``history`` holds per epoch the mean adversarial loss (``loss``),
    ``nps`` and ``tv``.

    Shape: x (N, C, H, W) in [0, 1]; y (N,); patch (C, k, k).
    """
    c, h = x.shape[1:3]
    _check_patch_args(x, k, target, palette, num_classes)
    if epochs < 1 or batch_size < 1 or lr <= 0 or w_nps < 0 or w_tv < 0:
        raise AttackError(f"need epochs >= 1, batch_size >= 1, lr > 0, w_nps >= 0, w_tv >= 0; found "
                          f"{epochs}, {batch_size}, {lr}, {w_nps}, {w_tv}")
    model.eval()
    flags = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    palette = palette.to(x.device, x.dtype)
    theta = torch.logit(torch.rand((c, k, k), generator=generator).clamp(0.05, 0.95)).to(x.device).requires_grad_(True)
    adam = _Adam(theta, lr)
    history = []
    try:
        for epoch in range(epochs):
            order = torch.randperm(len(y), generator=generator).to(x.device)
            tot = {"loss": 0.0, "nps": 0.0, "tv": 0.0, "n": 0}
            for start in range(0, len(y), batch_size):
                idx = order[start:start + batch_size]
                rows, cols = random_locations(len(idx), h, k, generator, x.device)
                loss, parts = patch_loss(model, x[idx], y[idx], torch.sigmoid(theta), rows, cols, target=target,
                                         w_nps=w_nps, w_tv=w_tv, palette=palette)
                (grad,) = torch.autograd.grad(loss, theta)
                adam.step(grad)
                n = len(idx)
                tot["loss"] += float(parts["adv"].detach()) * n
                tot["nps"] += float(parts["nps"].detach()) * n
                tot["tv"] += float(parts["tv"].detach()) * n
                tot["n"] += n
            history.append({"epoch": epoch + 1, **{key: tot[key] / tot["n"] for key in ("loss", "nps", "tv")}})
    finally:
        for p, flag in zip(model.parameters(), flags):
            p.requires_grad_(flag)
    return PatchResult(torch.sigmoid(theta).detach(), history)


@torch.no_grad()
def patch_outcomes(model: nn.Module, x: torch.Tensor, y: torch.Tensor, patch: torch.Tensor, target: int | None,
                   generator: torch.Generator, batch_size: int = 500) -> torch.Tensor:
    """Per-image success (bool (M,)) of ``patch`` pasted at random locations.

    Targeted: over the M images not of class ``target``, whether the prediction is ``target``.
    Untargeted: over all M = N images, whether the prediction is wrong. Locations come from
    ``generator`` (CPU), one per image in order, so two patches evaluated with generators in
    the same state see the same images at the same places (paired outcomes).
    """
    k = patch.shape[-1]
    keep = (y != target) if target is not None else torch.ones_like(y, dtype=torch.bool)
    x, y = x[keep], y[keep]
    out = []
    for start in range(0, len(y), batch_size):
        xb, yb = x[start:start + batch_size], y[start:start + batch_size]
        rows, cols = random_locations(len(yb), x.shape[-2], k, generator, x.device)
        pred = model(apply_patch(xb, patch, rows, cols)).argmax(1)
        out.append(pred == target if target is not None else pred != yb)
    return torch.cat(out).cpu() if out else torch.zeros(0, dtype=torch.bool)


def patch_success(model: nn.Module, x: torch.Tensor, y: torch.Tensor, patch: torch.Tensor, target: int | None,
                  generator: torch.Generator, batch_size: int = 500) -> float:
    """Success rate on held-out images at random locations (the mean of :func:`patch_outcomes`)."""
    hits = patch_outcomes(model, x, y, patch, target, generator, batch_size)
    return float(hits.float().mean()) if len(hits) else 0.0


def _measure(model: nn.Module, x: torch.Tensor, y: torch.Tensor, patch: torch.Tensor, target: int | None,
             palette: torch.Tensor, seed: int) -> dict:
    """success_rate with its 95% Wilson interval and n, plus the patch's NPS and TV."""
    ci = accuracy_ci(patch_outcomes(model, x, y, patch, target, make_generator(seed)))
    return {"success_rate": ci["accuracy"], "ci95": ci["ci95"], "n": ci["n"],
            "nps": float(non_printability(patch, palette)), "tv": float(total_variation(patch))}


def patch_sweep(model: nn.Module, train: tuple[torch.Tensor, torch.Tensor], test: tuple[torch.Tensor, torch.Tensor],
                *, sizes: list[int], target: int | None, epochs: int, batch_size: int, lr: float, w_nps: float,
                w_tv: float, palette: torch.Tensor, num_classes: int, seed: int, ablation_size: int,
                weight_scales: list[float]) -> tuple[dict, dict[int, dict[str, torch.Tensor]]]:
    """Targeted success of a universal patch against its size, with and without the NPS/TV terms.

    At each k in ``sizes`` it trains one patch with the per-pixel weights (``w_nps``, ``w_tv``)
    (``with_terms``) and one without them (``without_terms``) on ``train``, and measures them on
    ``test`` next to two baselines of the same size: a uniform random patch and a grey (0.5)
    patch. At ``ablation_size`` it also trains with the weights scaled by each of
    ``weight_scales`` (the trade-off the terms buy: success against NPS and TV); scales 0 and 1
    reuse the sweep's patches when ``ablation_size`` is one of ``sizes``.

    Randomness: each training draws from a fresh CPU generator seeded with ``seed`` (the same
    initial draw and batch order for every variant of a size); the random baseline from
    ``seed + 2``; the test locations from ``seed + 1``, the same for every patch of a size, so
    the variants are compared on the same images at the same places.

    Every success rate is a dict ``{success_rate, ci95: [lo, hi] (95% Wilson), n, nps, tv}``
    over the ``n`` test images not of class ``target`` (all images when untargeted).

    Returns ``(metrics, patches)``: ``metrics`` is plain JSON-able data, ``{"n_eval", "clean_accuracy",
    "clean_accuracy_ci95", "sizes": {"<k>": {"size", "area_fraction", "patches": {<variant>: rate}}},
    "ablation": {"size", "area_fraction", "w_nps", "w_tv", "scales": {"<s>": {"scale", "w_nps", "w_tv",
    **rate}}}}``; ``patches`` maps each k to ``{variant: patch (C, k, k) on the CPU}``.
    """
    xtr, ytr = train
    xte, yte = test
    c, h, w = xte.shape[1:]
    if not sizes or len(set(sizes)) != len(sizes):
        raise AttackError(f"sizes must be a non-empty list of distinct patch sizes, found {sizes}")
    if not weight_scales or any(s < 0 for s in weight_scales) or len(set(weight_scales)) != len(weight_scales):
        raise AttackError(f"weight_scales must be distinct and >= 0, found {weight_scales}")
    for k in [*sizes, ablation_size]:
        _check_patch_args(xte, k, target, palette, num_classes)
    if xtr.shape[1:] != xte.shape[1:]:
        raise AttackError(f"train and test images differ in shape: {tuple(xtr.shape[1:])} vs {tuple(xte.shape[1:])}")
    n_eval = int((yte != target).sum()) if target is not None else len(yte)
    if n_eval == 0:
        raise AttackError(f"no test image outside the target class {target}: nothing to measure")
    palette = palette.to(xte.device, xte.dtype)
    device = xte.device
    trained: dict[tuple[int, float, float], torch.Tensor] = {}

    def patch_for(k: int, wn: float, wt: float) -> torch.Tensor:
        key = (k, float(wn), float(wt))
        if key not in trained:
            trained[key] = train_patch(model, xtr, ytr, k=k, target=target, epochs=epochs, batch_size=batch_size,
                                       lr=lr, w_nps=wn, w_tv=wt, palette=palette, num_classes=num_classes,
                                       generator=make_generator(seed)).patch
        return trained[key]

    out_sizes: dict[str, dict] = {}
    patches: dict[int, dict[str, torch.Tensor]] = {}
    for k in sizes:
        variants = {
            "with_terms": patch_for(k, w_nps, w_tv),
            "without_terms": patch_for(k, 0.0, 0.0),
            "random_baseline": torch.rand((c, k, k), generator=make_generator(seed + 2)).to(device),
            "grey_baseline": torch.full((c, k, k), 0.5, device=device),
        }
        patches[k] = {name: p.detach().cpu() for name, p in variants.items()}
        out_sizes[str(k)] = {"size": k, "area_fraction": k * k / (h * w),
                             "patches": {name: _measure(model, xte, yte, p, target, palette, seed + 1)
                                         for name, p in variants.items()}}
    scales = {}
    for s in weight_scales:
        p = patch_for(ablation_size, s * w_nps, s * w_tv)
        scales[f"{s:g}"] = {"scale": s, "w_nps": s * w_nps, "w_tv": s * w_tv,
                            **_measure(model, xte, yte, p, target, palette, seed + 1)}
    with torch.no_grad():
        pred = torch.cat([model(xte[i:i + 500]).argmax(1)
                          for i in range(0, len(xte), 500)])
    clean = accuracy_ci((pred == yte).cpu())
    metrics = {"n_eval": n_eval, "clean_accuracy": clean["accuracy"], "clean_accuracy_ci95": clean["ci95"],
               "sizes": out_sizes,
               "ablation": {"size": ablation_size, "area_fraction": ablation_size ** 2 / (h * w),
                            "w_nps": w_nps, "w_tv": w_tv, "scales": scales}}
    return metrics, patches


def curve_rows(metrics: dict) -> list[dict]:
    """One row per size of :func:`patch_sweep`'s metrics: ``size, area_fraction`` and the success
    rate of each variant (columns ``with_terms, without_terms, random_baseline, grey_baseline``)."""
    return [{"size": m["size"], "area_fraction": m["area_fraction"],
             **{name: m["patches"][name]["success_rate"] for name in VARIANTS}}
            for m in sorted(metrics["sizes"].values(), key=lambda m: m["size"])]


@torch.no_grad()
def example_rows(model: nn.Module, patches: dict[int, torch.Tensor], x: torch.Tensor,
                 seed: int) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """Figure rows, one per size: ``(label, images, predicted classes)``.

    The first image of a row is the patch alone on a grey canvas, the others are ``x`` with the
    patch pasted at random locations (CPU generator seeded with ``seed``, fresh per row).
    """
    rows = []
    for k, patch in sorted(patches.items()):
        patch = patch.to(x.device, x.dtype)
        c, h, w = x.shape[1:]
        alone = apply_patch(torch.full((1, c, h, w), 0.5, device=x.device, dtype=x.dtype), patch,
                            torch.tensor([(h - k) // 2], device=x.device), torch.tensor([(w - k) // 2], device=x.device))
        r, q = random_locations(len(x), h, k, make_generator(seed), x.device)
        imgs = torch.cat([alone, apply_patch(x, patch, r, q)])
        rows.append((f"{k}x{k}", imgs.cpu(), model(imgs).argmax(1).cpu()))
    return rows
