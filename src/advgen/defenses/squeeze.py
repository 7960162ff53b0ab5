"""Feature squeezing (Xu et al., NDSS 2018) as an input-time defense, evaluated naively and adaptively.

"Feature Squeezing: Detecting Adversarial Examples in Deep Neural Networks" (Xu, Evans, Qi,
NDSS 2018) squeezes away input detail an attacker could use: fewer grey levels
(:func:`bit_depth`) and local smoothing (:func:`median_filter`). It is used two ways here:

* **as preprocessing** (:class:`Squeezed`): classify ``model(squeeze(x))``;
* **as a detector** (:class:`SqueezeDetector`): reject ``x`` when the softmax of the raw input
  and of a squeezed input are far apart in L1 (the max over the squeezers: Xu et al.'s joint
  detector); the threshold gives a chosen false-positive rate on clean validation images
  (:func:`fit_threshold`), and the raw model classifies what is not rejected.

Each use is evaluated twice (:func:`evaluate_squeezing`): *naively*, with attacks crafted on
the raw model that ignore the squeeze, and *adaptively*: the squeezer's zero or useless
gradient is bypassed by BPDA (Athalye, Carlini, Wagner, ICML 2018: the squeezer in the forward
pass, the identity in the backward pass), Square (scores only) queries the squeezed model
itself, and :class:`DetectorAwarePGD` also pushes the detection score under the threshold
(He et al., WOOT 2017, evaded feature-squeezing detectors with such a joint objective). The
drop from naive to adaptive is the point: every defense is met by a new attack.

Threat model of every attack here: untargeted, L-inf, radius ``eps``, images in [0, 1],
white box (gradient attacks) or score-based black box (Square). Randomness only from explicit
``torch.Generator`` objects (CPU; numbers drawn there are moved to the inputs' device).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..attacks.base import Attack, project
from ..attacks.fgsm import FGSM
from ..attacks.pgd import PGD, ascend, random_start
from ..attacks.robustness import batched
from ..attacks.square import Square
from ..evaluation import predict
from ..stats import accuracy_ci, mcnemar, wilson

SQUEEZERS = ("bit_depth", "median", "both")
VALIDATION_SEED_OFFSET = 1  # the validation images are drawn with seed + this (the evaluation subset: seed)
ROC_POINTS = 50  # target false-positive rates 0, 1/50, ..., 1 of the ROC rows


# ----------------------------------------------------------------------------- squeezers

def bit_depth(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Reduce colour depth to ``bits`` bits: round each value to the nearest of 2^bits levels.

    Xu et al.'s squeezer: ``round(x * (2^bits - 1)) / (2^bits - 1)``; ties round half to
    even (``torch.round``). Its gradient is zero almost everywhere.

    Shape: x (B, C, H, W) in [0, 1] -> (B, C, H, W) in [0, 1].
    """
    if not 1 <= bits <= 8:
        raise ValueError(f"bits must lie in 1-8, found {bits}")
    levels = 2 ** bits - 1
    return torch.round(x * levels) / levels


def median_filter(x: torch.Tensor, k: int) -> torch.Tensor:
    """Local smoothing: the median of each ``k`` x ``k`` window, per channel.

    Borders are padded by reflection without repeating the edge (``F.pad`` mode "reflect",
    scipy's "mirror": d c b | a b c d), so every window holds k*k image pixels; k*k is odd,
    so the median is one of them. ``k = 1`` is the identity.

    Shape: x (B, C, H, W) with k // 2 < H, W -> (B, C, H, W).
    """
    if k < 1 or k % 2 == 0:
        raise ValueError(f"the median window must be odd and >= 1, found {k}")
    if k == 1:
        return x.clone()
    b, c, h, w = x.shape
    p = k // 2
    if p >= h or p >= w:
        raise ValueError(f"a {k}x{k} median window needs images larger than {p}x{p}, found {h}x{w}")
    xp = F.pad(x.reshape(b * c, 1, h, w), (p, p, p, p), mode="reflect")  # (B*C, 1, H+2p, W+2p)
    windows = F.unfold(xp, k)  # (B*C, k*k, H*W)
    return windows.median(dim=1).values.reshape(b, c, h, w)


