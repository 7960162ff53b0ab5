r"""Randomized smoothing: certified L2 robustness of a classifier trained with Gaussian noise.

From "Certified Adversarial Robustness via Randomized Smoothing" (Cohen, Rosenfeld & Kolter,
ICML 2019). The *smoothed* classifier of a base classifier ``f`` is

    g(x) = argmax_c P(f(x + e) = c),   e ~ N(0, sigma^2 I),

and if the top class has probability ``pA`` then ``g`` is constant within the L2 ball of radius
``sigma * Phi^-1(pA)`` around ``x``. ``g`` cannot be evaluated exactly, so (Cohen et al.):

* :func:`predict` (their PREDICT) returns the top class of ``n`` Monte-Carlo draws, or abstains
  when a two-sided binomial test cannot tell the top two counts apart at level ``alpha``;
* :func:`certify` (their CERTIFY) guesses the class from ``n0`` draws, bounds its probability
  from below with ``n`` separate draws (one-sided Clopper-Pearson at level ``alpha``) and
  certifies radius ``sigma * Phi^-1(pA_lower)``, or abstains when ``pA_lower <= 1/2``. With
  probability at least ``1 - alpha`` over the noise, a returned class is ``g(x)`` and ``g`` is
  robust within the returned radius.

Threat model: L2 perturbations of an image in [0, 1]. The noise is added in pixel space and
**not clipped to [0, 1]** (neither do Cohen et al.; the base classifier was trained on the same
unclipped noise, see :class:`advgen.defenses.adversarial.GaussianNoiseTraining`).

Empirical side: :class:`SmoothedSoft` (the smoothed *soft* classifier of Salman et al., NeurIPS
2019, "Provably Robust Deep Learning via Adversarially Trained Smoothed Classifiers") is
differentiable, so L2 PGD through it is PGD with expectation over transformation (EOT, Athalye
et al., ICML 2018) over the noise; :func:`empirical_l2` attacks it and judges the result with
:func:`predict`. :func:`certificate_check` is the sanity check that ties the two together: a
certificate at radius r is a promise that no attack within r changes the prediction, so the
certified accuracy at r cannot exceed the empirical robust accuracy at eps = r.

Randomness: no global RNG. Every noise draw takes an explicit ``torch.Generator`` and is drawn
on the generator's device (a CPU generator in the stages), then moved to the images' device, so
a GPU run draws the same noise as a CPU run (as :func:`advgen.attacks.pgd.random_start`).
"""
from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from scipy.stats import beta as beta_dist
from scipy.stats import binomtest, norm
from torch import nn

from ..attacks.pgd import PGD
from ..evaluation import predict as base_predict
from ..stats import accuracy_ci, mcnemar

ABSTAIN = -1  # the class returned when PREDICT or CERTIFY abstains
CHECK_ALPHA = 0.01  # significance of the paired test behind the certificate check


# ----------------------------------------------------------------------------- Monte Carlo


def sigma_of(model: nn.Module, name: str = "model") -> float:
    """The training noise level of a Gaussian-noise base classifier, from its sidecar.

    ``model.sidecar["defense"]`` must be ``{"method": "gaussian", "sigma": s, ...}``; raises
    ValueError naming ``name`` otherwise (randomized smoothing certifies only with the sigma the
    base classifier was trained at).
    """
    meta = getattr(model, "sidecar", None)
    defense = meta.get("defense") if isinstance(meta, dict) else None
    if not isinstance(defense, dict) or defense.get("method") != "gaussian":
        raise ValueError(f"model {name!r} is not a Gaussian-noise base classifier (its sidecar's 'defense' is "
                         f"{defense!r}, expected method 'gaussian'); randomized smoothing needs one (defend stage)")
    sigma = defense.get("sigma")
    if not isinstance(sigma, (int, float)) or isinstance(sigma, bool) or not sigma > 0:
        raise ValueError(f"model {name!r}: the sidecar's defense sigma must be a number > 0, found {sigma!r}")
    return float(sigma)


def _check(x: torch.Tensor, sigma: float, n: int, batch_size: int) -> None:
    if x.dim() != 4:
        raise ValueError(f"expected images of shape (B, C, H, W), found {tuple(x.shape)}")
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, found {sigma}")
    if n < 1 or batch_size < 1:
        raise ValueError(f"n and batch_size must be >= 1, found n={n}, batch_size={batch_size}")


