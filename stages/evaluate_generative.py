"""Stage evaluate_generative: score every model of params ``evaluate_generative.models``.

Usage: ``python stages/evaluate_generative.py``. Writes ``reports/generative/metrics.json``
(per model: FID with a bootstrap 95% interval, KID, precision/recall, class or mode coverage,
C14's code probes, the memorised share; every sample set of each diffusion config, the autoencoder's
reconstructions; the real-vs-real floor; the memorisation threshold and real-vs-real share under
``memorisation``; the feature network's sha256), an interpolation grid
per single-channel GAN, the headline, and the sampling cost per 1,000 images
(``reports/cost/generative_sampling.json``; timings never go into metrics).
"""
from __future__ import annotations

import zlib
from pathlib import Path

import torch

from advgen import headline, stage
from advgen.config import load_section
from advgen.data import dataset_dir, subset_index, to_float
from advgen.generative import headline as hl
from advgen.generative.evaluate import (
    Settings,
    check_sizes,
    evaluate_diffusion,
    evaluate_model,
    evaluate_samples,
    floor,
    load_real,
    memorisation,
    score,
    split_features,
)
from advgen.generative.features import extract, load_feature_net
from advgen.generative.models import load_generator
from advgen.generative.params import EvaluateGenerativeConfig
from advgen.generative.scores import inception_fid
from advgen.generative.training import stack_channels
from advgen.plots import grid_png
from advgen.utils import atomic_dir, atomic_write_json, deterministic_kernels, resolve_device, round_floats


def model_stream(seed: int, name: str) -> torch.Generator:
    """A model's own random stream: adding or removing a model changes no other model's figures."""
    return torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))


def evaluate(params: dict) -> None:
    common = stage.common(params)
    cfg = load_section(EvaluateGenerativeConfig, params, "evaluate_generative")
    s = Settings(cfg.n, cfg.n_large, cfg.n_stacked, cfg.n_boot, cfg.kid_subsets, cfg.kid_subset_size, cfg.pr_k,
                 cfg.min_share, cfg.n_paths, cfg.n_arith, cfg.interp_steps, cfg.monotone_tol)
    if cfg.inception_weights and not Path(cfg.inception_weights).is_file():  # before the long work, not after
        raise ValueError(f"params.yaml: 'evaluate_generative.inception_weights' = {cfg.inception_weights!r}: no such "
                         "file (set it to a local Inception weights file, or null)")
    device = resolve_device(common.device)
    deterministic_kernels()
    net = load_feature_net(cfg.feature_model, cfg.feature_sha256, device)
    gen = torch.Generator().manual_seed(common.seed)
    real, xtr, xte = load_real(dataset_dir(stage.dataset(params)), cfg.n, gen)
    check_sizes(s, len(xtr), len(xte))
    real.train_feats = extract(net, real.train)
    m = cfg.n_memorisation or max(len(xtr), len(xte))  # 0: every image of both splits
    real.memo = memorisation(split_features(net, xtr[:m]), split_features(net, xte[:m]))
    large = None
    if cfg.n_large:
        big = to_float(xtr[subset_index(len(xtr), cfg.n_large, gen)])
        large = (big, extract(net, big))
    stacked_ref = to_float(stack_channels(xtr, gen)[0][:cfg.n_stacked])  # real triples: the reference mode count
    metrics = {"feature_model": cfg.feature_model, "feature_sha256": net.sha256, "n": cfg.n,
               "n_large": cfg.n_large, "pr_k": cfg.pr_k, "min_share": cfg.min_share, "memorisation": real.memo.record(),
               "floor": floor(net, real, s, model_stream(common.seed, "floor"), common.seed, stacked_ref),
               "models": {}}
    if large is not None:  # the floor at the literature's N too
        test_large = to_float(xte[subset_index(len(xte), cfg.n_large, gen)])
        fl = score(net, large[0], large[1], test_large, s, model_stream(common.seed, "floor_large"), common.seed, boot=False)
        metrics["floor"]["large"] = {k: fl[k] for k in ("n", "fid", "kid", "precision", "recall")}
    costs, grids = {}, {}
    for name in cfg.models:
        out, extras = evaluate_model(name, Path("models/gan") / name, Path("reports/gan") / name / "log.tsv", net, real,
                                     s, model_stream(common.seed, name), common.seed, large, device)
        metrics["models"][name] = out
        costs[name] = {"seconds_per_1000": round(extras["seconds_per_1000"], 4)}
        if len(extras.get("interpolation", [])):
            grids[name] = extras["interpolation"]
    if cfg.diffusion:
        metrics["diffusion"] = {}
        for name in cfg.diffusion:
            rows, others = evaluate_diffusion(Path("models/diffusion") / name, net, real, s,
                                              lambda k, m=name: model_stream(common.seed, f"{m}/{k}"), common.seed)
            metrics["models"][name] = rows["main"]
            if "uncond" in rows:  # a conditional model's unconditional mode: its own row
                metrics["models"][f"{name}_uncond"] = rows["uncond"]
            metrics["diffusion"][name] = others
        if any(m.get("space") == "latent" for m in metrics["models"].values()):  # latent diffusion's ceiling
            from advgen.generative.store import load_samples
            rec = load_samples("models/autoencoder")["reconstructions"]
            metrics["autoencoder"] = evaluate_samples(rec["images"], None, net, real, s,
                                                      model_stream(common.seed, "autoencoder"), common.seed)
    if cfg.inception_weights:
        metrics["inception"] = {"weights": cfg.inception_weights, "fid": {
            name: inception_fid(cfg.inception_weights, real.train, _samples(name, cfg, device, common.seed))
            for name in cfg.models}}  # the GANs: diffusion sets would need the Inception at their own N
    else:
        metrics["inception"] = {"weights": None, "fid": "not available offline"}
    metrics = round_floats(metrics)
    with atomic_dir("reports/generative") as tmp:
        atomic_write_json(tmp / "metrics.json", metrics)
        for name, imgs in grids.items():
            (tmp / f"interpolation_{name}.png").write_bytes(grid_png(imgs, s.interp_steps))
    atomic_write_json("reports/cost/generative_sampling.json", costs)
    headline.write("generative", hl.generative(metrics))


def _samples(name: str, cfg: EvaluateGenerativeConfig, device: torch.device, seed: int) -> torch.Tensor:
    from advgen.generative.models import generate, sample_codes

    g = load_generator(Path("models/gan") / name, device)
    x = generate(g, sample_codes(cfg.n, g.z_dim, model_stream(seed, name + "/inception")))
    return x[:, :1] if g.channels == 3 else x


if __name__ == "__main__":
    stage.run("evaluate_generative", evaluate, Path("reports/cost/evaluate_generative.json"))
