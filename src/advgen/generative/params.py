"""The generative area's sections of params.yaml (``gan``, ``autoencoder``, ``diffusion``,
``evaluate_generative``), one validated dataclass each, and their cross-checks.

No torch here: the names of losses, norms, schedules and samplers are repeated, and
``tests/test_schema.py`` / ``tests/test_diffusion.py`` hold them against the modules that
implement them."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..config import ConfigError, from_dict, require
from ..schema import model_field, sized

GAN_LOSSES = ("minimax", "non_saturating", "wgan_gp")  # advgen.generative.gan.LOSSES
GAN_NORMS = ("batch", "none", "spectral")  # advgen.generative.models.NORMS


@dataclass
class GANSpec:
    """One entry of ``gan.configs``: a DCGAN trained with one loss."""

    loss: str  # minimax | non_saturating | wgan_gp
    d_steps: int = 1  # discriminator (critic) steps per generator step
    lr: float = 0.0002  # Adam, both networks (Radford et al.)
    betas: list[float] = field(default_factory=lambda: [0.5, 0.999])
    gp_weight: float | None = None  # wgan_gp: lambda of the gradient penalty (Gulrajani et al.: 10)
    z_dim: int = 100
    width: int = 64  # channels of G's last hidden map and D's first (doubled in the next)
    stacked: bool = False  # Stacked Fashion-MNIST: three independent images as three channels
    # D's normalisation: batch (the PyTorch DCGAN example, JS losses), spectral (Miyato et al. 2018)
    # or none; null: batch for the JS losses, none for WGAN-GP (its per-sample penalty forbids batch).
    d_norm: str | None = None

    @property
    def norm(self) -> str:
        return self.d_norm or ("none" if self.loss == "wgan_gp" else "batch")

    def validate(self) -> None:
        require(self.loss in GAN_LOSSES, "loss", f"must be one of {list(GAN_LOSSES)}, found {self.loss!r}")
        require(self.norm in GAN_NORMS, "d_norm", f"must be one of {list(GAN_NORMS)} or null, found {self.d_norm!r}")
        require(not (self.loss == "wgan_gp" and self.norm == "batch"), "d_norm",
                "batch norm breaks WGAN-GP's per-sample gradient penalty (Gulrajani et al. 2017); use none or spectral")
        require(self.d_steps >= 1, "d_steps", f"must be >= 1, found {self.d_steps}")
        require(self.lr > 0, "lr", f"must be > 0, found {self.lr}")
        require(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), "betas",
                f"must be two numbers in [0, 1), found {self.betas}")
        require(self.z_dim >= 1, "z_dim", f"must be >= 1, found {self.z_dim}")
        require(self.width >= 1, "width", f"must be >= 1, found {self.width}")
        require((self.gp_weight is not None) == (self.loss == "wgan_gp"), "gp_weight",
                "must be set for loss 'wgan_gp' and only there")
        require(self.gp_weight is None or self.gp_weight > 0, "gp_weight", f"must be > 0, found {self.gp_weight}")

    def config(self) -> dict[str, Any]:
        out = {k: v for k, v in dataclasses.asdict(self).items() if v is not None}
        out["d_norm"] = self.norm
        return out


@dataclass
class GANConfig:
    """The ``gan`` stage: one DCGAN per entry of ``configs`` (a DVC foreach)."""

    feature_model: str = model_field()  # the classifier whose features score the FID curve
    configs: dict
    batch_size: int
    log_every: int  # G iterations between logged rows
    trace_iters: int  # the first G iterations, each logged with both losses' gradient norms (C11)
    grid: int  # a grid x grid sample grid from fixed codes at every FID point
    ema_decay: float  # samples, grids and FID points come from an EMA of G's weights (0: G itself)
    n_boot_curve: int  # bootstrap resamples of each FID point's interval
    converge_window: int  # stop once this many last FID points agree within their intervals
    g_steps: int = sized()  # the budget: generator updates (D takes d_steps per G step)
    n_train: int = sized()  # real training images (0 = all)
    fid_every: int = sized()  # G iterations between FID points of the curve (and grids)
    n_fid: int = sized()  # samples per FID point of the curve
    probe_steps: int = sized()  # C11 at initialisation: D steps against the frozen initial G
    converge: bool = sized()  # stop early once the FID curve has flattened
    nproc: int = 1  # > 1 runs under torchrun (gloo on CPU, nccl on GPU)

    def validate(self) -> None:
        require(len(self.configs) >= 1, "configs", "must name at least one GAN config")
        for key in ("batch_size", "log_every", "grid", "nproc", "g_steps", "fid_every", "n_boot_curve"):
            require(getattr(self, key) >= 1, key, f"must be >= 1, found {getattr(self, key)}")
        for key in ("trace_iters", "probe_steps", "n_train"):
            require(getattr(self, key) >= 0, key, f"must be >= 0, found {getattr(self, key)}")
        require(self.n_fid >= 10, "n_fid", f"must be >= 10, found {self.n_fid}")
        require(0 <= self.ema_decay < 1, "ema_decay", f"must lie in [0, 1), found {self.ema_decay}")
        require(self.converge_window >= 2, "converge_window", f"must be >= 2, found {self.converge_window}")

    def spec(self, name: str) -> GANSpec:
        """The validated entry ``gan.configs.<name>``."""
        if name not in self.configs:
            raise ConfigError(f"params.yaml: GAN config {name!r} is not in gan.configs {sorted(self.configs)}")
        return from_dict(GANSpec, self.configs[name] or {}, f"gan.configs.{name}")


@dataclass
class EvaluateGenerativeConfig:
    """The ``evaluate_generative`` stage: every generative model scored the same way."""

    feature_model: str = model_field()  # a train.models classifier; its penultimate layer gives the features
    models: list[str]  # generators to score (gan.configs names)
    n: int = sized()  # samples per model and real images per set, the same for every model
    n_large: int = sized()  # GANs also at this N (0 = off)
    n_stacked: int = sized()  # Stacked Fashion-MNIST samples for the 1,000-mode count
    n_boot: int = sized()  # bootstrap resamples of the FID interval
    kid_subset_size: int = sized()
    n_paths: int = sized()  # C14 interpolation paths
    n_arith: int = sized()  # C14 codes per class mean and per arithmetic test
    n_memorisation: int = sized()  # training and test images of the memorisation check (0 = the whole splits)
    diffusion: list[str] = field(default_factory=list)  # diffusion.configs names: every sample set they drew
    feature_sha256: str | None = None  # pin: refuse a feature network whose weights hash differs
    inception_weights: str | None = None  # a local Inception weights file (never downloaded); null: not available
    pr_k: int = 3  # Kynkaanniemi et al.
    min_share: float = 0.01  # a class is covered when it holds at least this share of the samples
    kid_subsets: int = 50
    interp_steps: int = 11  # C14: points per interpolation path, ends included
    monotone_tol: float = 0.02  # C14: largest allowed drop of the end class's probability along a path

    def validate(self) -> None:
        require(len(self.models) >= 1, "models", "must name at least one generative model")
        require(len(set(self.models)) == len(self.models), "models", f"names a model twice: {self.models}")
        require(self.feature_sha256 is None or (len(self.feature_sha256) == 64 and
                                                all(c in "0123456789abcdef" for c in self.feature_sha256)),
                "feature_sha256", f"must be a 64-digit lowercase hex sha256 or null, found {self.feature_sha256!r}")
        require(self.pr_k >= 1, "pr_k", f"must be >= 1, found {self.pr_k}")
        require(0 < self.min_share < 1, "min_share", f"must lie in (0, 1), found {self.min_share}")
        require(self.n >= 10, "n", f"must be >= 10, found {self.n}")
        require(self.n_large == 0 or self.n_large >= self.n, "n_large", f"must be 0 or >= n ({self.n}), found {self.n_large}")
        require(self.n_memorisation == 0 or self.n_memorisation >= 200, "n_memorisation",
                f"must be 0 (the whole splits) or >= 200 (its 1% threshold needs 100 held-out images), found {self.n_memorisation}")
        for key in ("n_stacked", "n_boot", "kid_subsets", "n_paths", "n_arith"):
            require(getattr(self, key) >= 1, key, f"must be >= 1, found {getattr(self, key)}")
        require(2 <= self.kid_subset_size <= self.n, "kid_subset_size",
                f"must lie in [2, n = {self.n}], found {self.kid_subset_size}")
        require(self.interp_steps >= 3, "interp_steps", f"must be >= 3, found {self.interp_steps}")
        require(0 <= self.monotone_tol < 1, "monotone_tol", f"must lie in [0, 1), found {self.monotone_tol}")

DIFFUSION_SCHEDULES = ("cosine", "linear")  # advgen.generative.diffusion.SCHEDULES
DIFFUSION_SAMPLERS = ("ddim", "ddpm")  # advgen.generative.diffusion.SAMPLERS
DIFFUSION_SPACES = ("latent", "pixel")
LATENT_SIDES = (7, 14)  # advgen.generative.autoencoder.SIDES: one or two stride-2 stages from 28x28


@dataclass
class AutoencoderConfig:
    """The ``autoencoder`` stage: latent diffusion's encoder and decoder (C17)."""

    latent: list[int]  # (channels, height, width) of the latent
    width: int  # channels of the first convolution (doubled per stride-2 stage)
    batch_size: int
    lr: float
    kl_weight: float  # LDM's KL-regularised autoencoder: weight of KL(q(z|x) || N(0, I)) per latent number
    epochs: int = sized()
    n_train: int = sized()  # 0 = all
    n_recon: int = sized()  # test images reconstructed for the FID ceiling (= evaluate_generative's n)

    def validate(self) -> None:
        require(len(self.latent) == 3 and all(isinstance(v, int) and v >= 1 for v in self.latent), "latent",
                f"must be three positive integers [channels, height, width], found {self.latent}")
        require(self.latent[1] == self.latent[2] and self.latent[1] in LATENT_SIDES, "latent",
                f"the autoencoder maps 28x28 images to a square latent of side {list(LATENT_SIDES)} "
                f"(one or two stride-2 stages), found {self.latent}")
        for key in ("width", "batch_size", "epochs", "n_recon"):
            require(getattr(self, key) >= 1, key, f"must be >= 1, found {getattr(self, key)}")
        require(self.n_train >= 0, "n_train", f"must be >= 0, found {self.n_train}")
        require(self.lr > 0, "lr", f"must be > 0, found {self.lr}")
        require(self.kl_weight >= 0, "kl_weight", f"must be >= 0, found {self.kl_weight}")