def _both(x: torch.Tensor, bits: int, k: int) -> torch.Tensor:
    return median_filter(bit_depth(x, bits), k)


@dataclass(frozen=True)
class Squeezer:
    """A named squeezer: ``fn`` maps images (B, C, H, W) in [0, 1] to squeezed ones, same shape."""

    name: str
    fn: Callable[[torch.Tensor], torch.Tensor]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def build_squeezers(bits: int, median: int) -> dict[str, Squeezer]:
    """The three squeezers of the stage, in the order of :data:`SQUEEZERS`.

    ``"bit_depth"``: :func:`bit_depth` to ``bits``; ``"median"``: :func:`median_filter` with
    a ``median`` x ``median`` window; ``"both"``: bit depth, then the median filter.
    """
    return {"bit_depth": Squeezer("bit_depth", partial(bit_depth, bits=bits)),
            "median": Squeezer("median", partial(median_filter, k=median)),
            "both": Squeezer("both", partial(_both, bits=bits, k=median))}


class _StraightThrough(torch.autograd.Function):
    """Forward: the squeezed tensor, bit for bit; backward: the gradient passes to x unchanged."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, squeezed: torch.Tensor) -> torch.Tensor:
        return squeezed.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad, None


def straight_through(x: torch.Tensor, squeezed: torch.Tensor) -> torch.Tensor:
    """BPDA (Athalye et al. 2018): ``squeezed`` in the forward pass, the identity backward.

    The gradient of ``x + (squeezed - x).detach()``, but with the forward value exactly
    ``squeezed`` (that sum can differ from it in the last bit), so a BPDA model's predictions
    are the squeezed model's. Shape: x and squeezed (B, C, H, W) -> (B, C, H, W).
    """
    return _StraightThrough.apply(x, squeezed.detach())


class Squeezed(nn.Module):
    r"""Feature squeezing as preprocessing: ``forward(x) = model(squeezer(x))``.

    Arguments:
        model (nn.Module): the classifier, (B, C, H, W) in [0, 1] -> logits (B, K).
        squeezer (Squeezer): the input transformation.
        bpda (bool): apply the squeezer as a straight-through estimator (:func:`straight_through`,
            BPDA of Athalye et al. 2018): the same outputs, but the gradient wrt x is that of
            ``model`` at the squeezed point. Only for crafting attacks. (Default: False)

    ``sidecar`` is copied from ``model`` (when it has one) so that ``Attack.num_classes`` works.

    Shape: x (B, C, H, W) -> logits (B, K).
    """

    def __init__(self, model: nn.Module, squeezer: Squeezer, bpda: bool = False):
        super().__init__()
        self.model = model
        self.squeezer = squeezer
        self.bpda = bpda
        meta = getattr(model, "sidecar", None)
        if meta is not None:
            self.sidecar = meta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.squeezer(x)  # (B, C, H, W)
        if self.bpda:
            s = straight_through(x, s)
        return self.model(s)


# ----------------------------------------------------------------------------- the detector

class SqueezeDetector:
    r"""Xu et al.'s joint detector: the score of x is the largest L1 distance between the
    softmax of the raw input and the softmax of a squeezed input, over the squeezers:

    ``score(x) = max_s || softmax(model(x)) - softmax(model(s(x))) ||_1``, in [0, 2].

    An input is rejected (flagged adversarial) when ``score(x) > threshold``.

    Arguments:
        model (nn.Module): the classifier (frozen, eval mode).
        squeezers (Sequence[Squeezer]): at least one squeezer.

    Shape: x (B, C, H, W) -> scores (B,).
    """

    def __init__(self, model: nn.Module, squeezers: Sequence[Squeezer]):
        if not squeezers:
            raise ValueError("the detector needs at least one squeezer")
        self.model = model.eval()
        self.squeezers = list(squeezers)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.squeezers]

    def logits(self, x: torch.Tensor, bpda: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(raw logits (B, K), squeezed logits (S, B, K)), one forward pass of (1 + S) * B inputs.

        ``bpda=True`` passes the squeezers straight through in the backward pass, so the
        result is differentiable wrt x (with grad enabled).
        """
        sq = [straight_through(x, s(x)) if bpda else s(x) for s in self.squeezers]  # S x (B, C, H, W)
        z = self.model(torch.cat([x, *sq]))  # ((1 + S) * B, K)
        z = z.view(1 + len(sq), len(x), -1)  # (1 + S, B, K)
        return z[0], z[1:]

    @staticmethod
    def score_from_logits(z: torch.Tensor, zs: torch.Tensor) -> torch.Tensor:
        """score (B,) from raw logits z (B, K) and squeezed logits zs (S, B, K)."""
        p, ps = z.softmax(-1), zs.softmax(-1)
        return (p.unsqueeze(0) - ps).abs().sum(-1).amax(0)  # (S, B) -> (B,)

    def score(self, x: torch.Tensor, bpda: bool = False) -> torch.Tensor:
        """Scores (B,), differentiable through BPDA when ``bpda=True`` and grad is enabled."""
        return self.score_from_logits(*self.logits(x, bpda))

    @torch.no_grad()
    def inspect(self, x: torch.Tensor, batch_size: int = 250) -> tuple[torch.Tensor, torch.Tensor]:
        """(raw model's predictions (N,), scores (N,)) of x (N, C, H, W), batched, no gradient."""
        preds, scores = [], []
        for i in range(0, len(x), batch_size):
            z, zs = self.logits(x[i:i + batch_size])
            preds.append(z.argmax(1))
            scores.append(self.score_from_logits(z, zs))
        if not preds:
            return torch.empty(0, dtype=torch.long), torch.empty(0)
        return torch.cat(preds), torch.cat(scores)

    def scores(self, x: torch.Tensor, batch_size: int = 250) -> torch.Tensor:
        """Scores (N,) of x (N, C, H, W), batched, no gradient."""
        return self.inspect(x, batch_size)[1]


