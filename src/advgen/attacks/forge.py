"""The lecture's "iguana" attacks: forge an input the fixed model assigns to a target class."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .base import AttackError, check_images


@dataclass
class ForgeResult:
    images: torch.Tensor  # (B, C, H, W) in [0, 1]
    success: torch.Tensor  # (B,) bool: predicted as the target
    steps: torch.Tensor  # (B,) gradient steps until success (or the budget)
    grad_evals: int


def _check_targets(targets: torch.Tensor, num_classes: int) -> None:
    if len(targets) and (int(targets.min()) < 0 or int(targets.max()) >= num_classes):
        raise AttackError(f"target classes must lie in [0, {num_classes}), "
                          f"found [{int(targets.min())}, {int(targets.max())}]")


def _descend(model: nn.Module, x: torch.Tensor, targets: torch.Tensor, loss_fn, steps: int, lr: float) -> ForgeResult:
    """Adam on the pixels (kept in [0, 1]); each example is frozen at the first step where the
    model predicts its target, i.e. the first point of its path that crosses the boundary."""
    x = x.clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr)
    done = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    taken = torch.full((len(x),), steps, dtype=torch.long, device=x.device)
    frozen = x.detach().clone()
    evals = 0
    for step in range(steps):
        with torch.enable_grad():
            logits = model(x)
            per = loss_fn(logits, x)  # (B,)
            hit = logits.argmax(1) == targets
            newly = hit & ~done
            taken[newly], frozen[newly] = step, x.detach()[newly]
            done |= hit
            if bool(done.all()):
                break
            opt.zero_grad()
            # Finished examples stop moving: their loss terms are masked out.
            (per * (~done).float()).sum().backward()
        evals += int((~done).sum())
        opt.step()
        with torch.no_grad():
            x.clamp_(0.0, 1.0)
    with torch.no_grad():
        final = x.detach()
        out = torch.where(done.view(-1, 1, 1, 1), frozen, final)
        success = model(out).argmax(1) == targets
    return ForgeResult(out, success, taken, evals)


def forge_from_noise(model: nn.Module, targets: torch.Tensor, shape: tuple[int, int, int], *,
                     steps: int = 200, lr: float = 0.05, num_classes: int,
                     generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> ForgeResult:
    r"""C1: start from uniform noise and descend the cross-entropy to ``targets`` on the pixels.

    The model is fixed; only the input moves. White box, targeted, unbounded.

    Arguments:
        model (nn.Module): the fixed classifier. targets (Tensor): (B,) target classes.
        shape (tuple): (C, H, W) of one image. steps (int): Adam steps at most. (Default: 200)
        lr (float): Adam's step size on the pixels. (Default: 0.05)
        num_classes (int): K, to check targets. generator (torch.Generator): the noise.

    Shape: output images (B, C, H, W) in [0, 1].
    """
    _check_targets(targets, num_classes)
    # Drawn on the generator's device (a CPU generator in the stages), then moved.
    gen_dev = generator.device if generator is not None else torch.device("cpu")
    x0 = torch.rand((len(targets), *shape), generator=generator, device=gen_dev).to(device)
    return _descend(model.eval(), x0, targets.to(device),
                    lambda z, x: F.cross_entropy(z, targets.to(device), reduction="none"), steps, lr)


def forge_from_image(model: nn.Module, x0: torch.Tensor, targets: torch.Tensor, *, lam: float = 0.05,
                     loss: str = "mse", steps: int = 300, lr: float = 0.01, num_classes: int) -> ForgeResult:
    r"""C2: start from a real image x0 and minimise the lecture's loss

    ``||softmax(f(x)) - onehot(t)||^2 + lam * ||x - x0||^2``  (``loss="mse"``), or
    ``CE(f(x), t) + lam * ||x - x0||^2``  (``loss="ce"``),

    by Adam on the pixels, kept in [0, 1]; each image stops at the first step where it is
    classified as its target.

    Arguments:
        model (nn.Module): the fixed classifier. x0 (Tensor): (B, C, H, W) in [0, 1].
        targets (Tensor): (B,) target classes. lam (float): weight of the distance term.
        loss (str): "mse" (the lecture's) or "ce". steps, lr: Adam on the pixels.

    Shape: output images (B, C, H, W) in [0, 1].
    """
    check_images(x0)
    _check_targets(targets, num_classes)
    if loss not in ("mse", "ce"):
        raise AttackError(f"loss must be 'mse' or 'ce', found {loss!r}")
    onehot = F.one_hot(targets, num_classes).float()

    def objective(z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        fit = ((z.softmax(1) - onehot) ** 2).sum(1) if loss == "mse" else F.cross_entropy(z, targets, reduction="none")
        return fit + lam * ((x - x0) ** 2).flatten(1).sum(1)

    return _descend(model.eval(), x0, targets, objective, steps, lr)


@torch.no_grad()
def realism(features, forged: torch.Tensor, targets: torch.Tensor, ref_x: torch.Tensor, ref_y: torch.Tensor,
            real_x: torch.Tensor, real_y: torch.Tensor, q: float = 0.95) -> dict:
    """How far forged images lie from real images of their target class.

    ``features`` maps images (B, C, H, W) to vectors (B, D). For each class t the threshold is
    the ``q`` quantile of the distance from real held-out images of t (``real_x``) to their
    nearest reference image of t (``ref_x``); a forged image is "unlike any real t" when its
    nearest reference image of t is farther than that. Distances are reported in feature and
    pixel space.
    """
    from ..metrics import nearest_distances, quantile

    out = {"feature": {"forged": [], "real": []}, "pixel": {"forged": [], "real": []}, "beyond": []}
    for t in targets.unique().tolist():
        ref, real, fake = ref_x[ref_y == t], real_x[real_y == t], forged[targets == t]
        for space, fn in (("feature", features), ("pixel", lambda v: v.flatten(1))):
            d_real = nearest_distances(fn(real), fn(ref))
            d_fake = nearest_distances(fn(fake), fn(ref))
            out[space]["real"].append(d_real)
            out[space]["forged"].append(d_fake)
            if space == "feature":
                out["beyond"].append(d_fake > quantile(d_real, q))
    summary = {}
    for space in ("feature", "pixel"):
        real, fake = torch.cat(out[space]["real"]), torch.cat(out[space]["forged"])
        summary[space] = {"median_nn_forged": quantile(fake, 0.5), "median_nn_real": quantile(real, 0.5),
                          "ratio": quantile(fake, 0.5) / max(quantile(real, 0.5), 1e-12)}
    summary["fraction_beyond_real_q"] = float(torch.cat(out["beyond"]).float().mean())
    summary["q"] = q
    return summary


def _dist(a: torch.Tensor, b: torch.Tensor, norm: str) -> torch.Tensor:
    d = (a - b).flatten(1)
    return d.norm(dim=1) if norm == "L2" else d.abs().amax(1)


def c1_experiment(model: nn.Module, n_per_class: int, shape: tuple[int, int, int], *, steps: int, lr: float,
                  num_classes: int, reference: tuple[torch.Tensor, torch.Tensor],
                  real: tuple[torch.Tensor, torch.Tensor], generator: torch.Generator) -> tuple[dict, torch.Tensor]:
    """C1: forge ``n_per_class`` images of every class from uniform noise and measure how
    unlike real images of the target they are (:func:`realism` in the model's features).

    Returns (metrics with a 95% Wilson interval on the success rate, forged images (K * n, C, H, W)).
    """
    from ..stats import wilson

    device = reference[0].device
    targets = torch.arange(num_classes, device=device).repeat(n_per_class)
    # Noise drawn on the CPU generator, then moved: a GPU run starts from the same noise.
    res = forge_from_noise(model, targets, shape, steps=steps, lr=lr, num_classes=num_classes,
                           generator=generator, device=device)
    features = getattr(model, "embed", lambda v: model(v))
    with torch.no_grad():
        conf = model(res.images).softmax(1).gather(1, targets[:, None]).squeeze(1)
    ok = res.success
    return {"n": len(targets), "success_rate": float(ok.float().mean()),
            "success_ci95": list(wilson(int(ok.sum()), len(targets))),
            "median_steps": float(res.steps.float().median()), "mean_target_confidence": float(conf.mean()),
            "realism": realism(features, res.images[ok], targets[ok], *reference, *real)}, res.images


def c2_experiment(model: nn.Module, x0: torch.Tensor, y0: torch.Tensor, reference: tuple[torch.Tensor, torch.Tensor], *,
                  lam: float, steps: int, lr: float, num_classes: int,
                  generator: torch.Generator) -> tuple[dict, dict[str, torch.Tensor], torch.Tensor]:
    """C2: send each real image x0 (B, C, H, W) to a random other class with the lecture's loss
    (and the CE variant), and compare the distance travelled with the distance from x0 to the
    nearest real image of the target class (``reference`` = (images, labels)).

    Returns (metrics per loss, forged images per loss, targets (B,)).
    """
    from ..metrics import nearest_distances, quantile
    from ..stats import wilson

    ref_x, ref_y = reference
    shift = torch.randint(1, num_classes, (len(y0),), generator=generator).to(y0.device)
    targets = (y0 + shift) % num_classes
    nearest = torch.stack([nearest_distances(x0[i:i + 1].flatten(1), ref_x[ref_y == targets[i]].flatten(1))[0]
                           for i in range(len(y0))])
    metrics, images = {}, {}
    for loss in ("mse", "ce"):
        r = forge_from_image(model, x0, targets, lam=lam, loss=loss, steps=steps, lr=lr, num_classes=num_classes)
        ok = r.success
        l2, linf = _dist(r.images, x0, "L2")[ok], _dist(r.images, x0, "Linf")[ok]
        closer = (l2 < nearest[ok]) if ok.any() else torch.zeros(0, dtype=torch.bool)
        metrics[loss] = {"n": len(y0), "success_rate": float(ok.float().mean()),
                         "success_ci95": list(wilson(int(ok.sum()), len(y0))),
                         "median_l2": quantile(l2, 0.5), "median_linf": quantile(linf, 0.5),
                         "median_l2_x0_to_nearest_real_target": quantile(nearest[ok], 0.5),
                         "fraction_closer_to_x0_than_any_real_target": float(closer.float().mean()) if len(closer) else 0.0,
                         "closer_ci95": list(wilson(int(closer.sum()), len(closer)))}
        images[loss] = r.images
    return metrics, images, targets