@dataclass
class SamplerParams:
    """One sampler: ``ddpm`` (ancestral, every one of the T steps) or ``ddim`` with steps and eta."""

    sampler: str
    steps: int
    eta: float = 0.0

    def validate(self) -> None:
        require(self.sampler in DIFFUSION_SAMPLERS, "sampler",
                f"must be one of {list(DIFFUSION_SAMPLERS)}, found {self.sampler!r}")
        require(self.steps >= 1, "steps", f"must be >= 1, found {self.steps}")
        require(0 <= self.eta <= 1, "eta", f"must lie in [0, 1], found {self.eta}")

    @property
    def name(self) -> str:
        return f"ddpm{self.steps}" if self.sampler == "ddpm" else f"ddim{self.steps}_eta{self.eta:g}"


@dataclass
class DiffusionSpec:
    """One entry of ``diffusion.configs``: a denoiser, its space and its noise schedule."""

    schedule: str  # linear | cosine
    space: str = "pixel"  # pixel | latent (the autoencoder stage's latents)
    conditional: bool = False  # a class embedding with label dropout (classifier-free guidance)
    base: int = 16  # U-Net width of the first level
    mults: list[int] = field(default_factory=lambda: [1, 2, 2])  # width multipliers, one per resolution
    sweep: bool = False  # C16: also every sampler of diffusion.sweep at n_sweep
    guidance: bool = False  # C18: also every scale of diffusion.guidance_scales at n_guidance
    snapshot: bool = False  # C15: also the EMA weights at snapshot_iters, sampled at n_sample
    epoch_factor: int = 1  # trains at most epoch_factor x the profile's epochs (a latent epoch is cheap)

    def validate(self) -> None:
        require(self.epoch_factor >= 1, "epoch_factor", f"must be >= 1, found {self.epoch_factor}")
        require(self.schedule in DIFFUSION_SCHEDULES, "schedule",
                f"must be one of {list(DIFFUSION_SCHEDULES)}, found {self.schedule!r}")
        require(self.space in DIFFUSION_SPACES, "space", f"must be one of {list(DIFFUSION_SPACES)}, found {self.space!r}")
        require(self.base >= 1, "base", f"must be >= 1, found {self.base}")
        require(len(self.mults) >= 1 and all(m >= 1 for m in self.mults), "mults",
                f"must be positive multipliers, found {self.mults}")
        require(not self.guidance or self.conditional, "guidance", "needs conditional: true (a class embedding)")

    @property
    def num_classes(self) -> int:
        return 10 if self.conditional else 0


