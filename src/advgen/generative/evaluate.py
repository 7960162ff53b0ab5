"""The ``evaluate_generative`` stage's work: every generative model scored the same way.

At one fixed N per profile, in one feature network's space (:mod:`advgen.generative.features`):
FID (torchmetrics) with a bootstrap 95% interval, KID, precision/recall (k = 3), the classes the
classifier sees in the samples (or the 1,000 modes of Stacked Fashion-MNIST), sampling wall time,
and, for single-channel GANs, the code-space probes of claim C14. The real-vs-real floor (N
training images against N test images) is scored the same way.

Memorisation (:class:`Memorisation`): the FID reference is training images, so a generator copying
them would look perfect. Every sample set also gets ``memorised``, the share of its samples whose
nearest image among the whole training split (in the same features) is closer than the threshold:
the 1st percentile (``MEMORISATION_Q``) of the nearest-training distances of the test split's
images at even positions. The test images at odd positions, scored against that same threshold,
give the real-vs-real share (the floor's ``memorised``; about q, its deviation the noise): no test
image sets the threshold it is judged by.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .codes import arithmetic, interpolation
from .features import FeatureNet, classify, extract
from .models import generate, sample_codes
from .scores import (bootstrap_fid, class_coverage, expected_modes_uniform, fid, kid, memorisation_threshold,
                     memorised_share, precision_recall, stacked_modes)
from .training import channel_images


MEMORISATION_Q = 0.01  # the threshold: this quantile of held-out images' nearest-training distances


@dataclass
class Memorisation:
    """The memorisation check's reference (see the module docstring): the whole training split's
    features, the threshold set on half the test split, and the other half's share below it."""

    train_feats: torch.Tensor  # (M, F) float64, every training image
    q: float
    threshold: float
    real_share: float  # the real-vs-real value: held-out test images below the threshold
    n_threshold: int  # test images that set the threshold
    n_real: int  # test images that give real_share

    def share(self, f_samples: torch.Tensor) -> float:
        """Share of samples (N, F) nearer their nearest training image than the threshold."""
        return memorised_share(self.train_feats, f_samples, self.threshold)

    def record(self) -> dict:
        """The JSON record (metrics' ``memorisation``); the features stay out."""
        return {"q": self.q, "threshold": self.threshold, "real_share": self.real_share,
                "n_reference": len(self.train_feats), "n_threshold": self.n_threshold, "n_real": self.n_real}


def memorisation(f_train: torch.Tensor, f_test: torch.Tensor, q: float = MEMORISATION_Q) -> Memorisation:
    """The threshold from the test features (Nt, F) at even positions, the real-vs-real share from
    those at odd positions, both against every training feature ``f_train`` (M, F). Interleaved
    halves draw no randomness and keep each half's class mix even if the split is ordered."""
    first, second = f_test[0::2], f_test[1::2]  # (ceil(Nt/2), F), (floor(Nt/2), F)
    threshold = memorisation_threshold(f_train, first, q)
    return Memorisation(f_train, q, threshold, memorised_share(f_train, second, threshold), len(first), len(second))


def split_features(net: FeatureNet, images: torch.Tensor, chunk: int = 10000) -> torch.Tensor:
    """Features (N, F) float64 of a whole uint8 split (N, C, H, W), converted ``chunk`` images at a
    time (60,000 float images need not sit in memory at once)."""
    from ..data import to_float

    return torch.cat([extract(net, to_float(images[i:i + chunk])) for i in range(0, len(images), chunk)])


@dataclass
class RealSets:
    """The real images every model is compared with: N training images (the reference of every
    score), N test images (the floor's second set) and their labels; the memorisation reference
    (over the whole splits; None: no ``memorised`` scores)."""

    train: torch.Tensor  # (N, 1, H, W) float in [0, 1]
    test: torch.Tensor  # (N, 1, H, W)
    test_labels: torch.Tensor  # (N,)
    train_feats: torch.Tensor  # (N, F) float64
    memo: Memorisation | None = field(default=None)


