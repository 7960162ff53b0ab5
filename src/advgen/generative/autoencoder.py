"""The KL-regularised convolutional autoencoder of latent diffusion (C17; Rombach et al. 2022's
"KL-f" autoencoder, without the perceptual and adversarial losses a CPU budget cannot pay for).

28x28 images in [0, 1] -> a diagonal Gaussian posterior q(z|x) over latents (c, h, w) with
h = w = 28 / 2^k (k = 1 or 2 stride-2 convolutions: 14 or 7) -> back through transposed
convolutions and a sigmoid. Trained on the pixel MSE of a decoded posterior sample plus
``kl_weight`` x KL(q(z|x) || N(0, I)) per latent number: the KL keeps the latents' scale
bounded and the posterior noise makes the decoder tolerate small latent errors, which is what a
denoiser's samples have. The diffusion model sees the posterior mean, standardised per channel
(``shift``, ``scale``: each channel's training-set mean and standard deviation; LDM's scale
factor, per channel and centred).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..utils import quiet

SIDES = {14: 1, 7: 2}  # latent side -> stride-2 stages from 28x28


def check_latent_shape(shape: list[int] | tuple[int, ...], image_side: int = 28) -> tuple[int, int, int]:
    """(c, h, w) the autoencoder can produce from image_side x image_side images, else ValueError."""
    if len(shape) != 3 or any(int(v) != v or v < 1 for v in shape):
        raise ValueError(f"latent shape must be three positive integers (channels, height, width), found {list(shape)}")
    c, h, w = (int(v) for v in shape)
    if image_side != 28 or h != w or h not in SIDES:
        raise ValueError(f"latent shape {[c, h, w]}: the autoencoder maps 28x28 images to h = w in {sorted(SIDES)} "
                         f"(one or two stride-2 stages), found {h}x{w} from {image_side}x{image_side}")
    return c, h, w


class Autoencoder(nn.Module):
    """encode: (B, 1, 28, 28) -> (B, c, h, w); decode: (B, c, h, w) -> (B, 1, 28, 28) in [0, 1]."""

    def __init__(self, latent: tuple[int, int, int] = (4, 7, 7), width: int = 32, channels: int = 1):
        super().__init__()
        c, h, _ = check_latent_shape(latent)
        self.latent = (c, h, h)
        self.register_buffer("shift", torch.zeros(c))  # per-channel mean of the training latents
        self.register_buffer("scale", torch.ones(c))  # per-channel standard deviation
        enc: list[nn.Module] = [nn.Conv2d(channels, width, 3, padding=1), nn.SiLU()]
        dec: list[nn.Module] = []
        w = width
        for i in range(SIDES[h]):
            enc += [nn.Conv2d(w, 2 * w, 4, 2, 1), nn.SiLU()]
            dec = [nn.ConvTranspose2d(2 * w, w, 4, 2, 1), nn.SiLU()] + dec
            w *= 2
        enc += [nn.Conv2d(w, w, 3, padding=1), nn.SiLU(), nn.Conv2d(w, 2 * c, 1)]  # mean and log-variance
        dec = [nn.Conv2d(c, w, 3, padding=1), nn.SiLU(), nn.Conv2d(w, w, 3, padding=1), nn.SiLU()] + dec
        dec += [nn.Conv2d(width, channels, 3, padding=1), nn.Sigmoid()]
        self.encoder, self.decoder = nn.Sequential(*enc), nn.Sequential(*dec)

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z|x): mean and log-variance (B, c, h, w) each, in raw (unstandardised) units."""
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def _per_channel(self, v: torch.Tensor) -> torch.Tensor:  # (c,) -> (1, c, 1, 1)
        return v.reshape(1, -1, 1, 1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, 28, 28) -> (B, c, h, w), standardised mean
        return (self.posterior(x)[0] - self._per_channel(self.shift)) / self._per_channel(self.scale)

    def decode(self, z: torch.Tensor) -> torch.Tensor:  # (B, c, h, w) standardised -> (B, 1, 28, 28)
        return self.decoder(z * self._per_channel(self.scale) + self._per_channel(self.shift))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # the posterior mean's reconstruction
        return self.decode(self.encode(x))


@dataclass
class AEFit:
    log: list[dict]
    epoch_seconds: list[float]


def kl_to_standard_normal(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, 1)) per latent number, averaged: 0.5 (m^2 + v - 1 - log v)."""
    return 0.5 * (mean.square() + logvar.exp() - 1 - logvar).mean()


def ae_loss(ae: Autoencoder, xb: torch.Tensor, kl_weight: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(total loss, pixel MSE) of a batch xb (B, 1, 28, 28): the decoded posterior sample's MSE
    plus ``kl_weight`` x the mean KL per latent number; the sample's noise comes from ``generator``."""
    mean, logvar = ae.posterior(xb)
    noise = torch.randn(mean.shape, generator=generator).to(mean.device)
    z = mean + (0.5 * logvar).exp() * noise
    mse = F.mse_loss(ae.decoder(z), xb)
    return mse + kl_weight * kl_to_standard_normal(mean, logvar), mse


def fit_autoencoder(ae: Autoencoder, x: torch.Tensor, epochs: int, batch_size: int, lr: float,
                    generator: torch.Generator, kl_weight: float = 0.0) -> AEFit:
    """Train on images x (N, 1, 28, 28) in [0, 1] (on the model's device) with :func:`ae_loss`,
    Adam; then set ``ae.shift`` and ``ae.scale`` to each latent channel's mean and standard
    deviation over the training set (posterior means)."""
    import time

    opt = torch.optim.Adam(ae.parameters(), lr=lr)
    ae.shift.fill_(0.0)
    ae.scale.fill_(1.0)
    n, log, secs = len(x), [], []
    bar = tqdm(total=epochs * math.ceil(n / batch_size), desc="autoencoder", disable=quiet())
    for epoch in range(1, epochs + 1):
        start, total = time.perf_counter(), torch.zeros((), device=x.device)
        order = torch.randperm(n, generator=generator).to(x.device)
        for s in range(0, n, batch_size):
            xb = x[order[s:s + batch_size]]
            loss, mse = ae_loss(ae, xb, kl_weight, generator)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += mse.detach() * len(xb)
            bar.update(1)
        secs.append(time.perf_counter() - start)
        log.append({"epoch": epoch, "train_mse": float(total) / n})
    bar.close()
    ae.eval()
    with torch.no_grad():
        z = torch.cat([ae.posterior(x[i:i + 1000])[0] for i in range(0, n, 1000)])  # (N, c, h, w)
        ae.shift.copy_(z.mean(dim=(0, 2, 3)))
        ae.scale.copy_(z.std(dim=(0, 2, 3)).clamp_min(1e-6))  # a dead channel must not divide by zero
    return AEFit(log, secs)


@torch.no_grad()
def reconstruction_scores(ae: Autoencoder, x: torch.Tensor, batch_size: int = 1000) -> tuple[torch.Tensor, dict]:
    """Reconstructions (N, 1, 28, 28) of x in [0, 1], and their MSE and PSNR (dB, peak 1; PSNR of
    the mean MSE)."""
    ae.eval()
    rec = torch.cat([ae(x[i:i + batch_size]).cpu() for i in range(0, len(x), batch_size)])
    mse = float(F.mse_loss(rec, x.cpu()))
    return rec, {"mse": mse, "psnr_db": 10 * math.log10(1 / mse) if mse > 0 else float("inf")}
