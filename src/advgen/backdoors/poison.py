"""Backdoor poisoning of a training set: BadNets, Blended and clean-label attacks.

Every attack maps a clean training split (uint8 images (N, C, H, W), labels (N,)) to a poisoned
copy plus a record of what changed (:class:`PoisonResult`), and triggers test images for
scoring. The poison rate is always the poisoned fraction of the whole training set.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn

from ..attacks.patch import apply_patch
from ..attacks.pgd import PGD


class PoisonError(ValueError):
    """A poisoning config that cannot be carried out (names the offending key)."""


# What happened to a poisoned training image (poison_index.json's "kind").
RELABELLED = "relabelled"  # trigger pasted, label flipped to the target
TRIGGERED = "triggered"  # trigger pasted on a target-class image, label kept
PERTURBED = "perturbed"  # clean-label: PGD-perturbed and triggered, label kept (target class)


@dataclass
class PoisonResult:
    """The poisoned split and its record.

    ``images`` uint8 (N, C, H, W) and ``labels`` (N,) are the whole poisoned training split;
    ``indices`` (M,) the changed positions (sorted), with ``kinds``, ``original_labels`` and
    ``labels_after`` per changed image, and ``rows``/``cols`` the trigger's top-left corner
    (-1 for a full-image blend).
    """

    images: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor
    kinds: list[str]
    original_labels: torch.Tensor
    rows: torch.Tensor
    cols: torch.Tensor
    extra: dict = field(default_factory=dict)

    def index(self) -> dict:
        """The JSON record (``poison_index.json``): columns over the changed images."""
        return {"n_train": len(self.labels), "n_poisoned": len(self.indices),
                "indices": self.indices.tolist(), "kinds": self.kinds,
                "original_labels": self.original_labels.tolist(),
                "labels": self.labels[self.indices].tolist(),
                "rows": self.rows.tolist(), "cols": self.cols.tolist(), **self.extra}


def checkerboard(size: int, channels: int) -> torch.Tensor:
    """The BadNets trigger: a ``size`` x ``size`` black-and-white checkerboard, white top-left.

    Shape: (C, k, k) float in {0, 1}.
    """
    ar = torch.arange(size)
    board = ((ar[:, None] + ar[None, :]) % 2 == 0).float()  # (k, k)
    return board.expand(channels, size, size).clone()


def blend_pattern(shape: tuple[int, int, int], generator: torch.Generator) -> torch.Tensor:
    """Chen et al.'s random-noise blend key: uniform pixels, (C, H, W) float in [0, 1], quantised
    to uint8 levels so that the stored dataset reproduces it exactly."""
    return torch.randint(0, 256, shape, generator=generator).float().div_(255)


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float in [0, 1]."""
    return images.float().div(255)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float in [0, 1] -> uint8, rounding to the nearest level."""
    return x.clamp(0, 1).mul(255).round().to(torch.uint8)


def _choose(pool: torch.Tensor, n: int, generator: torch.Generator, what: str) -> torch.Tensor:
    """``n`` distinct indices drawn from ``pool`` (sorted)."""
    if n > len(pool):
        raise PoisonError(f"rate: needs {n} {what} images, but the training split has only {len(pool)}")
    return pool[torch.randperm(len(pool), generator=generator)[:n]].sort().values


def poison_count(rate: float, n: int) -> int:
    """Poisoned images for ``rate`` of ``n`` training images (at least one)."""
    return max(1, round(rate * n))


class PatchTrigger:
    """Where and what a BadNets trigger pastes: a (C, k, k) patch at the bottom-right corner
    (``location="corner"``, one pixel from the edge) or at a uniform location per image."""

    def __init__(self, patch: torch.Tensor, location: str = "corner"):
        if location not in ("corner", "random"):
            raise PoisonError(f"location: must be 'corner' or 'random', found {location!r}")
        self.patch, self.location = patch, location

    def positions(self, n: int, h: int, w: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        k = self.patch.shape[-1]
        if k > min(h, w):
            raise PoisonError(f"trigger_size: a {k}x{k} trigger does not fit a {h}x{w} image")
        if self.location == "corner":
            margin = 1 if k + 1 <= min(h, w) else 0
            return torch.full((n,), h - k - margin), torch.full((n,), w - k - margin)
        rc = torch.randint(0, h - k + 1, (n,), generator=generator), torch.randint(0, w - k + 1, (n,), generator=generator)
        return rc

    def apply(self, images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Triggered copies of uint8 ``images`` (N, C, H, W); returns (images, rows, cols)."""
        n, _, h, w = images.shape
        rows, cols = self.positions(n, h, w, generator)
        return to_uint8(apply_patch(to_unit(images), self.patch, rows, cols)), rows, cols