def _noisy_batches(x: torch.Tensor, sigma: float, n: int, generator: torch.Generator,
                   batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (image index (M,), noisy copies (M, C, H, W)) with M <= batch_size, covering n draws
    of each image of x (B, C, H, W) in order.

    The noise of image i is drawn in chunks of ``min(n, batch_size)`` draws, image after image,
    whatever the packing into forward passes: for n <= batch_size the draws do not depend on
    batch_size. Drawn on the generator's device, then moved to x's device.
    """
    dev = generator.device
    chunk = min(n, batch_size)
    idx, parts, size = [], [], 0
    for i in range(len(x)):
        for start in range(0, n, chunk):
            k = min(chunk, n - start)
            if size + k > batch_size:
                yield torch.cat(idx), torch.cat(parts)
                idx, parts, size = [], [], 0
            noise = torch.randn((k, *x.shape[1:]), generator=generator, device=dev, dtype=x.dtype)
            parts.append(x[i:i + 1] + sigma * noise.to(x.device))  # (k, C, H, W), not clipped
            idx.append(torch.full((k,), i, dtype=torch.long))
            size += k
    if parts:
        yield torch.cat(idx), torch.cat(parts)


@torch.no_grad()
def sample_counts(model: nn.Module, x: torch.Tensor, sigma: float, n: int, generator: torch.Generator,
                  batch_size: int = 1000) -> torch.Tensor:
    """Class counts of the base classifier under Gaussian noise (Cohen et al.'s SAMPLEUNDERNOISE).

    Arguments:
        model (nn.Module): the base classifier, (B, C, H, W) -> logits (B, K), in eval mode.
        x (torch.Tensor): images (B, C, H, W).
        sigma (float): noise standard deviation, in pixel units (noise not clipped to [0, 1]).
        n (int): noise draws per image.
        generator (torch.Generator): draws the noise (on its own device, then moved).
        batch_size (int): noisy images per forward pass. (Default: 1000)

    Returns counts (B, K) long on the CPU: how many of the n draws of each image the base
    classifier put in each class (rows sum to n).
    """
    _check(x, sigma, n, batch_size)
    counts: torch.Tensor | None = None
    for idx, noisy in _noisy_batches(x, sigma, n, generator, batch_size):
        logits = model(noisy)  # (M, K)
        k = logits.shape[1]
        if counts is None:
            counts = torch.zeros(len(x), k, dtype=torch.long)
        pred = logits.argmax(1).cpu()  # (M,)
        counts += torch.bincount(idx * k + pred, minlength=len(x) * k).view(len(x), k)
    if counts is None:  # no images
        return torch.zeros(0, int((getattr(model, "sidecar", None) or {}).get("num_classes", 0)), dtype=torch.long)
    return counts


def _top_two(counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(top class (B,), its count (B,), the runner-up's count (B,)); ties go to the lower class."""
    srt, order = counts.sort(dim=1, descending=True, stable=True)
    return order[:, 0], srt[:, 0], srt[:, 1] if counts.shape[1] > 1 else torch.zeros_like(srt[:, 0])


def predict(model: nn.Module, x: torch.Tensor, sigma: float, n: int, alpha: float, generator: torch.Generator,
            batch_size: int = 1000) -> torch.Tensor:
    r"""Cohen et al.'s PREDICT: the smoothed classifier's class, or abstain.

    Counts the base classifier's classes over ``n`` noise draws; returns the top class cA when
    a two-sided binomial test of its count nA against the runner-up's nB (nA out of nA + nB
    at p = 1/2) has p-value <= ``alpha``, else -1 (abstain). With probability at least
    1 - alpha a returned class is g(x) (Cohen et al., Proposition 1).

    Arguments:
        model (nn.Module): the base classifier. x (torch.Tensor): images (B, C, H, W).
        sigma (float): noise level. n (int): noise draws per image (Cohen et al.: 100,000).
        alpha (float): failure probability (Cohen et al.: 0.001).
        generator (torch.Generator): draws the noise. batch_size (int): noisy images per forward pass.

    Returns classes (B,) long on the CPU, -1 where it abstains.
    """
    cls, n_a, n_b = _top_two(sample_counts(model, x, sigma, n, generator, batch_size))
    pvalue: dict[tuple[int, int], float] = {}
    out = torch.full((len(x),), ABSTAIN, dtype=torch.long)
    for i, (a, b) in enumerate(zip(n_a.tolist(), n_b.tolist())):
        if (a, b) not in pvalue:
            pvalue[(a, b)] = float(binomtest(a, a + b, 0.5, alternative="two-sided").pvalue)
        if pvalue[(a, b)] <= alpha:
            out[i] = cls[i]
    return out


def lower_confidence_bound(k: int, n: int, alpha: float) -> float:
    """One-sided (1 - alpha) Clopper-Pearson lower bound of a binomial proportion, k of n.

    ``beta.ppf(alpha, k, n - k + 1)``; 0 for k = 0. At k = n it is alpha ** (1 / n).
    """
    return 0.0 if k == 0 else float(beta_dist.ppf(alpha, k, n - k + 1))


def certify(model: nn.Module, x: torch.Tensor, sigma: float, n0: int, n: int, alpha: float,
            generator: torch.Generator, batch_size: int = 1000) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""Cohen et al.'s CERTIFY: the smoothed classifier's class and a certified L2 radius.

    Guesses the top class cA from ``n0`` draws, counts cA in ``n`` separate draws, bounds
    pA = P(f(x + e) = cA) from below by the one-sided (1 - alpha) Clopper-Pearson bound
    pA_lower, and returns cA with radius sigma * Phi^-1(pA_lower), or abstains (class -1,
    radius 0) when pA_lower <= 1/2. With probability at least 1 - alpha per image, a returned
    class is g(x) and g(x + d) = cA for every ||d||_2 < radius (Cohen et al., Theorem 1 and
    Proposition 2). With n draws the radius is at most sigma * Phi^-1(alpha ** (1 / n)).

    Arguments:
        model (nn.Module): the base classifier. x (torch.Tensor): images (B, C, H, W).
        sigma (float): noise level. n0 (int): selection draws (Cohen et al.: 100).
        n (int): estimation draws (Cohen et al.: 100,000). alpha (float): failure probability
            (Cohen et al.: 0.001). generator (torch.Generator): draws the noise.
        batch_size (int): noisy images per forward pass.

    Returns (pred (B,) long, -1 to abstain; radius (B,) float64, 0 where it abstains;
    pA_lower (B,) float64), all on the CPU.
    """
    guess, _, _ = _top_two(sample_counts(model, x, sigma, n0, generator, batch_size))  # (B,)
    counts = sample_counts(model, x, sigma, n, generator, batch_size)  # (B, K), independent draws
    n_a = counts.gather(1, guess[:, None]).squeeze(1)  # (B,)
    p_lower = torch.tensor([lower_confidence_bound(k, n, alpha) for k in n_a.tolist()], dtype=torch.float64)
    ok = p_lower > 0.5
    pred = torch.where(ok, guess, torch.full_like(guess, ABSTAIN))
    radius = torch.tensor([sigma * float(norm.ppf(p)) if o else 0.0 for p, o in zip(p_lower.tolist(), ok.tolist())],
                          dtype=torch.float64)
    return pred, radius, p_lower


def certified_correct(pred: torch.Tensor, radius: torch.Tensor, y: torch.Tensor, r: float) -> torch.Tensor:
    """(N,) bool: certified correctly at radius r (not abstained, class right, radius >= r)."""
    return (pred.cpu() == y.cpu()) & (radius.cpu() >= r)


def certified_accuracy(pred: torch.Tensor, radius: torch.Tensor, y: torch.Tensor,
                       radii: list[float]) -> dict[str, dict[str, Any]]:
    """Certified accuracy at each radius: the fraction of images certified correctly with a
    radius >= r (an abstention never counts). Cohen et al.'s "approximate certified test-set
    accuracy": with probability >= 1 - alpha per image, the smoothed classifier is right on
    the whole ball of radius r around each counted image.

    Returns ``{f"{r:g}": {"accuracy", "ci95": [lo, hi] (Wilson, over images), "n"}}``.
    """
    return {f"{r:g}": accuracy_ci(certified_correct(pred, radius, y, r)) for r in radii}


# ----------------------------------------------------------------------------- the attack side


class SmoothedSoft(nn.Module):
    r"""The smoothed soft classifier of Salman et al. (NeurIPS 2019, "Provably Robust Deep
    Learning via Adversarially Trained Smoothed Classifiers"), estimated by Monte Carlo:

        log( 1/m * sum_j softmax(f(x + e_j)) ),   e_j ~ N(0, sigma^2 I).

    Differentiable in x, so a gradient attack through it is the attack with expectation over
    transformation (Athalye et al., ICML 2018) over the smoothing noise. Fresh noise each call,
    from ``generator`` (drawn on its device, then moved; not clipped to [0, 1]).

    Arguments:
        model (nn.Module): the base classifier (its ``sidecar`` is copied, so
            :attr:`advgen.attacks.Attack.num_classes` works on this module).
        sigma (float): noise level. m (int): noise draws per forward pass (EOT samples).
        generator (torch.Generator): draws the noise.

    Shape: x (B, C, H, W) -> log-probabilities (B, K) (they exponentiate to a distribution).
    """

    def __init__(self, model: nn.Module, sigma: float, m: int, generator: torch.Generator):
        super().__init__()
        if not sigma > 0 or m < 1:
            raise ValueError(f"sigma must be > 0 and m >= 1, found sigma={sigma}, m={m}")
        self.model, self.sigma, self.m, self.generator = model, float(sigma), int(m), generator
        meta = getattr(model, "sidecar", None)
        self.sidecar = dict(meta) if isinstance(meta, dict) else {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = len(x)
        noise = torch.randn((b, self.m, *x.shape[1:]), generator=self.generator, device=self.generator.device,
                            dtype=x.dtype).to(x.device)  # (B, m, C, H, W)
        noisy = (x[:, None] + self.sigma * noise).flatten(0, 1)  # (B * m, C, H, W)
        logp = F.log_softmax(self.model(noisy), dim=1).view(b, self.m, -1)  # (B, m, K)
        return torch.logsumexp(logp, dim=1) - math.log(self.m)  # (B, K): log of the mean softmax


def empirical_l2_predictions(model: nn.Module, x: torch.Tensor, y: torch.Tensor, sigma: float, eps_list: list[float],
                             steps: int, eot: int, n_predict: int, alpha: float, generator: torch.Generator,
                             batch_size: int = 1000) -> torch.Tensor:
    """What :func:`empirical_l2` computes, as PREDICT's classes (len(eps_list), N) long, -1 = abstain."""
    soft = SmoothedSoft(model, sigma, eot, generator)
    chunk = max(1, batch_size // eot)  # images per attack batch: chunk * eot forward passes
    rows = []
    for eps in eps_list:
        # every step runs: stopping an example on one noisy EOT estimate would weaken the attack
        attack = PGD(soft, eps, norm="L2", steps=steps, generator=generator, early_stop=False)
        adv = torch.cat([attack(x[i:i + chunk], y[i:i + chunk]) for i in range(0, len(y), chunk)]) if len(y) else x
        rows.append(predict(model, adv, sigma, n_predict, alpha, generator, batch_size))
    return torch.stack(rows) if rows else torch.zeros(0, len(y), dtype=torch.long)


def empirical_l2(model: nn.Module, x: torch.Tensor, y: torch.Tensor, sigma: float, eps_list: list[float],
                 steps: int, eot: int, n_predict: int, alpha: float, generator: torch.Generator,
                 batch_size: int = 1000) -> torch.Tensor:
    r"""Empirical L2 robustness of the smoothed classifier: PGD-L2 with EOT, then PREDICT.

    For each eps, L2 PGD (Madry et al. 2018, :class:`advgen.attacks.PGD`, ``steps`` steps,
    random start) against :class:`SmoothedSoft` with ``eot`` noise draws per gradient, i.e.
    white box with expectation over the smoothing noise (Salman et al. 2019's attack on
    smoothed classifiers). The verdict on each adversarial image is the Monte-Carlo
    :func:`predict` of the smoothed classifier (``n_predict`` draws, level ``alpha``); an
    abstention counts as wrong. At eps = 0 PGD returns x itself, so the first row with eps = 0
    is the clean accuracy of the smoothed classifier.

    PGD's early stop judges its iterates by the argmax of the (random) EOT estimate; an
    example it stops early may still be classified correctly by PREDICT, which is what counts.

    Arguments:
        model (nn.Module): the base classifier. x (torch.Tensor): images (N, C, H, W) in [0, 1].
        y (torch.Tensor): labels (N,). sigma (float): noise level. eps_list (list[float]): L2
            radii. steps (int): PGD steps. eot (int): noise draws per gradient.
        n_predict (int): PREDICT's draws. alpha (float): PREDICT's level.
        generator (torch.Generator): random starts and noise. batch_size (int): forward-pass size
            (the attack runs batch_size // eot images at a time).

    Returns correct (len(eps_list), N) bool on the CPU.
    """
    pred = empirical_l2_predictions(model, x, y, sigma, eps_list, steps, eot, n_predict, alpha, generator, batch_size)
    return pred == y.cpu()[None]


# ----------------------------------------------------------------------------- the sanity check


def certificate_check(cert_correct_at_r: torch.Tensor, emp_correct_at_r: torch.Tensor,
                      emp_abstain_at_r: torch.Tensor | None = None, *, r: float | None = None) -> dict[str, Any]:
    """Certified accuracy at radius r must not exceed empirical robust accuracy at eps = r.

    Arguments: (N,) bool tensors on the same images: certified correctly at radius >= r
    (:func:`certified_correct`); still correct under the attack at eps = r (PREDICT returned
    the label; an abstention is wrong); optionally, PREDICT abstained on the attacked image
    (only used to say how many of the contradictions are abstentions).

    A certificate promises that no perturbation within r changes the smoothed classifier's
    class, so an image certified at r but broken by the attack at eps = r is a contradiction.
    A few are expected: each certificate fails with probability at most alpha, PREDICT errs
    with probability at most alpha, and PREDICT may abstain on an attacked image that the
    certificate still covers (it only guarantees P(top class at x + d) >=
    Phi(Phi^-1(pA_lower) - r / sigma), which is close to 1/2 for an image certified barely
    above r). Systematically many are a bug (a radius too large, noise that differs between
    certification and attack). The check fails when the certified accuracy is above the
    empirical one beyond chance: exact McNemar test (:func:`advgen.stats.mcnemar`) of
    certified against empirical, p < 0.01.

    Returns ``{"name", "passed", "detail", "contradictions" (certified but broken),
    "abstained" (of those, how many by abstention; None without the abstain vector),
    "certified", "empirical" (counts), "mcnemar"}``.
    """
    cert, emp = cert_correct_at_r.bool().cpu(), emp_correct_at_r.bool().cpu()
    test = mcnemar(cert, emp)
    broken = cert & ~emp
    n_bad = int(broken.sum())
    n_abst = int((broken & emp_abstain_at_r.bool().cpu()).sum()) if emp_abstain_at_r is not None else None
    passed = not test["p_a_higher"] < CHECK_ALPHA
    n, k_cert, k_emp = len(cert), int(cert.sum()), int(emp.sum())
    pct = 100 / max(n, 1)
    where = f"@{r:g}" if r is not None else ""
    detail = (f"certified {k_cert}/{n} ({k_cert * pct:.1f}%) vs empirical {k_emp}/{n} ({k_emp * pct:.1f}%); "
              f"{n_bad} certified images broken by the attack"
              + (f" ({n_abst} by abstention, {n_bad - n_abst} into a wrong class)" if n_abst is not None else "")
              + f", {test['only_b']} not certified that the attack did not break; p = {test['p_a_higher']:.2g} "
              f"that certified is this far above empirical by chance (fails below {CHECK_ALPHA:g})")
    return {"name": f"certified_le_empirical{where}", "passed": passed, "detail": detail,
            "contradictions": n_bad, "abstained": n_abst, "certified": k_cert, "empirical": k_emp, "mcnemar": test}


# ----------------------------------------------------------------------------- the stage's evaluation


def radius_grid(radii: list[float], step: float = 0.05, top: float = 1.25) -> list[float]:
    """0 to max(top, max(radii)) by ``step``, with ``radii`` added: the certified-accuracy curve's x."""
    hi = max([top, *radii])
    grid = {round(i * step, 9) for i in range(math.floor(hi / step + 1e-9) + 1)}
    return sorted(grid | {round(float(r), 9) for r in radii})


def evaluate_smoothing(model: nn.Module, x: torch.Tensor, y: torch.Tensor, sigma: float, cfg: Any,
                       generator: torch.Generator, log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """The ``certify`` stage's whole evaluation of one Gaussian-noise model on (x (N, C, H, W)
    in [0, 1], y (N,)), with ``cfg`` an :class:`advgen.defenses.params.CertifyConfig`.

    In order, all noise from ``generator``: the base classifier clean and under one noise draw
    per image; :func:`certify` (``cfg.n0``, ``cfg.n``, ``cfg.alpha``); certified accuracy at
    radius 0 (certified and correct) and at each of ``cfg.radii``; :func:`empirical_l2` at eps 0
    and each radius (``cfg.pgd_steps``, ``cfg.eot``, ``cfg.n_predict``, PREDICT at ``cfg.alpha``);
    :func:`certificate_check` at each radius. No timings (``log`` gets them), so the result is
    the same on every run. Returns the metrics dict (its ``curve`` rows are the TSV plot; their
    ``empirical`` is None at radii that were not attacked).
    """
    n_img = len(y)
    if n_img == 0:
        raise ValueError("evaluate_smoothing needs at least one image")
    yc = y.cpu()
    clean = base_predict(model, x).cpu() == yc
    noisy = sample_counts(model, x, sigma, 1, generator, cfg.batch_size).argmax(1) == yc
    start = time.perf_counter()
    pred, radius, _ = certify(model, x, sigma, cfg.n0, cfg.n, cfg.alpha, generator, cfg.batch_size)
    log(f"certify: {n_img} images, n0={cfg.n0}, n={cfg.n}: {time.perf_counter() - start:.1f}s")
    radii = [float(r) for r in cfg.radii]
    cert = certified_accuracy(pred, radius, yc, [0.0, *radii])
    abstain = pred == ABSTAIN
    right = pred == yc
    good = sorted(radius[right].tolist())
    eps_list = [0.0, *radii]
    start = time.perf_counter()
    emp_pred = empirical_l2_predictions(model, x, y, sigma, eps_list, cfg.pgd_steps, cfg.eot, cfg.n_predict,
                                        cfg.alpha, generator, cfg.batch_size)  # (n_eps, N)
    log(f"PGD-L2 (EOT {cfg.eot}, {cfg.pgd_steps} steps) + PREDICT (n={cfg.n_predict}) at eps {eps_list}: "
        f"{time.perf_counter() - start:.1f}s")
    emp_by_eps = [(e, accuracy_ci(emp_pred[i] == yc)) for i, e in enumerate(eps_list)]  # by value
    emp = {f"{e:g}": v for e, v in emp_by_eps}  # the metrics file's keys
    checks = [certificate_check(certified_correct(pred, radius, yc, r), emp_pred[i + 1] == yc,
                                emp_pred[i + 1] == ABSTAIN, r=r) for i, r in enumerate(radii)]
    grid = radius_grid(radii)
    emp_at = {round(e, 9): v["accuracy"] for e, v in emp_by_eps}
    curve = [{"radius": r, "certified": float(certified_correct(pred, radius, yc, r).float().mean()),
              "empirical": emp_at.get(round(r, 9))} for r in grid]
    return {
        "sigma": sigma, "n0": cfg.n0, "n": cfg.n, "alpha": cfg.alpha, "n_eval": n_img,
        "pgd_steps": cfg.pgd_steps, "eot": cfg.eot, "n_predict": cfg.n_predict,
        "max_certifiable_radius": sigma * float(norm.ppf(cfg.alpha ** (1.0 / cfg.n))),
        "base": {"clean": accuracy_ci(clean), "noisy": accuracy_ci(noisy)},
        "certified_accuracy": {r: v["accuracy"] for r, v in cert.items()},
        "certified_ci95": {r: v["ci95"] for r, v in cert.items()},
        "abstain_rate": float(abstain.float().mean()),
        "abstain_ci95": accuracy_ci(abstain)["ci95"],
        "wrong_rate": float((~abstain & ~right).float().mean()),
        "median_radius_correct": float(statistics.median(good)) if good else None,
        "empirical_accuracy": {e: v["accuracy"] for e, v in emp.items()},
        "empirical_ci95": {e: v["ci95"] for e, v in emp.items()},
        "empirical_abstain_rate": {f"{e:g}": float((emp_pred[i] == ABSTAIN).float().mean())
                                   for i, e in enumerate(eps_list)},
        "checks": checks, "checks_passed": sum(c["passed"] for c in checks),
        "checks_failed": sum(not c["passed"] for c in checks),
        "curve": curve,
    }
