"""The convolutional autoencoder of latent diffusion (C17, Rombach et al. 2022, without the
perceptual and adversarial losses a CPU budget cannot pay for).

28x28 images in [0, 1] -> a latent (c, h, w) with h = w = 28 / 2^k (k = 1 or 2 stride-2
convolutions: 14 or 7) -> back through transposed convolutions and a sigmoid. Trained with the
pixel MSE. Latents are divided by their training-set standard deviation (``scale``, LDM's scale
factor) so the diffusion model sees roughly unit variance.
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
        self.register_buffer("scale", torch.ones(()))  # std of the training latents
        enc: list[nn.Module] = [nn.Conv2d(channels, width, 3, padding=1), nn.SiLU()]
        dec: list[nn.Module] = []
        w = width
        for i in range(SIDES[h]):
            enc += [nn.Conv2d(w, 2 * w, 4, 2, 1), nn.SiLU()]
            dec = [nn.ConvTranspose2d(2 * w, w, 4, 2, 1), nn.SiLU()] + dec
            w *= 2
        enc += [nn.Conv2d(w, w, 3, padding=1), nn.SiLU(), nn.Conv2d(w, c, 1)]
        dec = [nn.Conv2d(c, w, 3, padding=1), nn.SiLU(), nn.Conv2d(w, w, 3, padding=1), nn.SiLU()] + dec
        dec += [nn.Conv2d(width, channels, 3, padding=1), nn.Sigmoid()]
        self.encoder, self.decoder = nn.Sequential(*enc), nn.Sequential(*dec)

    def encode(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, 28, 28) -> (B, c, h, w), unit-scaled
        return self.encoder(x) / self.scale

    def decode(self, z: torch.Tensor) -> torch.Tensor:  # (B, c, h, w) unit-scaled -> (B, 1, 28, 28)
        return self.decoder(z * self.scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


@dataclass
class AEFit:
    log: list[dict]
    epoch_seconds: list[float]


def fit_autoencoder(ae: Autoencoder, x: torch.Tensor, epochs: int, batch_size: int, lr: float,
                    generator: torch.Generator) -> AEFit:
    """Train on images x (N, 1, 28, 28) in [0, 1] (on the model's device) with the pixel MSE,
    Adam; then set ``ae.scale`` to the standard deviation of the training latents."""
    import time

    opt = torch.optim.Adam(ae.parameters(), lr=lr)
    ae.scale.fill_(1.0)
    n, log, secs = len(x), [], []
    bar = tqdm(total=epochs * math.ceil(n / batch_size), desc="autoencoder", disable=quiet())
    for epoch in range(1, epochs + 1):
        start, total = time.perf_counter(), torch.zeros((), device=x.device)
        order = torch.randperm(n, generator=generator).to(x.device)
        for s in range(0, n, batch_size):
            xb = x[order[s:s + batch_size]]
            loss = F.mse_loss(ae(xb), xb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach() * len(xb)
            bar.update(1)
        secs.append(time.perf_counter() - start)
        log.append({"epoch": epoch, "train_mse": float(total) / n})
    bar.close()
    ae.eval()
    with torch.no_grad():
        z = torch.cat([ae.encoder(x[i:i + 1000]) for i in range(0, n, 1000)])
        ae.scale.fill_(float(z.std()))
    return AEFit(log, secs)


@torch.no_grad()
def reconstruction_scores(ae: Autoencoder, x: torch.Tensor, batch_size: int = 1000) -> tuple[torch.Tensor, dict]:
    """Reconstructions (N, 1, 28, 28) of x in [0, 1], and their MSE and PSNR (dB, peak 1; PSNR of
    the mean MSE)."""
    ae.eval()
    rec = torch.cat([ae(x[i:i + batch_size]).cpu() for i in range(0, len(x), batch_size)])
    mse = float(F.mse_loss(rec, x.cpu()))
    return rec, {"mse": mse, "psnr_db": 10 * math.log10(1 / mse) if mse > 0 else float("inf")}