def fit_threshold(clean_scores: torch.Tensor, fpr: float) -> float:
    """The threshold that flags a fraction ``fpr`` of ``clean_scores`` (N,) (flagged: score > threshold).

    With the scores sorted ascending s_1 <= ... <= s_N and m = floor(fpr * N), the threshold is
    s_{N-m}: the m largest scores lie above it. Tie rule: a score equal to the threshold is not
    flagged, so ties at s_{N-m} can only lower the false-positive rate on these scores: it is
    m / N when s_{N-m} < s_{N-m+1}, less otherwise; never more than ``fpr``. ``fpr = 0`` gives
    the largest score (nothing flagged); m = N (``fpr = 1``) gives -inf (everything flagged).
    """
    if not 0.0 <= fpr <= 1.0:
        raise ValueError(f"fpr must lie in [0, 1], found {fpr}")
    s = clean_scores.detach().double().cpu().flatten().sort().values
    n = len(s)
    if n == 0:
        raise ValueError("no clean scores to fit the threshold on")
    m = math.floor(fpr * n + 1e-9)  # 1e-9: 0.07 * 100 is 7.000000000000001
    if m >= n:
        return float("-inf")
    return float(s[n - 1 - m])


def _rate(flags: torch.Tensor) -> dict[str, Any]:
    """``{"rate", "ci95", "n"}`` of a (N,) bool tensor; the rate is None when N = 0."""
    n, k = int(flags.numel()), int(flags.sum())
    return {"rate": k / n if n else None, "ci95": list(wilson(k, n)), "n": n}


