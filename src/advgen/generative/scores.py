"""Sample-quality scores in a feature space the pipeline trains (no Inception weights offline;
the feature network is :class:`advgen.generative.features.FeatureNet`):

* FID (Heusel et al. 2017) through torchmetrics' ``FrechetInceptionDistance(feature=<module>)``,
  with a bootstrap interval from :func:`frechet_distance` on the same features;
* KID (Binkowski et al. 2018) through torchmetrics' ``KernelInceptionDistance``;
* precision and recall (Kynkaanniemi et al. 2019) with k-NN balls, k = 3;
* class coverage of samples labelled by the classifier, and the 1,000 modes of Stacked
  Fashion-MNIST (Metz et al. 2017; Srivastava et al. 2017; Lin et al. 2018);
* a memorisation check: the share of samples closer to their nearest training image than
  real held-out images are at a low quantile of their own nearest-training distances.
"""
from __future__ import annotations

import math

import torch

from .features import FeatureNet, frechet_distance


def fid(net: FeatureNet, real: torch.Tensor, fake: torch.Tensor, batch_size: int = 1000) -> float:
    """FID of images ``fake`` against ``real`` (N, C, H, W) in [0, 1] through torchmetrics'
    FrechetInceptionDistance with ``net`` as its feature extractor."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    metric = FrechetInceptionDistance(feature=net, normalize=True).to(next(net.parameters()).device)
    device = next(net.parameters()).device
    for imgs, is_real in ((real, True), (fake, False)):
        for i in range(0, len(imgs), batch_size):
            metric.update(imgs[i:i + batch_size].to(device), real=is_real)
    return float(metric.compute())


def kid(net: FeatureNet, real: torch.Tensor, fake: torch.Tensor, subsets: int, subset_size: int,
        seed: int, batch_size: int = 1000) -> tuple[float, float]:
    """KID (mean, std over ``subsets`` random subsets of ``subset_size``) through torchmetrics'
    KernelInceptionDistance with ``net`` as feature extractor (cubic polynomial kernel).

    torchmetrics draws the subsets from torch's global RNG; it runs inside a forked RNG state
    seeded with ``seed``, so the figure is reproducible and the caller's RNG untouched."""
    import warnings

    from torchmetrics.image.kid import KernelInceptionDistance

    device = next(net.parameters()).device
    with warnings.catch_warnings():  # it warns that it keeps every feature: 2 x N x 128 here, by design
        warnings.filterwarnings("ignore", message=".*will save all extracted features")
        metric = KernelInceptionDistance(feature=net, subsets=subsets, subset_size=subset_size,
                                         normalize=True).to(device)
    for imgs, is_real in ((real, True), (fake, False)):
        for i in range(0, len(imgs), batch_size):
            metric.update(imgs[i:i + batch_size].to(device), real=is_real)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std)


def bootstrap_fid(f_real: torch.Tensor, f_fake: torch.Tensor, n_boot: int,
                  generator: torch.Generator) -> tuple[float, float]:
    """A 95% bootstrap interval for FID: both sets resampled with replacement ``n_boot`` times.

    Resampling repeats samples, which changes the sets' spread and moves every bootstrap FID
    away from the estimate F (at small N, often by more than the spread itself), so neither the
    percentile nor the pivotal interval need contain F. The interval is the bootstrap's 2.5-97.5%
    spread around its own mean, centred on F: [F + q2.5 - mean, F + q97.5 - mean], clipped at 0
    (the percentile interval with the bootstrap's bias estimate removed)."""
    point = frechet_distance(f_real, f_fake)
    values = []
    for _ in range(n_boot):
        i = torch.randint(0, len(f_real), (len(f_real),), generator=generator)
        j = torch.randint(0, len(f_fake), (len(f_fake),), generator=generator)
        values.append(frechet_distance(f_real[i], f_fake[j]))
    v = torch.tensor(values, dtype=torch.float64)
    shift = point - float(v.mean())
    return max(0.0, float(v.quantile(0.025)) + shift), max(0.0, float(v.quantile(0.975)) + shift)


def _kth_radius(f: torch.Tensor, k: int, chunk: int) -> torch.Tensor:
    """Distance of each row of f (N, F) to its k-th nearest other row."""
    radii = []
    for i in range(0, len(f), chunk):
        d = torch.cdist(f[i:i + chunk], f)
        radii.append(d.kthvalue(k + 1, dim=1).values)  # +1: the row itself is at distance 0
    return torch.cat(radii)


def _covered(query: torch.Tensor, support: torch.Tensor, radii: torch.Tensor, chunk: int) -> torch.Tensor:
    """For each query row: does it fall in some support row's k-NN ball? (Nq,) bool."""
    hits = []
    for i in range(0, len(query), chunk):
        hits.append((torch.cdist(query[i:i + chunk], support) <= radii[None]).any(1))
    return torch.cat(hits)


def precision_recall(f_real: torch.Tensor, f_fake: torch.Tensor, k: int = 3, chunk: int = 1000) -> tuple[float, float]:
    """Kynkaanniemi et al. 2019: precision = share of fake features inside the union of the real
    features' k-NN balls; recall = share of real features inside the fake features' balls."""
    if min(len(f_real), len(f_fake)) <= k:
        raise ValueError(f"precision/recall with k = {k} needs more than {k} samples per set, found "
                         f"{len(f_real)} real and {len(f_fake)} generated")
    f_real, f_fake = f_real.float(), f_fake.float()
    precision = _covered(f_fake, f_real, _kth_radius(f_real, k, chunk), chunk).double().mean()
    recall = _covered(f_real, f_fake, _kth_radius(f_fake, k, chunk), chunk).double().mean()
    return float(precision), float(recall)