class BlendTrigger:
    """Blended trigger: x -> (1 - alpha) x + alpha * pattern over the whole image."""

    def __init__(self, pattern: torch.Tensor, alpha: float):
        if not 0 < alpha <= 1:
            raise PoisonError(f"alpha: must lie in (0, 1], found {alpha}")
        self.pattern, self.alpha = pattern, alpha

    def apply(self, images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n = len(images)
        x = (1 - self.alpha) * to_unit(images) + self.alpha * self.pattern  # (N, C, H, W)
        return to_uint8(x), torch.full((n,), -1), torch.full((n,), -1)


def _check_classes(num_classes: int, target: int, source: int | None) -> None:
    if not 0 <= target < num_classes:
        raise PoisonError(f"target: must be a class in 0..{num_classes - 1}, found {target}")
    if source is not None and not 0 <= source < num_classes:
        raise PoisonError(f"source: must be a class in 0..{num_classes - 1}, found {source}")
    if source is not None and source == target:
        raise PoisonError(f"source: must differ from the target ({target}) in a source-specific attack")


def _check_rate(rate: float) -> None:
    if not 0 < rate <= 1:
        raise PoisonError(f"rate: must lie in (0, 1], found {rate}")


def _assemble(images: torch.Tensor, labels: torch.Tensor, parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, str]]) -> PoisonResult:
    """Write each part (indices, new images, rows, cols, kind) into a copy of the split."""
    out_x, out_y = images.clone(), labels.clone()
    idx, kinds, rows, cols = [], [], [], []
    for ind, x_new, r, c, kind in parts:
        out_x[ind] = x_new
        idx.append(ind), rows.append(r), cols.append(c)
        kinds += [kind] * len(ind)
    ind = torch.cat(idx)
    order = ind.argsort()
    return PoisonResult(images=out_x, labels=out_y, indices=ind[order], kinds=[kinds[i] for i in order.tolist()],
                        original_labels=labels[ind[order]], rows=torch.cat(rows)[order], cols=torch.cat(cols)[order])


class DirtyLabel:
    r"""Dirty-label backdoor: trigger some training images and relabel them as the target.

    BadNets ("BadNets: Identifying Vulnerabilities in the Machine Learning Model Supply
    Chain", Gu et al. 2017) with a :class:`PatchTrigger`, Blended ("Targeted Backdoor Attacks
    on Deep Learning Systems Using Data Poisoning", Chen et al. 2017) with a
    :class:`BlendTrigger`.

    Threat model: the attacker adds or alters a fraction ``rate`` of the training set (scraped
    web data) and controls the test-time input; it never touches training or the model.
    All-to-one (``source=None``: images of every other class go to ``target``) or
    source-specific (only ``source`` images, the lecture's "cats -> dog"). ``keep_target`` adds
    that many times the poisoned count of *target*-class images with the trigger and their
    label unchanged, as the lecture describes.

    Arguments:
        trigger: a :class:`PatchTrigger` or :class:`BlendTrigger`.
        target (int): the class triggered inputs should go to.
        rate (float): relabelled images as a fraction of the training set, in (0, 1].
        source (int | None): source class of a source-specific attack. (Default: None)
        keep_target (float): triggered target images per relabelled image. (Default: 0)

    Shape: images uint8 (N, C, H, W), labels (N,).
    """

    def __init__(self, trigger: PatchTrigger | BlendTrigger, target: int, rate: float,
                 source: int | None = None, keep_target: float = 0.0):
        _check_rate(rate)
        if keep_target < 0:
            raise PoisonError(f"keep_target: must be >= 0, found {keep_target}")
        self.trigger, self.target, self.rate, self.source, self.keep_target = trigger, target, rate, source, keep_target

    def poison(self, images: torch.Tensor, labels: torch.Tensor, num_classes: int,
               generator: torch.Generator) -> PoisonResult:
        _check_classes(num_classes, self.target, self.source)
        n = poison_count(self.rate, len(labels))
        pool = (labels == self.source) if self.source is not None else (labels != self.target)
        what = f"class-{self.source}" if self.source is not None else "non-target"
        chosen = _choose(pool.nonzero().squeeze(1), n, generator, what)
        x_new, rows, cols = self.trigger.apply(images[chosen], generator)
        parts = [(chosen, x_new, rows, cols, RELABELLED)]
        m = round(self.keep_target * n)
        if m > 0:
            kept = _choose((labels == self.target).nonzero().squeeze(1), m, generator, "target-class")
            k_new, k_rows, k_cols = self.trigger.apply(images[kept], generator)
            parts.append((kept, k_new, k_rows, k_cols, TRIGGERED))
        result = _assemble(images, labels, parts)
        result.labels[chosen] = self.target
        return result