def detection_metrics(clean_scores: torch.Tensor, adv_scores: torch.Tensor, threshold: float) -> dict[str, Any]:
    """How well the scores separate clean (negatives) from adversarial (positives) inputs.

    Returns ``{"auroc", "tpr", "tpr_ci95", "fpr", "fpr_ci95", "n_clean", "n_adv"}``: the area
    under the ROC curve (sklearn ``roc_auc_score``; None unless both sets are non-empty), and
    the true- and false-positive rates when flagging ``score > threshold``, with 95% Wilson
    intervals (None where a set is empty).
    """
    from sklearn.metrics import roc_auc_score

    c, a = clean_scores.detach().double().cpu(), adv_scores.detach().double().cpu()
    auroc = None
    if len(c) and len(a):
        labels = torch.cat([torch.zeros(len(c)), torch.ones(len(a))]).numpy()
        auroc = float(roc_auc_score(labels, torch.cat([c, a]).numpy()))
    tpr, fpr = _rate(a > threshold), _rate(c > threshold)
    return {"auroc": auroc, "tpr": tpr["rate"], "tpr_ci95": tpr["ci95"], "fpr": fpr["rate"], "fpr_ci95": fpr["ci95"],
            "n_clean": len(c), "n_adv": len(a)}


def roc_rows(clean_scores: torch.Tensor, adv_scores: dict[str, torch.Tensor],
             n_points: int = ROC_POINTS) -> list[dict[str, float]]:
    """ROC curves of several attacks at ``n_points + 1`` shared thresholds, as TSV rows.

    The thresholds are :func:`fit_threshold` of ``clean_scores`` at target false-positive rates
    0, 1/n_points, ..., 1, so every attack shares the measured ``fpr`` column; each row is
    ``{"fpr_target", "fpr", <attack>: tpr, ...}`` (tpr NaN for an empty set).
    """
    c = clean_scores.detach().double().cpu()
    adv = {k: v.detach().double().cpu() for k, v in adv_scores.items()}
    rows = []
    for i in range(n_points + 1):
        target = i / n_points
        t = fit_threshold(c, target)
        row = {"fpr_target": target, "fpr": float((c > t).double().mean())}
        for name, a in adv.items():
            row[name] = float((a > t).double().mean()) if len(a) else float("nan")
        rows.append(row)
    return rows


def safety_net(y: torch.Tensor, clean_pred: torch.Tensor, clean_rejected: torch.Tensor, adv_pred: torch.Tensor,
               adv_rejected: torch.Tensor) -> dict[str, dict[str, Any]]:
    """Accuracy of classifier + detector as a safety net (the lecture's view).

    A clean image is handled correctly when it is classified correctly AND not rejected; an
    adversarial image when it is rejected OR classified correctly. Returns ``{"clean",
    "adversarial", "mean"}``, each ``{"accuracy", "ci95", "n"}`` (:func:`advgen.stats.accuracy_ci`).
    The mean's interval is Wilson's over the 2N outcomes pooled; they are paired (two per
    image), so it is approximate.

    Shape: every argument (N,) (labels, predictions, bool rejections), on one device.
    """
    clean_ok = (clean_pred == y) & ~clean_rejected.bool()  # (N,)
    adv_ok = adv_rejected.bool() | (adv_pred == y)  # (N,)
    return {"clean": accuracy_ci(clean_ok.cpu()), "adversarial": accuracy_ci(adv_ok.cpu()),
            "mean": accuracy_ci(torch.cat([clean_ok, adv_ok]).cpu())}


# ----------------------------------------------------------------------------- the adaptive attack

