"""Defenses against backdoor (data-poisoning) attacks: detect poison, detect triggers, prune.

Four defenses from the literature, each with the defender's view stated in its docstring:

* :func:`spectral_signatures` (Tran, Li & Madry, NeurIPS 2018): poisoned training samples leave
  a trace along the top singular direction of their class's penultimate features; remove the
  samples that score highest along it (:func:`spectral_scores`).
* :func:`activation_clustering` (Chen et al., 2018): within each class, poisoned samples form a
  small separate cluster of activations after ICA; flag the smaller of two k-means clusters.
* :func:`strip_entropy` / :func:`strip_threshold` (Gao et al., ACSAC 2019, STRIP): at test time
  a triggered input keeps its (target) prediction when blended with clean images, so its
  predictions over the blends have low entropy.
* :func:`prune_last_conv` (Liu, Dolan-Gavitt & Garg, RAID 2018, Fine-Pruning): prune the last
  convolution's channels that clean inputs leave dormant, where backdoors tend to hide; the
  caller then fine-tunes the pruned model on clean data.

:func:`detection_metrics` scores a detector against the known poison index and :func:`der`
is BackdoorBench's defense effectiveness rating. Feature-space detectors take features from
:func:`penultimate`. Randomness only from explicit ``torch.Generator`` arguments; the
scikit-learn estimators get their ``random_state`` drawn from them.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ..models import is_conv

PRUNE_MASK = "prune_mask"  # buffer name of the channel mask on the pruned ReLU
ICA_MAX_ITER = 2000  # FastICA iterations (sklearn's default 200 often stops short on activations)


# ----------------------------------------------------------------------------- helpers


def _device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def _prepare(model: nn.Module, x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A batch on ``device``, in channels_last layout for a conv model's 4-D input."""
    x = x.to(device)
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 and is_conv(model) else x


def _seed(generator: torch.Generator) -> int:
    """A scikit-learn ``random_state`` drawn from ``generator``."""
    return int(torch.randint(0, 2**31 - 1, (1,), generator=generator))


def _check_pairs(feats: torch.Tensor, labels: torch.Tensor) -> None:
    if feats.dim() != 2:
        raise ValueError(f"feats must be (N, D), found shape {tuple(feats.shape)}")
    if labels.shape != (len(feats),):
        raise ValueError(f"labels must be (N,) = ({len(feats)},), found shape {tuple(labels.shape)}")


# ----------------------------------------------------------------------------- features