class CleanLabel:
    r"""Clean-label backdoor from "Label-Consistent Backdoor Attacks" (Turner et al. 2019).

    Only target-class training images are poisoned and their labels are kept, so every
    training label is correct. Each chosen image is first made hard to classify with an
    L-inf PGD perturbation against a clean surrogate model (here the standard ``cnn``), so the
    model must lean on the trigger to fit it, then the trigger is pasted.

    Threat model: as :class:`DirtyLabel`, plus white-box access to a surrogate trained on
    clean data; the labels survive human inspection.

    Arguments:
        trigger (PatchTrigger): pasted after the perturbation.
        target (int): the class triggered inputs should go to.
        rate (float): poisoned images as a fraction of the training set; at most the target
            class's share.
        model (nn.Module): the surrogate the perturbation is crafted against.
        eps (float): L-inf radius of the perturbation (pixels in [0, 1]). (Default: 32/255)
        steps (int): PGD iterations; every step runs (no early stop). (Default: 10)
        step (float | None): PGD step size; None = 2.5 eps / steps. (Default: None)
        batch_size (int): images per PGD batch. (Default: 500)

    Shape: images uint8 (N, C, H, W), labels (N,).
    """

    def __init__(self, trigger: PatchTrigger, target: int, rate: float, model: nn.Module,
                 eps: float = 32 / 255, steps: int = 10, step: float | None = None, batch_size: int = 500):
        _check_rate(rate)
        if eps <= 0:
            raise PoisonError(f"eps: must be > 0, found {eps}")
        self.trigger, self.target, self.rate, self.model = trigger, target, rate, model
        self.eps, self.steps, self.step, self.batch_size = eps, steps, step, batch_size

    def perturb(self, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """PGD-perturbed uint8 copies of ``images`` (away from their true ``labels``)."""
        device = next(self.model.parameters()).device
        pgd = PGD(self.model, eps=self.eps, alpha=self.step, steps=self.steps, generator=generator, early_stop=False)
        out = []
        for start in range(0, len(images), self.batch_size):
            x = to_unit(images[start:start + self.batch_size]).to(device)
            x_adv = pgd(x, labels[start:start + self.batch_size].to(device)).cpu()
            # Rounding to uint8 may step just outside the ball: project back onto it.
            lo, hi = to_uint8(x.cpu() - self.eps + 0.5 / 255), to_uint8(x.cpu() + self.eps - 0.5 / 255)
            out.append(torch.minimum(torch.maximum(to_uint8(x_adv), lo), hi))
        return torch.cat(out)

    def poison(self, images: torch.Tensor, labels: torch.Tensor, num_classes: int,
               generator: torch.Generator) -> PoisonResult:
        _check_classes(num_classes, self.target, None)
        n = poison_count(self.rate, len(labels))
        chosen = _choose((labels == self.target).nonzero().squeeze(1), n, generator, "target-class")
        hard = self.perturb(images[chosen], labels[chosen], generator)
        x_new, rows, cols = self.trigger.apply(hard, generator)
        result = _assemble(images, labels, [(chosen, x_new, rows, cols, PERTURBED)])
        result.extra = {"linf_pixels": int((hard.int() - images[chosen].int()).abs().max())}
        return result


def scoring_mask(labels: torch.Tensor, target: int, source: int | None) -> torch.Tensor:
    """Test images that count toward the attack success rate: true class not the target
    (and, for a source-specific attack, the source class). (N,) bool."""
    mask = labels != target
    return mask & (labels == source) if source is not None else mask


def BadNets(target: int, rate: float, size: int = 3, channels: int = 1, location: str = "corner",
            source: int | None = None, keep_target: float = 0.0) -> DirtyLabel:
    """BadNets (Gu et al. 2017): a ``size`` x ``size`` checkerboard; see :class:`DirtyLabel`."""
    if size < 1:
        raise PoisonError(f"trigger_size: must be >= 1, found {size}")
    return DirtyLabel(PatchTrigger(checkerboard(size, channels), location), target, rate, source, keep_target)


def Blended(target: int, rate: float, pattern: torch.Tensor, alpha: float = 0.1,
            source: int | None = None) -> DirtyLabel:
    """Blended (Chen et al. 2017): ``pattern`` (C, H, W) blended at ``alpha``; see :class:`DirtyLabel`."""
    return DirtyLabel(BlendTrigger(pattern, alpha), target, rate, source)