class DetectorAwarePGD(Attack):
    r"""L-inf PGD against classifier + feature-squeezing detector, through BPDA.

    The adaptive attack on the detector (in the spirit of He et al. 2017, "Adversarial Example
    Defenses: Ensembles of Weak Defenses are not Strong"; BPDA from Athalye et al. 2018). It
    ascends, per example,

    ``loss(x) = CE(model(s(x)), y) - weight * relu(score(x) - threshold)``  (times a gate, below)

    where ``s`` is the squeezer named ``ce_on`` (applied straight through, so its gradient is
    the identity; ``"raw"``: no squeezer) and ``score`` is the detector's joint score,
    differentiated through BPDA: it misleads the classifier while pulling the raw/squeezed
    distance under the threshold. Steps are ``alpha * sign(grad)`` projected onto the eps-ball
    and [0, 1], from a random start (:func:`advgen.attacks.pgd.random_start`).

    ``ce_on="raw"`` (the default) attacks the classifier the safety net actually uses (the
    raw model); ``ce_on="both"`` misleads the squeezed model instead, which implies misleading
    the raw one only once the score is low. On Fashion-MNIST's CNN (eps 0.1, 200 images) the
    raw CE escaped the safety net far more often (about 88% vs 64% of the images), so both
    are reported by :func:`evaluate_squeezing`.

    ``gate=True`` (the default) multiplies the detection term by [raw model misclassifies x],
    per example: pure CE until the example crosses the boundary, then CE minus the penalty.
    Ungated, the penalty's gradient holds examples at the decision boundary, where the raw
    and squeezed outputs disagree most: on the 8x8 digits CNN (bit depth 2, eps 0.2,
    weight 10) 70% of the images stayed handled by the safety net ungated, 12.5% gated; on
    Fashion-MNIST the two agree.

    Success means escaping the safety net: the raw model (the detector's classifier)
    misclassifies the iterate AND ``score <= threshold``. Per example the first such iterate
    is kept and the example stops; otherwise the iterate with the highest loss. After a call,
    ``escaped`` (B,) says which examples succeeded.

    Arguments:
        detector (SqueezeDetector): model and squeezers; its model is the model under attack.
        threshold (float): the detector's threshold (flagged: score > threshold).
        eps (float): maximum L-inf perturbation. (Default: 0.1)
        weight (float): weight of the detection term; 0 gives PGD on ``ce_on``'s classifier. (Default: 10.0)
        ce_on (str): the squeezer whose classifier the CE term attacks, or "raw". (Default: "raw")
        gate (bool): apply the detection term only once the raw model misclassifies. (Default: True)
        alpha (float | None): step size; None means 2.5 * eps / steps. (Default: None)
        steps (int): gradient steps. (Default: 20)
        random_start (bool): start at a uniform point of the ball. (Default: True)
        generator (torch.Generator): randomness of the start (drawn on its device, then moved).

    Counters: each forward pass of an example costs 1 + S queries (raw and S squeezed
    inputs); each gradient step counts one ``grad_evals`` per example, as the base class does.

    Shape: images (B, C, H, W) in [0, 1]; labels (B,); output (B, C, H, W).
    """

    norms = ("Linf",)

    def __init__(self, detector: SqueezeDetector, threshold: float, eps: float = 0.1, weight: float = 10.0,
                 ce_on: str = "raw", gate: bool = True, alpha: float | None = None, steps: int = 20,
                 random_start: bool = True, generator: torch.Generator | None = None):
        super().__init__(detector.model, eps, "Linf")
        if steps < 1:
            raise ValueError(f"steps must be >= 1, found {steps}")
        if ce_on != "raw" and ce_on not in detector.names:
            raise ValueError(f"ce_on must be 'raw' or one of the detector's squeezers {detector.names}, found {ce_on!r}")
        if weight < 0:
            raise ValueError(f"weight must be >= 0, found {weight}")
        self.detector, self.threshold, self.weight, self.gate = detector, float(threshold), float(weight), gate
        self.ce_index = None if ce_on == "raw" else detector.names.index(ce_on)
        self.alpha = alpha if alpha is not None else 2.5 * eps / steps
        self.steps, self.random_start, self.generator = steps, random_start, generator
        self.escaped = torch.empty(0, dtype=torch.bool)

    def objective(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(loss (B,), raw logits (B, K), score (B,)) at x (B, C, H, W); differentiable via BPDA."""
        self.queries += len(x) * (1 + len(self.detector.squeezers))
        z, zs = self.detector.logits(x, bpda=True)  # (B, K), (S, B, K)
        score = SqueezeDetector.score_from_logits(z, zs)  # (B,)
        zc = z if self.ce_index is None else zs[self.ce_index]
        penalty = F.relu(score - self.threshold)  # (B,)
        if self.gate:  # the detection term only for examples the raw model already misclassifies
            penalty = penalty * (z.argmax(1) != y).to(penalty.dtype)
        loss = F.cross_entropy(zc, y, reduction="none") - self.weight * penalty
        return loss, z, score

    def _evaluate(self, xa: torch.Tensor, ya: torch.Tensor,
                  with_grad: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(loss (n,), escaped (n,), gradient or None) at the iterates xa: escaping the safety
        net means the raw model misclassifies and the score is under the threshold."""
        if with_grad:
            xg = xa.detach().requires_grad_(True)
            with torch.enable_grad():
                loss, z, score = self.objective(xg, ya)
                (grad,) = torch.autograd.grad(loss.sum(), xg)
            self.grad_evals += len(xa)
            loss, z, score = loss.detach(), z.detach(), score.detach()
        else:  # the last iterate is scored too, without a gradient
            with torch.no_grad():
                loss, z, score = self.objective(xa, ya)
            grad = None
        return loss, (z.argmax(1) != ya) & (score <= self.threshold), grad

    def perturb(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        adv = x.clone()  # (B, C, H, W)
        if self.random_start:
            adv = project(x + random_start(x, self.eps, "Linf", self.generator), x, self.eps, "Linf")
        best, escaped, _ = ascend(x, y, adv, self.steps, lambda g: self.alpha * g.sign(), self._evaluate,
                                  self.eps, "Linf")
        self.escaped = escaped.cpu()
        return best


# ----------------------------------------------------------------------------- data

def validation_indices(n_total: int, n_eval: int, n_val: int, seed: int) -> torch.Tensor:
    """Indices (n_val,), sorted, of held-out images outside the evaluation subset.

    The evaluation subset is what :func:`advgen.data.subset` draws for ``n_eval`` images with
    ``torch.Generator().manual_seed(seed)`` (:func:`advgen.evaluation.eval_set`); the same
    permutation is redrawn here and ``n_val`` indices are drawn from its complement with a
    generator seeded ``seed + VALIDATION_SEED_OFFSET``. Raises ValueError when the subset takes
    the whole split or the complement holds fewer than ``n_val`` images.
    """
    if n_eval <= 0 or n_eval >= n_total:
        raise ValueError(f"the evaluation subset ({n_eval} of {n_total} images) leaves no validation images")
    taken = torch.randperm(n_total, generator=torch.Generator().manual_seed(seed))[:n_eval]
    free = torch.ones(n_total, dtype=torch.bool)
    free[taken] = False
    pool = free.nonzero().squeeze(1)  # (n_total - n_eval,)
    if not 1 <= n_val <= len(pool):
        raise ValueError(f"n_val must lie in [1, {len(pool)}] (images outside the evaluation subset), found {n_val}")
    pick = torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed + VALIDATION_SEED_OFFSET))[:n_val]
    return pool[pick].sort().values