@dataclass
class DiffusionConfig:
    """The ``diffusion`` stage: one denoiser per entry of ``configs`` (a DVC foreach), trained
    and sampled with every sampler its flags ask for."""

    configs: dict
    batch_size: int
    lr: float
    warmup: int  # linear learning-rate warm-up over this many steps
    feature_model: str = model_field()  # the FID curve's feature network (as evaluate_generative)
    n_boot_curve: int  # bootstrap resamples of each FID point's interval
    converge_window: int  # stop once this many last FID points agree within their intervals
    ema_decay: float
    p_uncond: float  # classifier-free guidance: probability of dropping the label in training
    log_every: int
    grid: int
    strip_seeds: int  # rows of the denoising-trajectory strip
    strip_frames: int  # x_T ... x_0 frames per row
    guidance_scales: list  # C18
    T: int = sized()  # diffusion steps
    main_sampler: dict = sized()  # every config's unconditional set at n_sample
    sweep: list = sized()  # C16: sampler dicts
    epochs: int = sized()  # the budget: at most this many epochs
    converge: bool = sized()  # stop early once the FID curve has flattened
    n_fid: int = sized()  # samples per FID point (one point per epoch, fixed noise and labels)
    curve_steps: int = sized()  # DDIM steps (eta 0) of the FID curve's samples
    n_train: int = sized()  # 0 = all
    n_sample: int = sized()  # the main set (default: evaluate_generative's n, so it compares with the GANs)
    n_sweep: int = sized()  # per sampler of the sweep
    n_guidance: int = sized()  # per guidance scale
    snapshot_iters: int = sized()  # C15: the EMA weights at this iteration (equal training wall time)
    nproc: int = 1  # > 1 runs under torchrun (gloo on CPU, nccl on GPU)

    def validate(self) -> None:
        require(len(self.configs) >= 1, "configs", "must name at least one diffusion config")
        require(self.T >= 1, "T", f"must be >= 1, found {self.T}")
        for key in ("batch_size", "log_every", "grid", "strip_seeds", "strip_frames", "epochs", "n_sample",
                    "n_sweep", "n_guidance", "nproc", "n_boot_curve", "curve_steps"):
            require(getattr(self, key) >= 1, key, f"must be >= 1, found {getattr(self, key)}")
        require(self.n_train >= 0, "n_train", f"must be >= 0, found {self.n_train}")
        require(self.snapshot_iters >= 0, "snapshot_iters", f"must be >= 0, found {self.snapshot_iters}")
        require(self.warmup >= 0, "warmup", f"must be >= 0, found {self.warmup}")
        require(self.n_fid >= 10, "n_fid", f"must be >= 10, found {self.n_fid}")
        require(self.converge_window >= 2, "converge_window", f"must be >= 2, found {self.converge_window}")
        require(self.curve_steps <= self.T, "curve_steps", f"must be <= T = {self.T}, found {self.curve_steps}")
        require(self.lr > 0, "lr", f"must be > 0, found {self.lr}")
        require(0 <= self.ema_decay < 1, "ema_decay", f"must lie in [0, 1), found {self.ema_decay}")
        require(0 <= self.p_uncond < 1, "p_uncond", f"must lie in [0, 1), found {self.p_uncond}")
        require(len(self.guidance_scales) >= 1 and all(s >= 0 for s in self.guidance_scales), "guidance_scales",
                f"must be scales >= 0, found {self.guidance_scales}")
        require(len(set(self.guidance_scales)) == len(self.guidance_scales), "guidance_scales",
                f"names a scale twice: {self.guidance_scales}")
        for i, item in enumerate([self.main_sampler, *self.sweep]):
            where = "main_sampler" if i == 0 else f"sweep[{i - 1}]"
            s = from_dict(SamplerParams, item or {}, f"diffusion.{where}")
            require(s.steps <= self.T, where, f"steps must be <= T = {self.T}, found {s.steps}")
            require(s.sampler != "ddpm" or s.steps == self.T, where,
                    f"the ancestral ddpm sampler takes all T = {self.T} steps, found steps = {s.steps}")
        for name in self.configs:
            self.spec(name)

    def spec(self, name: str) -> DiffusionSpec:
        """The validated entry ``diffusion.configs.<name>``."""
        if name not in self.configs:
            raise ConfigError(f"params.yaml: diffusion config {name!r} is not in diffusion.configs {sorted(self.configs)}")
        return from_dict(DiffusionSpec, self.configs[name] or {}, f"diffusion.configs.{name}")

    def sampler(self, item: dict) -> SamplerParams:
        return from_dict(SamplerParams, item, "diffusion.sampler")