@dataclass
class Settings:
    """The scoring knobs (from params ``evaluate_generative``)."""

    n: int
    n_large: int
    n_stacked: int
    n_boot: int
    kid_subsets: int
    kid_subset_size: int
    pr_k: int
    min_share: float
    n_paths: int
    n_arith: int
    interp_steps: int
    monotone_tol: float
    num_classes: int = 10


def check_sizes(s: Settings, n_train: int, n_test: int) -> None:
    """N (and n_large) must not exceed the real images available (the floor needs N of each
    split); n_stacked real triples are drawn from the training split."""
    for key, n in (("n", s.n), ("n_large", s.n_large)):
        if n > min(n_train, n_test):
            raise ValueError(f"params.yaml: 'evaluate_generative.{key}' = {n} exceeds the real images available "
                             f"(train {n_train}, test {n_test}): the scores compare N generated with N real images")
    if s.n_stacked > n_train:
        raise ValueError(f"params.yaml: 'evaluate_generative.n_stacked' = {s.n_stacked} exceeds the {n_train} training "
                         "images the real stacked reference is drawn from")


def score(net: FeatureNet, real: torch.Tensor, real_feats: torch.Tensor, fake: torch.Tensor, s: Settings,
          generator: torch.Generator, seed: int, boot: bool = True, memo: Memorisation | None = None) -> dict:
    """FID (+ bootstrap interval), KID and precision/recall of ``fake`` against ``real`` (N, 1, H, W);
    with ``memo``, also the memorised share of ``fake``."""
    fake_feats = extract(net, fake)
    out = {"n": len(fake), "fid": fid(net, real, fake)}
    if boot:
        lo, hi = bootstrap_fid(real_feats, fake_feats, s.n_boot, generator)
        out["fid_ci95"] = [lo, hi]
    # subsets of at most half the set: a subset of the whole set is the set, and KID's spread would read 0
    size = min(s.kid_subset_size, len(fake) // 2, len(real) // 2)
    out["kid"], out["kid_std"] = kid(net, real, fake, s.kid_subsets, size, seed)
    out["precision"], out["recall"] = precision_recall(real_feats, fake_feats, s.pr_k)
    if memo is not None:
        out["memorised"] = memo.share(fake_feats)
    return out


def floor(net: FeatureNet, real: RealSets, s: Settings, generator: torch.Generator, seed: int,
          stacked_reference: torch.Tensor | None = None) -> dict:
    """Real against real at the same N: the best any model can score here, and the classifier's
    own view of real test images (its class coverage; the real Stacked Fashion-MNIST modes). Its
    ``memorised`` is the real-vs-real share of the held-out test half, not of these N test images
    (some of which set the threshold)."""
    out = score(net, real.train, real.train_feats, real.test, s, generator, seed)
    if real.memo is not None:
        out["memorised"] = real.memo.real_share
    out["coverage"] = class_coverage(classify(net, real.test).argmax(1), s.num_classes, s.min_share)
    if stacked_reference is not None:
        out["stacked"] = stacked_coverage(net, stacked_reference, s)
    return out


def stacked_coverage(net: FeatureNet, x: torch.Tensor, s: Settings) -> dict:
    """Modes of 3-channel samples x (M, 3, H, W): each channel labelled by the classifier."""
    pred = classify(net, x.reshape(-1, 1, *x.shape[2:])).argmax(1).reshape(len(x), 3)
    out = stacked_modes(pred, s.num_classes)
    out["n"] = len(x)
    out["expected_uniform"] = expected_modes_uniform(len(x), s.num_classes ** 3)
    return out


def sample(g: nn.Module, n: int, generator: torch.Generator) -> tuple[torch.Tensor, float]:
    """n samples (n, C, H, W) from fresh codes, and the wall seconds generation took (after a
    warm-up call). A Stacked sample is one 3-channel image."""
    z = sample_codes(n, g.z_dim, generator)
    generate(g, z[:min(n, 64)])  # warm-up: the first call pays one-off allocation costs
    start = time.perf_counter()
    x = generate(g, z)
    return x, time.perf_counter() - start


def evaluate_gan(g: nn.Module, net: FeatureNet, real: RealSets, s: Settings, generator: torch.Generator,
                 seed: int, real_train_large: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[dict, dict]:
    """Score one GAN generator. Returns (metrics, extras): extras hold the sampling seconds per
    1,000 images and the interpolation images (not deterministic / not JSON)."""
    stacked = g.channels == 3
    n_draw = max(s.n_stacked, -(-s.n // 3)) if stacked else s.n
    x, seconds = sample(g, n_draw, generator)
    fake = channel_images(x, s.n) if stacked else x
    out = score(net, real.train, real.train_feats, fake, s, generator, seed, memo=real.memo)
    out["channels"] = g.channels
    out["coverage"] = class_coverage(classify(net, fake).argmax(1), s.num_classes, s.min_share)
    if stacked:
        out["stacked"] = stacked_coverage(net, x[:s.n_stacked], s)
    if real_train_large is not None and not stacked:
        big, big_feats = real_train_large
        xl, _ = sample(g, len(big), generator)
        large = score(net, big, big_feats, xl, s, generator, seed, boot=False)
        out["large"] = {k: large[k] for k in ("n", "fid", "kid", "precision", "recall")}
    extras = {"seconds_per_1000": 1000 * seconds / n_draw}
    if not stacked:
        interp = interpolation(g, net, s.n_paths, s.interp_steps, s.monotone_tol, generator)
        extras["interpolation"] = interp.pop("images")
        out["codes"] = {"interpolation": interp,
                        "arithmetic": arithmetic(g, net, s.n_arith, s.num_classes, generator)}
    return out, extras


def load_real(dataset_path: Path, n: int, generator: torch.Generator) -> tuple[RealSets, torch.Tensor, torch.Tensor]:
    """Seeded subsets of N training and N test images; also the whole training and test splits
    (for n_large, the stacked reference and the memorisation reference, :func:`memorisation` of
    :func:`split_features`). Returns (RealSets without features, train_all, test_all)."""
    from ..data import load_split, subset_index, to_float

    (xtr, _), (xte, yte) = load_split(dataset_path, "train"), load_split(dataset_path, "test")
    i_tr, i_te = subset_index(len(xtr), n, generator), subset_index(len(xte), n, generator)
    real = RealSets(to_float(xtr[i_tr]), to_float(xte[i_te]), yte[i_te], torch.empty(0))
    return real, xtr, xte


def read_columns(path: Path) -> dict[str, list[float]]:
    """A numeric TSV with a header row (a GAN's ``log.tsv``) as ``{column: values}``; empty cells are NaN."""
    lines = [ln.split("\t") for ln in Path(path).read_text().splitlines() if ln.strip()]
    return {h: [float(r[j]) if j < len(r) and r[j] != "" else float("nan") for r in lines[1:]]
            for j, h in enumerate(lines[0])}


def gradient_trace(log: dict[str, list[float]], iters: int) -> dict | None:
    """C11 (b) from a GAN's training log (``reports/gan/<name>/log.tsv`` as columns): over its
    first ``iters`` G iterations, the mean norm of the gradient reaching G under its own loss, the
    mean norms under both losses at the same states, and the median same-state ratio
    non-saturating / minimax. None for a log without both losses' columns (WGAN-GP)."""
    if "g_grad_minimax" not in log:
        return None
    rows = [i for i, it in enumerate(log["g_iter"]) if it < iters and not math.isnan(log["g_grad_minimax"][i])]
    if not rows:
        return None
    mean = lambda col: sum(log[col][i] for i in rows) / len(rows)  # noqa: E731
    ratios = torch.tensor([log["g_grad_non_saturating"][i] / log["g_grad_minimax"][i] for i in rows], dtype=torch.float64)
    return {"iters": len(rows), "own_loss": mean("g_grad_norm"), "minimax": mean("g_grad_minimax"),
            "non_saturating": mean("g_grad_non_saturating"), "median_ratio": float(ratios.median()),
            "d_fake": mean("d_fake")}


TRACE_ITERS = 200  # C11 (b): "over the first 200 iterations"


def evaluate_model(name: str, folder: Path, log: Path, net: FeatureNet, real: RealSets, s: Settings,
                   generator: torch.Generator, seed: int, large: tuple[torch.Tensor, torch.Tensor] | None,
                   device: torch.device | str = "cpu") -> tuple[dict, dict]:
    """Load the generator in ``folder`` (refusing one whose FID curve used another feature
    network), score it with :func:`evaluate_gan`, and add C11 (b)'s gradient trace from its
    training ``log`` when there is one. Returns (metrics, extras) as :func:`evaluate_gan`."""
    from .models import load_generator

    g = load_generator(folder, device)
    recorded = g.sidecar.get("feature_sha256")
    if recorded is not None and recorded != net.sha256:
        raise ValueError(f"{folder}/generator.json records feature network sha256 {recorded} (its FID curve), but "
                         f"the feature network has {net.sha256}; rerun gan@{name} or evaluate with that network")
    out, extras = evaluate_gan(g, net, real, s, generator, seed, large)
    out["kind"] = "gan"
    trace = gradient_trace(read_columns(log), TRACE_ITERS) if Path(log).is_file() else None
    if trace is not None:
        out["gradient_trace"] = trace
    return out, extras


def evaluate_samples(images: torch.Tensor, labels: torch.Tensor | None, net: FeatureNet, real: RealSets, s: Settings,
                     generator: torch.Generator, seed: int) -> dict:
    """Score a set of saved samples (n, 1, H, W) in [0, 1] (a diffusion model's, or the
    autoencoder's reconstructions) exactly as a GAN's: at n = N against the same N real images;
    a smaller set (a sampler sweep, a guidance scale) against the first n of them. With the
    requested ``labels`` (n,), also the conditional accuracy: the share the classifier assigns to
    the requested class. ``memorised`` (with ``real.memo``) is against the whole training split."""
    n = len(images)
    if n > len(real.train):
        raise ValueError(f"a sample set of {n} images exceeds evaluate_generative's N = {len(real.train)} real images")
    out = score(net, real.train[:n], real.train_feats[:n], images, s, generator, seed, memo=real.memo)
    pred = classify(net, images).argmax(1)
    out["coverage"] = class_coverage(pred, s.num_classes, s.min_share)
    if labels is not None:
        out["conditional_accuracy"] = float((pred == labels).float().mean())
    return out


def evaluate_diffusion(folder: Path, net: FeatureNet, real: RealSets, s: Settings,
                       stream: Callable[[str], torch.Generator], seed: int) -> tuple[dict, dict]:
    """Every sample set a diffusion config drew (``models/diffusion/<name>``). Returns the rows
    beside the GANs' (``kind`` diffusion): the main set's scores under the config's name, and a
    conditional model's unconditional set under ``<name>_uncond`` (``mode`` says which); and
    the other sets' scores by set name. ``stream(set name)`` gives each set its own random stream."""
    from .store import load_samples, read_sidecar

    meta = read_sidecar(folder, "denoiser", "diffusion")
    rows, others = {}, {}
    for name, item in load_samples(folder).items():
        out = evaluate_samples(item["images"], item["labels"], net, real, s, stream(name), seed)
        out.update({k: item[k] for k in ("role", "sampler", "steps", "eta") if k in item})
        if "scale" in item:
            out["scale"] = item["scale"]
        row = {"kind": "diffusion", "set": name, "space": meta["space"], "schedule": meta["schedule"]}
        if item["role"] == "main":
            rows["main"] = {**out, **row, "mode": "conditional" if item["labels"] is not None else "unconditional"}
        elif item["role"] == "unconditional":
            rows["uncond"] = {**out, **row, "mode": "unconditional"}
        else:
            others[name] = out
    if "main" not in rows:
        raise ValueError(f"{folder}/samples.json: no main sample set")
    return rows, others