def nearest_distance(f_ref: torch.Tensor, f_query: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """Euclidean distance (Nq,) from each row of ``f_query`` (Nq, F) to its nearest row of
    ``f_ref`` (M, F), excluding nothing (the queries are not rows of ``f_ref``; a query equal to a
    reference row is at distance 0). ``torch.cdist`` over ``chunk`` queries at a time, so memory
    is chunk x M distances (256 x 60,000 float64: 123 MB) whatever Nq is. cdist's fast matrix
    product path loses about 1e-8 to cancellation, so the nearest row it finds is measured again
    directly: a copy is at exactly 0, and the chunk size changes no figure."""
    if len(f_ref) == 0:
        raise ValueError("nearest_distance needs at least one reference row")
    out = []
    for i in range(0, len(f_query), chunk):
        q = f_query[i:i + chunk]  # (c, F)
        j = torch.cdist(q, f_ref).argmin(dim=1)  # (c,) the nearest reference row of each query
        out.append((q - f_ref[j]).norm(dim=1))  # (c,) its distance, without cancellation
    return torch.cat(out) if out else torch.empty(0, dtype=f_ref.dtype)


def memorisation_threshold(f_train: torch.Tensor, f_test: torch.Tensor, q: float = 0.01, chunk: int = 256) -> float:
    """The q-quantile over held-out images ``f_test`` (Nt, F) of each one's distance to its nearest
    training image in ``f_train`` (M, F) (``torch.quantile``'s linear interpolation: position
    q (Nt - 1) in the sorted distances). A sample nearer its nearest training image than this is
    closer than all but a share q of real unseen images are."""
    return float(torch.quantile(nearest_distance(f_train, f_test, chunk), q))


def memorised_share(f_train: torch.Tensor, f_samples: torch.Tensor, threshold: float, chunk: int = 256) -> float:
    """Share of samples ``f_samples`` (N, F) whose nearest training image in ``f_train`` (M, F) is
    strictly closer than ``threshold`` (a copy of a training image, at distance 0, always counts
    when the threshold is positive). Held-out images from the training distribution score about
    the q of :func:`memorisation_threshold`; a generator copying its training images scores 1."""
    if len(f_samples) == 0:
        raise ValueError("memorised_share needs at least one sample")
    return float((nearest_distance(f_train, f_samples, chunk) < threshold).double().mean())


def kl_to_uniform(counts: torch.Tensor) -> float:
    """KL(p || uniform) in nats of the histogram ``counts`` (M,) over M modes (0 log 0 = 0)."""
    p = counts.double() / counts.sum()
    nz = p > 0
    return float((p[nz] * (p[nz] * len(counts)).log()).sum())


def class_coverage(pred: torch.Tensor, num_classes: int, min_share: float = 0.01) -> dict:
    """Mode coverage of samples labelled ``pred`` (N,): per-class shares, the classes holding at
    least ``min_share`` of the samples, and KL(class histogram || uniform)."""
    counts = torch.bincount(pred, minlength=num_classes)
    shares = counts.double() / max(len(pred), 1)
    return {"shares": [float(s) for s in shares], "classes_covered": int((shares >= min_share).sum()),
            "kl_uniform": kl_to_uniform(counts)}


def stacked_modes(pred: torch.Tensor, num_classes: int = 10) -> dict:
    """Stacked MNIST-style modes: ``pred`` (N, 3) holds the class of each channel; the mode is
    the triple (num_classes^3 of them). Modes covered = modes with at least one sample, and
    KL(mode histogram || uniform over all modes)."""
    mode = (pred[:, 0] * num_classes + pred[:, 1]) * num_classes + pred[:, 2]
    counts = torch.bincount(mode, minlength=num_classes ** 3)
    return {"modes_covered": int((counts > 0).sum()), "modes_total": num_classes ** 3,
            "kl_uniform": kl_to_uniform(counts)}


def expected_modes_uniform(n: int, modes: int) -> float:
    """Modes a perfect uniform sampler covers in expectation with n samples: M (1 - (1 - 1/M)^n)."""
    return modes * (1 - math.exp(n * math.log1p(-1 / modes)))


def inception_fid(weights: str, real: torch.Tensor, fake: torch.Tensor, batch_size: int = 200) -> float:
    """FID in Inception-v3 pool features from a local weights file (torchmetrics'
    ``feature_extractor_weights_path``; never downloaded). Grey images are repeated to 3 channels.
    Raises ValueError naming ``evaluate_generative.inception_weights`` when the file or
    torch-fidelity (which torchmetrics' Inception needs) is missing."""
    from pathlib import Path

    key = "params.yaml: 'evaluate_generative.inception_weights'"
    if not Path(weights).is_file():
        raise ValueError(f"{key} = {weights!r}: no such file (set it to a local Inception weights file, or null)")
    try:
        from torchmetrics.image.fid import FrechetInceptionDistance

        metric = FrechetInceptionDistance(feature=2048, normalize=True, feature_extractor_weights_path=weights)
    except ModuleNotFoundError as exc:
        raise ValueError(f"{key} = {weights!r}: torchmetrics' Inception needs torch-fidelity ({exc})") from None
    for imgs, is_real in ((real, True), (fake, False)):
        for i in range(0, len(imgs), batch_size):
            metric.update(imgs[i:i + batch_size].expand(-1, 3, -1, -1), real=is_real)
    return float(metric.compute())