SECTIONS: dict[str, type] = {"gan": GANConfig, "autoencoder": AutoencoderConfig, "diffusion": DiffusionConfig,
                             "evaluate_generative": EvaluateGenerativeConfig}
#: section -> its field whose entries ``spec(name)`` validates one by one
ENTRIES = {"gan": "configs"}


def check_generative(gan: GANConfig, ev: EvaluateGenerativeConfig, diff: DiffusionConfig,
                     ae: AutoencoderConfig) -> None:
    """Every scored model is a GAN or diffusion config; the diffusion sets and the autoencoder's
    reconstructions are drawn at evaluate_generative's N, so their scores compare with the GANs'."""
    unknown = [m for m in ev.models if m not in gan.configs]
    if unknown:
        raise ConfigError(f"params.yaml: 'evaluate_generative.models' names {unknown}, which are not generative "
                          f"models; expected some of gan.configs {sorted(gan.configs)}")
    unknown = [m for m in ev.diffusion if m not in diff.configs]
    if unknown:
        raise ConfigError(f"params.yaml: 'evaluate_generative.diffusion' names {unknown}, which are not diffusion "
                          f"configs; expected some of diffusion.configs {sorted(diff.configs)}")
    both = sorted(set(ev.models) & set(ev.diffusion))
    if both:
        raise ConfigError(f"params.yaml: {both} are named both as GANs and as diffusion configs; names must be unique")
    for key, n in (("diffusion.n_sample", diff.n_sample), ("autoencoder.n_recon", ae.n_recon),
                   ("diffusion.n_sweep", diff.n_sweep), ("diffusion.n_guidance", diff.n_guidance)):
        if n > ev.n:
            raise ConfigError(f"params.yaml: the profile's '{key}' = {n} exceeds 'evaluate_generative.n' = {ev.n}, "
                              "the real images its sets are scored against")


def check(cfgs: dict[str, Any]) -> None:
    check_generative(cfgs["gan"], cfgs["evaluate_generative"], cfgs["diffusion"], cfgs["autoencoder"])