@torch.no_grad()
def penultimate(model: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Penultimate-layer features of ``x`` via ``model.embed``, in eval mode, batched.

    The model's train/eval mode is restored afterwards.

    Shape: x (N, C, H, W) -> (N, D) float, on ``x``'s device.
    """
    if not callable(getattr(model, "embed", None)):
        raise ValueError(f"model {type(model).__name__} has no embed() method; penultimate "  # noqa: TRY004
                         f"features need one (advgen.models.CNN has)")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, found {batch_size}")
    device, was_training = _device(model), model.training
    model.eval()
    try:
        out = [model.embed(_prepare(model, x[i:i + batch_size], device)).flatten(1).to(x.device)
               for i in range(0, len(x), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.empty(0, 0, device=x.device)


# ----------------------------------------------------------------------------- spectral signatures


def spectral_scores(feats: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Tran et al.'s outlier score of every sample within its class.

    "Spectral Signatures in Backdoor Attacks" (Tran, Li, Madry, NeurIPS 2018): within class y,
    centre the features R = F_y - mean(F_y), take the top right-singular vector v of R, and
    score each sample by its squared projection <f - mean, v>^2. Classes with fewer than two
    samples score 0.

    Shape: feats (N, D), labels (N,) -> (N,) float64.
    """
    _check_pairs(feats, labels)
    scores = torch.zeros(len(feats), dtype=torch.float64, device=feats.device)
    for y in labels.unique():
        idx = (labels == y).nonzero().squeeze(1)  # (n_y,)
        if len(idx) < 2:
            continue
        centred = feats[idx].double() - feats[idx].double().mean(0)  # (n_y, D)
        v = torch.linalg.svd(centred, full_matrices=False).Vh[0]  # (D,)
        scores[idx] = (centred @ v) ** 2
    return scores


def spectral_signatures(feats: torch.Tensor, labels: torch.Tensor, expected_count: int,
                        factor: float = 1.5, max_class_fraction: float = 0.5
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Spectral-signature filtering (Tran et al., NeurIPS 2018) of a training set.

    Defender's view: the (possibly poisoned) training set with its labels, the trained model's
    penultimate features, and an upper bound ``expected_count`` on the number of poisoned
    samples, but not the target class. In every class y the top
    ``k_y = min(ceil(factor * expected_count), floor(max_class_fraction * n_y))`` scores of
    :func:`spectral_scores` are flagged for removal (Tran et al. remove 1.5 times the bound);
    the cap keeps the flagged part a minority of the class, the assumption under which the
    top singular direction is the poison's.

    Arguments:
        expected_count (int): upper bound on the poisoned samples (>= 0).
        factor (float): multiple of the bound removed per class (Default: 1.5, the paper's).
        max_class_fraction (float): at most this fraction of a class is flagged, in (0, 1]
            (Default: 0.5).

    Shape: feats (N, D), labels (N,) -> flags (N,) bool, scores (N,) float64.
    """
    if expected_count < 0:
        raise ValueError(f"expected_count must be >= 0, found {expected_count}")
    if not factor > 0:
        raise ValueError(f"factor must be > 0, found {factor}")
    if not 0 < max_class_fraction <= 1:
        raise ValueError(f"max_class_fraction must lie in (0, 1], found {max_class_fraction}")
    scores = spectral_scores(feats, labels)
    flags = torch.zeros(len(feats), dtype=torch.bool, device=feats.device)
    budget = math.ceil(factor * expected_count)
    for y in labels.unique():
        idx = (labels == y).nonzero().squeeze(1)  # (n_y,)
        k = min(budget, math.floor(max_class_fraction * len(idx)))
        top = torch.argsort(scores[idx], descending=True, stable=True)[:k]  # (k,)
        flags[idx[top]] = True
    return flags, scores


# ----------------------------------------------------------------------------- activation clustering


def _cluster_class(f: np.ndarray, dims: int, generator: torch.Generator) -> np.ndarray | None:
    """k-means (k=2) labels of one class's features after ICA, or None when it cannot be split."""
    f = f[:, f.std(0) > 0]  # constant (dead) units carry nothing and break whitening
    rank = int(np.linalg.matrix_rank(f - f.mean(0))) if f.size else 0
    n_comp = min(dims, len(f), rank)
    if n_comp < 1:
        return None
    import warnings

    from sklearn.cluster import KMeans  # sklearn costs ~1 s to import: only when clustering
    from sklearn.decomposition import FastICA
    from sklearn.exceptions import ConvergenceWarning

    ica = FastICA(n_components=n_comp, whiten="unit-variance", max_iter=ICA_MAX_ITER,
                  random_state=_seed(generator))
    with warnings.catch_warnings():  # an unconverged ICA still gives usable components for 2-means
        warnings.simplefilter("ignore", ConvergenceWarning)
        reduced = ica.fit_transform(f)  # (n_y, n_comp)
    return KMeans(n_clusters=2, n_init=10, random_state=_seed(generator)).fit_predict(reduced)


def activation_clustering(feats: torch.Tensor, labels: torch.Tensor, generator: torch.Generator,
                          dims: int = 10, size_threshold: float = 0.35
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Activation clustering (Chen et al., 2018) of a training set.

    "Detecting Backdoor Attacks on Deep Neural Networks by Activation Clustering" (Chen,
    Carvalho, Baracaldo, Ludwig, Edwards, Lee, Molloy, Srivastava, 2018). Defender's view: the
    training set's labels and the trained model's penultimate features. Per class: FastICA to
    ``dims`` components (fewer when the class has fewer samples, or its features a lower rank;
    constant features are dropped first; ``whiten="unit-variance"``), k-means with k = 2, and
    the smaller cluster is flagged when its share of the class is below ``size_threshold``
    (the paper's relative-size criterion). Classes are visited in increasing label order and
    each clustered class draws two ``random_state`` values (ICA, k-means) from ``generator``,
    so the result is a function of the generator's state.

    Arguments:
        dims (int): ICA components (Default: 10, the paper's).
        size_threshold (float): a cluster below this share of its class is poison, in (0, 1)
            (Default: 0.35, the paper's).

    Returns flags (N,) bool and a score (N,) float64 = 1 - (size of the sample's cluster /
    class size), high for members of small clusters (for AUROC). Classes too small to cluster
    (fewer than 2 * dims or 4 samples) are not flagged and score 0.

    Shape: feats (N, D), labels (N,).
    """
    _check_pairs(feats, labels)
    if dims < 1:
        raise ValueError(f"dims must be >= 1, found {dims}")
    if not 0 < size_threshold < 1:
        raise ValueError(f"size_threshold must lie in (0, 1), found {size_threshold}")
    flags = torch.zeros(len(feats), dtype=torch.bool)
    scores = torch.zeros(len(feats), dtype=torch.float64)
    f_all, lab = feats.detach().double().cpu().numpy(), labels.cpu()
    for y in lab.unique():
        idx = (lab == y).nonzero().squeeze(1)  # (n_y,)
        n = len(idx)
        if n < 2 * dims or n < 4:
            continue
        assign = _cluster_class(f_all[idx.numpy()], dims, generator)
        if assign is None:
            continue
        sizes = np.bincount(assign, minlength=2)  # (2,)
        scores[idx] = torch.from_numpy(1.0 - sizes[assign] / n)
        small = int(sizes.argmin())
        if sizes[small] / n < size_threshold:
            flags[idx[torch.from_numpy(assign == small)]] = True
    return flags.to(feats.device), scores.to(feats.device)


# ----------------------------------------------------------------------------- STRIP


def _entropy(logits: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) of softmax(logits): (B, K) -> (B,)."""
    logp = logits.float().log_softmax(1)
    return -(logp.exp() * logp).sum(1)


@torch.no_grad()
def strip_entropy(model: nn.Module, x: torch.Tensor, pool: torch.Tensor, generator: torch.Generator,
                  n_overlay: int = 10, batch_size: int = 1000) -> torch.Tensor:
    """STRIP's entropy of every input (Gao et al., ACSAC 2019).

    "STRIP: A Defence Against Trojan Attacks on Deep Neural Networks" (Gao, Xu, Wang, Chen,
    Ranasinghe, Nepal, 2019). Defender's view: the deployed model's softmax outputs and a small
    set of clean held-out images ``pool``. Each input is superimposed with ``n_overlay`` pool
    images drawn uniformly with replacement from ``generator``; the blend is the saturating
    image addition ``clamp(x + overlay, 0, 1)`` (the paper's superimposition, which its code
    does as ``cv2.addWeighted(x, 1, overlay, 1, 0)`` on uint8 images). A trigger keeps pulling
    the blends to the target class, so a triggered input's mean entropy over its blends is
    low; a clean input's blends scatter over classes. All draws are made up front, so the
    result does not depend on ``batch_size``. Eval mode (restored afterwards), batched.

    Arguments:
        n_overlay (int): blends per input (Default: 10).
        batch_size (int): blended images per forward pass (Default: 1000).

    Shape: x (N, C, H, W), pool (N_pool, C, H, W), both in [0, 1] -> (N,) float entropy
    (natural log), on ``x``'s device.
    """
    if n_overlay < 1:
        raise ValueError(f"n_overlay must be >= 1, found {n_overlay}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, found {batch_size}")
    if len(pool) == 0 or pool.shape[1:] != x.shape[1:]:
        raise ValueError(f"pool must be non-empty with images shaped like x {tuple(x.shape[1:])}, "
                         f"found shape {tuple(pool.shape)}")
    picks = torch.randint(0, len(pool), (len(x), n_overlay), generator=generator)  # (N, n_overlay)
    device, was_training = _device(model), model.training
    per_step = max(1, batch_size // n_overlay)  # inputs per forward pass
    model.eval()
    try:
        out = []
        for i in range(0, len(x), per_step):
            xb = x[i:i + per_step].to(device)  # (b, C, H, W)
            overlay = pool[picks[i:i + per_step].flatten()].to(device)  # (b * n_overlay, C, H, W)
            blended = (xb.repeat_interleave(n_overlay, 0) + overlay).clamp(0, 1)
            ent = _entropy(model(_prepare(model, blended, device)))  # (b * n_overlay,)
            out.append(ent.view(len(xb), n_overlay).mean(1).to(x.device))
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.empty(0, device=x.device)


def strip_threshold(clean_entropy: torch.Tensor, frr: float = 0.01) -> float:
    """STRIP's detection boundary: inputs with entropy below it are flagged as triggered.

    Gao et al. fix the false rejection rate on clean inputs: the boundary is the ``frr``
    quantile (linear interpolation) of the entropies of clean held-out inputs, so about a
    fraction ``frr`` of clean inputs falls below it.

    Shape: clean_entropy (N,) -> float.
    """
    if not 0 < frr < 1:
        raise ValueError(f"frr must lie in (0, 1), found {frr}")
    if clean_entropy.numel() == 0:
        raise ValueError("clean_entropy is empty; the threshold needs clean held-out entropies")
    return float(torch.quantile(clean_entropy.double().flatten(), frr))


# ----------------------------------------------------------------------------- fine-pruning


def _mask_output(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
    """Forward hook: zero the pruned channels of ``output`` (B, C, H, W)."""
    return output * getattr(module, PRUNE_MASK).to(output.dtype)


def _last_conv_relu(model: nn.Module) -> tuple[str, nn.Module]:
    """Name and module of the first ReLU after the last Conv2d in ``model.features``."""
    features = getattr(model, "features", None)
    if not isinstance(features, nn.Sequential):
        raise ValueError(f"model {type(model).__name__} has no nn.Sequential `features`; "  # noqa: TRY004
                         f"fine-pruning needs its last convolution")
    mods = list(features.named_modules())
    convs = [i for i, (_, m) in enumerate(mods) if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"model {type(model).__name__} has no nn.Conv2d in `features`")
    relus = [(f"features.{n}", m) for n, m in mods[convs[-1] + 1:] if isinstance(m, nn.ReLU)]
    if not relus:
        raise ValueError(f"model {type(model).__name__}: no nn.ReLU after the last Conv2d in `features`")
    return relus[0]


@torch.no_grad()
def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
    device = _device(model)
    correct = sum(int((model(_prepare(model, x[i:i + batch_size], device)).argmax(1).cpu()
                       == y[i:i + batch_size].cpu()).sum()) for i in range(0, len(x), batch_size))
    return correct / len(x)


@torch.no_grad()
def _channel_means(model: nn.Module, relu: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Mean activation per channel of ``relu``'s output over ``x``: (C,) float64."""
    sums: list[torch.Tensor] = []
    handle = relu.register_forward_hook(
        lambda m, i, out: sums.append(out.double().mean((2, 3)).sum(0).cpu()))  # (C,) per batch
    try:
        device = _device(model)
        for i in range(0, len(x), batch_size):
            model(_prepare(model, x[i:i + batch_size], device))
    finally:
        handle.remove()
    return torch.stack(sums).sum(0) / len(x)


def prune_last_conv(model: nn.Module, clean_x: torch.Tensor, clean_y: torch.Tensor,
                    max_acc_drop: float = 0.1, max_fraction: float = 0.9,
                    batch_size: int = 1000) -> dict:
    """The pruning step of Fine-Pruning (Liu, Dolan-Gavitt, Garg, RAID 2018).

    "Fine-Pruning: Defending Against Backdooring Attacks on Deep Neural Networks". Defender's
    view: the (possibly backdoored) model and a small clean validation set. Backdoor behaviour
    tends to live in channels that clean inputs leave dormant, so the last convolution's
    channels (their activations after the first ReLU following the last ``nn.Conv2d`` in
    ``model.features``) are pruned in increasing order of mean clean activation, one at a time,
    while the clean accuracy stays >= (unpruned accuracy - ``max_acc_drop``) and at most
    ``floor(max_fraction * C)`` channels are pruned. The scan stops at the first channel whose
    pruning breaks the accuracy rule, and that channel is restored (accuracy is not monotone in
    the pruned count, so no bisection).

    Pruning is a persistent forward hook on that ReLU multiplying its output by a (1, C, 1, 1)
    0/1 mask, so the channels stay pruned in later fine-tuning and in eval. The mask is a
    non-persistent buffer ``prune_mask`` on the ReLU (it follows ``model.to`` and deep copies,
    and stays out of the state dict); ``model._advgen_prune_mask`` names it (e.g.
    ``"features.6.prune_mask"``, fetch with ``model.get_buffer``). Modifies ``model`` in place;
    a model pruned before is refused. Accuracy is measured in eval mode; the model's mode is
    restored afterwards.

    Arguments:
        max_acc_drop (float): the clean-accuracy loss allowed, >= 0 (Default: 0.1).
        max_fraction (float): most channels pruned, a fraction in [0, 1] (Default: 0.9).

    Shape: clean_x (N, C_in, H, W) in [0, 1], clean_y (N,). Returns ``{"channels": C,
    "pruned": k, "pruned_channels": [...] (pruning order), "clean_accuracy_before": a0,
    "clean_accuracy_after": a1}``.
    """
    name, relu = _last_conv_relu(model)
    if hasattr(model, "_advgen_prune_mask"):
        raise ValueError(f"model {type(model).__name__} is already pruned ({model._advgen_prune_mask})")
    if max_acc_drop < 0:
        raise ValueError(f"max_acc_drop must be >= 0, found {max_acc_drop}")
    if not 0 <= max_fraction <= 1:
        raise ValueError(f"max_fraction must lie in [0, 1], found {max_fraction}")
    if len(clean_x) == 0 or clean_y.shape != (len(clean_x),):
        raise ValueError(f"clean_x and clean_y must be non-empty and of equal length, found "
                         f"{tuple(clean_x.shape)} and {tuple(clean_y.shape)}")
    was_training = model.training
    model.eval()
    try:
        means = _channel_means(model, relu, clean_x, batch_size)  # (C,)
        order = torch.argsort(means, stable=True).tolist()  # most dormant first
        n_ch = len(means)
        mask = torch.ones(1, n_ch, 1, 1, device=_device(model))
        relu.register_buffer(PRUNE_MASK, mask, persistent=False)
        relu.register_forward_hook(_mask_output)
        model._advgen_prune_mask = f"{name}.{PRUNE_MASK}"
        a0 = acc = _accuracy(model, clean_x, clean_y, batch_size)
        pruned: list[int] = []
        for ch in order[:math.floor(max_fraction * n_ch)]:
            mask[0, ch] = 0.0
            trial = _accuracy(model, clean_x, clean_y, batch_size)
            if trial < a0 - max_acc_drop - 1e-12:
                mask[0, ch] = 1.0
                break
            pruned.append(ch)
            acc = trial
    finally:
        model.train(was_training)
    return {"channels": n_ch, "pruned": len(pruned), "pruned_channels": pruned,
            "clean_accuracy_before": a0, "clean_accuracy_after": acc}


# ----------------------------------------------------------------------------- scoring


def detection_metrics(flags: torch.Tensor, scores: torch.Tensor, is_poison: torch.Tensor) -> dict:
    """How well a poison detector's flags and scores match the known poison index.

    Returns ``tpr`` (flagged poison / poison), ``fpr`` (flagged clean / clean), ``precision``
    (poison among flagged), ``n_flagged``, ``n_poison`` and ``auroc`` of ``scores`` against
    ``is_poison`` (higher = more suspicious; sklearn's ``roc_auc_score``). A ratio whose
    denominator is 0, and the AUROC when only one class is present, are None. Unrounded.

    Shape: flags (N,) bool, scores (N,) float, is_poison (N,) bool.
    """
    n = len(is_poison)
    if flags.shape != (n,) or scores.shape != (n,):
        raise ValueError(f"flags, scores and is_poison must all be (N,), found {tuple(flags.shape)}, "
                         f"{tuple(scores.shape)}, {tuple(is_poison.shape)}")
    flags, poison = flags.bool().cpu(), is_poison.bool().cpu()
    tp, n_flagged, n_poison = int((flags & poison).sum()), int(flags.sum()), int(poison.sum())
    fp, n_clean = n_flagged - tp, n - n_poison
    from sklearn.metrics import roc_auc_score

    auroc = (float(roc_auc_score(poison.numpy(), scores.detach().double().cpu().numpy()))
             if 0 < n_poison < n else None)
    return {"tpr": tp / n_poison if n_poison else None,
            "fpr": fp / n_clean if n_clean else None,
            "precision": tp / n_flagged if n_flagged else None,
            "n_flagged": n_flagged, "n_poison": n_poison, "auroc": auroc}


def der(ca_before: float, asr_before: float, ca_after: float, asr_after: float) -> float:
    """BackdoorBench's defense effectiveness rating (Wu et al., NeurIPS 2022 D&B).

    ``DER = (max(0, ASR_before - ASR_after) - max(0, CA_before - CA_after) + 1) / 2`` in
    [0, 1]: 0.5 means no change, 1 a backdoor removed at no clean-accuracy cost. Accuracies
    (CA) and attack success rates (ASR) are fractions in [0, 1].
    """
    return (max(0.0, asr_before - asr_after) - max(0.0, ca_before - ca_after) + 1) / 2
