"""Code-space probes of a generator (claim C14), judged by the pipeline's classifier.

* **Interpolation**: straight lines between two codes whose samples the classifier puts in
  different classes; along each path, does the probability of the end class rise
  monotonically (no drop larger than a stated tolerance)?
* **Arithmetic** (Radford et al. 2016's z(man with glasses) - z(man) + z(woman)): class-mean
  codes z_bar(c) from confidently classified samples; a held-out code z of class a is moved to
  z - z_bar(a) + z_bar(c) and the result is classified. The rate of landing in c is compared
  with chance: the share of class c among samples from random codes.
"""
from __future__ import annotations

import torch
from torch import nn

from .features import FeatureNet, classify
from .models import generate, sample_codes


def interpolation(g: nn.Module, net: FeatureNet, n_paths: int, steps: int, tol: float,
                  generator: torch.Generator, max_rounds: int = 10) -> dict:
    """C14 interpolation on ``n_paths`` paths of ``steps`` points (ends included); pairs of codes
    are drawn in at most ``max_rounds`` rounds of ``n_paths`` (fewer paths if a collapsed
    generator rarely yields two classes).

    Returns the fraction of monotone paths, the mean largest drop, the mean end-class
    probability at each step, and the images of the first 8 paths (8 * steps, C, H, W) for a grid.
    """
    z_dim = g.z_dim
    starts, ends = [], []
    for _ in range(max_rounds):  # keep pairs whose ends the classifier puts in different classes
        za, zb = sample_codes(n_paths, z_dim, generator), sample_codes(n_paths, z_dim, generator)
        keep = classify(net, generate(g, za)).argmax(1) != classify(net, generate(g, zb)).argmax(1)
        starts += list(za[keep]); ends += list(zb[keep])  # noqa: E702
        if len(starts) >= n_paths:
            break
    if not starts:  # a generator whose samples all fall in one class has no such path
        return {"n_paths": 0, "steps": steps, "tolerance": tol, "monotone_fraction": None,
                "mean_max_drop": None, "mean_end_prob": [], "images": torch.empty(0, g.channels, 28, 28)}
    n_paths = min(n_paths, len(starts))
    za, zb = torch.stack(starts[:n_paths]), torch.stack(ends[:n_paths])  # (P, z_dim)
    t = torch.linspace(0, 1, steps)  # (S,)
    path = za[:, None] * (1 - t)[None, :, None] + zb[:, None] * t[None, :, None]  # (P, S, z_dim)
    imgs = generate(g, path.reshape(-1, z_dim))  # (P * S, C, H, W)
    probs = classify(net, imgs).reshape(n_paths, steps, -1)  # (P, S, K)
    end_class = probs[:, -1].argmax(1)
    p_end = probs.gather(2, end_class[:, None, None].expand(-1, steps, 1)).squeeze(2)  # (P, S)
    drops = (p_end[:, :-1] - p_end[:, 1:]).clamp(min=0).amax(1)  # largest fall along each path
    return {"n_paths": n_paths, "steps": steps, "tolerance": tol,
            "monotone_fraction": float((drops <= tol).double().mean()),
            "mean_max_drop": float(drops.double().mean()),
            "mean_end_prob": [float(v) for v in p_end.double().mean(0)],
            "images": imgs[:8 * steps]}


def arithmetic(g: nn.Module, net: FeatureNet, n: int, num_classes: int, generator: torch.Generator,
               confidence: float = 0.9, per_pair: int = 20) -> dict:
    """C14 arithmetic: class means from ``n`` codes (samples classified with probability >=
    ``confidence``), tested on up to ``per_pair`` other confidently classified codes per
    ordered class pair (a, c), a != c, among ``n`` fresh ones.

    Returns the success rate (classified as c), chance (mean share of c among the random
    codes' samples), the per-target rates, and how many classes had a mean.
    """
    z_dim = g.z_dim

    def labelled(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = classify(net, generate(g, z))
        conf, cls = p.max(1)
        return cls, conf >= confidence

    z_mean = sample_codes(n, z_dim, generator)
    cls, ok = labelled(z_mean)
    share = torch.bincount(cls, minlength=num_classes).double() / n
    means = {c: z_mean[ok & (cls == c)].mean(0) for c in range(num_classes) if int((ok & (cls == c)).sum()) >= 5}
    z_test = sample_codes(n, z_dim, generator)
    cls_t, ok_t = labelled(z_test)
    moved, targets, chance = [], [], []
    for a in means:
        pool = z_test[ok_t & (cls_t == a)][:per_pair]
        for c in means:
            if c == a or not len(pool):
                continue
            moved.append(pool - means[a] + means[c])
            targets += [c] * len(pool)
            chance += [float(share[c])] * len(pool)
    if not moved:
        return {"classes_with_mean": len(means), "n_tests": 0, "success_rate": None, "chance": None}
    target = torch.tensor(targets)
    pred = classify(net, generate(g, torch.cat(moved))).argmax(1)
    hit = (pred == target).double()
    per_target = {str(c): float(hit[target == c].mean()) for c in sorted(set(targets))}
    return {"classes_with_mean": len(means), "n_tests": len(targets), "success_rate": float(hit.mean()),
            "chance": float(torch.tensor(chance).mean()), "per_target": per_target,
            "confidence": confidence}