def validation_split(images: torch.Tensor, labels: torch.Tensor, n_eval: int, n_val: int,
                     seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n_val`` images of a split (images (N, ...), labels (N,)) disjoint from the evaluation
    subset of ``n_eval`` images drawn with ``seed`` (see :func:`validation_indices`)."""
    idx = validation_indices(len(labels), n_eval, n_val, seed)
    return images[idx], labels[idx]


# ----------------------------------------------------------------------------- the evaluation

def _correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (predict(model, x) == y).cpu()  # (N,) bool


def evaluate_squeezing(model: nn.Module, x_val: torch.Tensor, x: torch.Tensor, y: torch.Tensor, cfg: Any,
                       generator: torch.Generator, batch_size: int = 250) -> dict[str, Any]:
    """The ``sanitize`` stage's whole evaluation of feature squeezing on one model.

    Arguments:
        model (nn.Module): the classifier (frozen, eval mode).
        x_val (Tensor): clean validation images (M, C, H, W), disjoint from x; only they fix
            the detector's threshold.
        x, y (Tensor): evaluation images (N, C, H, W) in [0, 1] and labels (N,).
        cfg (SanitizeConfig): ``bit_depth``, ``median``, ``eps``, ``fpr``, ``pgd_steps``,
            ``square_queries``, ``detector_weight``.
        generator (torch.Generator): CPU generator of every random start and Square draw,
            consumed in a fixed order.

    Attacks, all L-inf at ``cfg.eps``: naive FGSM, PGD-``pgd_steps`` (every step, highest loss
    kept, as for transfer) and Square crafted on the raw model; per squeezer, BPDA-PGD against
    ``Squeezed(model, s, bpda=True)`` and Square against ``Squeezed(model, s)`` (adaptive);
    :class:`DetectorAwarePGD` against the detector. Detection figures are over the
    *successful* adversarial examples (clean image correct, adversarial one misclassified by
    the raw model), as in Xu et al.; safety-net figures over all N.

    Returns a JSON-ready dict (no timings; accuracies as ``{"accuracy", "ci95", "n"}``):
    the config echoed (``n_eval``, ``n_val``, ``eps``, ``bit_depth``, ``median``, ``pgd_steps``,
    ``square_queries``, ``detector_weight``, ``squeezers``); ``threshold`` (``fpr_target``,
    ``value``, measured ``fpr_val`` and ``fpr_eval`` as ``{"rate", "ci95", "n"}``);
    ``preprocessing``: per model ``none`` / ``bit_depth`` / ``median`` / ``both``, the accuracy
    ``clean``, under ``fgsm_naive``, ``pgd_naive``, ``square`` and (squeezers only)
    ``pgd_bpda``, with ``pgd_naive_vs_bpda`` (:func:`advgen.stats.mcnemar`, a = naive);
    ``detector``: ``clean_safety_net`` and per attack (``fgsm``, ``pgd``, ``square``,
    ``bpda_pgd``, ``detector_aware_pgd``, ``detector_aware_pgd_ce_squeezed``) its ``kind``,
    ``raw_accuracy``, ``detection`` (:func:`detection_metrics`) and ``safety_net``
    (:func:`safety_net`); and ``roc``: the rows of :func:`roc_rows` (the stage writes them
    to TSV, not to the JSON).
    """
    squeezers = build_squeezers(cfg.bit_depth, cfg.median)
    detector = SqueezeDetector(model, list(squeezers.values()))
    eps, steps = cfg.eps, cfg.pgd_steps
    y_cpu = y.cpu()

    # Threshold on the validation images only; measured FPR there and on the clean evaluation images.
    val_scores = detector.scores(x_val, batch_size).cpu()
    threshold = fit_threshold(val_scores, cfg.fpr)
    clean_pred, clean_scores = (t.cpu() for t in detector.inspect(x, batch_size))
    clean_rejected = clean_scores > threshold

    # Naive attacks: crafted on the raw model, blind to any squeezing.
    naive = {"fgsm": batched(FGSM(model, eps), x, y, batch_size),
             "pgd": batched(PGD(model, eps, steps=steps, generator=generator, early_stop=False), x, y, batch_size),
             "square": batched(Square(model, eps, n_queries=cfg.square_queries, generator=generator), x, y,
                               batch_size)}

    # As preprocessing.
    clean_ok = _correct(model, x, y)
    pre: dict[str, Any] = {"none": {"clean": accuracy_ci(clean_ok),
                                    "fgsm_naive": accuracy_ci(_correct(model, naive["fgsm"], y)),
                                    "pgd_naive": accuracy_ci(_correct(model, naive["pgd"], y)),
                                    "square": accuracy_ci(_correct(model, naive["square"], y))}}
    bpda_adv: dict[str, torch.Tensor] = {}
    for name, s in squeezers.items():
        squeezed = Squeezed(model, s)
        bpda_adv[name] = batched(PGD(Squeezed(model, s, bpda=True), eps, steps=steps, generator=generator),
                                 x, y, batch_size)
        sq_adv = batched(Square(squeezed, eps, n_queries=cfg.square_queries, generator=generator), x, y, batch_size)
        pgd_naive, pgd_bpda = _correct(squeezed, naive["pgd"], y), _correct(squeezed, bpda_adv[name], y)
        pre[name] = {"clean": accuracy_ci(_correct(squeezed, x, y)),
                     "fgsm_naive": accuracy_ci(_correct(squeezed, naive["fgsm"], y)),
                     "pgd_naive": accuracy_ci(pgd_naive), "pgd_bpda": accuracy_ci(pgd_bpda),
                     "square": accuracy_ci(_correct(squeezed, sq_adv, y)),
                     "pgd_naive_vs_bpda": mcnemar(pgd_naive, pgd_bpda)}

    # As a detector: the raw model classifies, the joint score rejects.
    aware = {ce_on: DetectorAwarePGD(detector, threshold, eps, weight=cfg.detector_weight, ce_on=ce_on, steps=steps,
                                     generator=generator) for ce_on in ("raw", "both")}
    penalty = "- weight * relu(score - threshold) once the raw model misclassifies, BPDA"
    attacks = {**{k: ("naive", v) for k, v in naive.items()},
               "bpda_pgd": ("adaptive to squeezing (BPDA-PGD on 'both'), blind to the detector", bpda_adv["both"]),
               "detector_aware_pgd": (f"adaptive: CE of the raw model {penalty}",
                                      batched(aware["raw"], x, y, batch_size)),
               "detector_aware_pgd_ce_squeezed": (f"adaptive: CE of the 'both'-squeezed model {penalty}",
                                                  batched(aware["both"], x, y, batch_size))}
    det: dict[str, Any] = {}
    adv_scores: dict[str, torch.Tensor] = {}
    for name, (kind, adv) in attacks.items():
        pred, scores = (t.cpu() for t in detector.inspect(adv, batch_size))
        success = (clean_pred == y_cpu) & (pred != y_cpu)  # (N,) a working adversarial example
        adv_scores[name] = scores[success]
        det[name] = {"kind": kind, "raw_accuracy": accuracy_ci(pred == y_cpu),
                     "detection": detection_metrics(clean_scores, scores[success], threshold),
                     "safety_net": safety_net(y_cpu, clean_pred, clean_rejected, pred, scores > threshold)}
    for name, ce_on in (("detector_aware_pgd", "raw"), ("detector_aware_pgd_ce_squeezed", "both")):
        det[name].update(grad_evals=aware[ce_on].grad_evals, queries=aware[ce_on].queries)

    return {
        "n_eval": len(y), "n_val": len(x_val), "eps": eps, "bit_depth": cfg.bit_depth, "median": cfg.median,
        "pgd_steps": steps, "square_queries": cfg.square_queries, "detector_weight": cfg.detector_weight,
        "squeezers": list(squeezers),
        "threshold": {"fpr_target": cfg.fpr, "value": threshold, "fpr_val": _rate(val_scores > threshold),
                      "fpr_eval": _rate(clean_rejected)},
        "preprocessing": pre,
        "detector": {"clean_safety_net": accuracy_ci((clean_pred == y_cpu) & ~clean_rejected),
                     "attacks": det},
        "roc": roc_rows(clean_scores, adv_scores),
    }
