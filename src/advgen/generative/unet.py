"""A small U-Net noise predictor eps_theta(x_t, t, y) for 28x28 images and 7x7 latents.

Ho et al. 2020's architecture, shrunk for a 2-core CPU: residual blocks (GroupNorm, SiLU,
3x3 convolutions) whose features are shifted by an embedding of the timestep (sinusoidal,
then an MLP) plus, for classifier-free guidance, a learned class embedding with one extra
"null" class (index ``num_classes``) standing for "no label". No attention: at 7x7 and below it
buys little and costs a CPU much. Each level halves the resolution (28 -> 14 -> 7); skip
connections are concatenated on the way up. ``mults=(1,)`` gives a single-resolution network
(the latent denoiser's 7x7 maps).

Shapes: x (B, C, H, W), t (B,) integer timesteps, y (B,) class indices in [0, num_classes]
-> (B, C, H, W).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Transformer-style sinusoidal embedding of integer timesteps t (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]  # (B, half)
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


def _norm(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, ch), ch)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, the embedding (through SiLU and a linear projection) added
    between; a 1x1 skip when widths differ."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int):
        super().__init__()
        self.norm1, self.conv1 = _norm(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2, self.conv2 = _norm(c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:  # (B, c_in, H, W), (B, E)
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(F.silu(emb))[:, :, None, None]  # SiLU first, as Ho et al. and diffusers do
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.skip(x)  # (B, c_out, H, W)


class UNet(nn.Module):
    """eps_theta(x_t, t, y): see the module docstring.

    Args:
        channels: image (or latent) channels C.
        base: width of the first level; level i has ``base * mults[i]`` channels.
        mults: width multipliers, one per resolution (len 3: 28, 14, 7).
        num_classes: classes of the conditioning label (0: unconditional, no class embedding).
        emb_dim: width of the time (and class) embedding.
    """

    def __init__(self, channels: int = 1, base: int = 32, mults: tuple[int, ...] = (1, 2, 2),
                 num_classes: int = 0, emb_dim: int = 128):
        super().__init__()
        self.channels, self.num_classes, self.emb_dim = channels, num_classes, emb_dim
        self.time_mlp = nn.Sequential(nn.Linear(emb_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.class_emb = nn.Embedding(num_classes + 1, emb_dim) if num_classes else None
        widths = [base * m for m in mults]
        self.stem = nn.Conv2d(channels, widths[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        c = widths[0]
        for i, w in enumerate(widths):
            self.down.append(ResBlock(c, w, emb_dim))
            c = w
            if i < len(widths) - 1:
                self.downsample.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
        self.mid = ResBlock(c, c, emb_dim)
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i, w in reversed(list(enumerate(widths))):
            self.up.append(ResBlock(c + w, w, emb_dim))
            c = w
            if i > 0:
                self.upsample.append(nn.ConvTranspose2d(c, c, 4, stride=2, padding=1))
        self.out = nn.Sequential(_norm(c), nn.SiLU(), nn.Conv2d(c, channels, 3, padding=1))

    def embed(self, t: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:  # -> (B, emb_dim)
        emb = self.time_mlp(timestep_embedding(t, self.emb_dim))
        if self.class_emb is not None:
            if y is None:  # no label given: the null class
                y = torch.full_like(t, self.num_classes)
            emb = emb + self.class_emb(y)
        return emb

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.embed(t, y)
        h = self.stem(x)
        skips = []
        for i, block in enumerate(self.down):
            h = block(h, emb)
            skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
        h = self.mid(h, emb)
        for i, block in enumerate(self.up):
            h = block(torch.cat([h, skips.pop()], 1), emb)
            if i < len(self.upsample):
                h = self.upsample[i](h)
        return self.out(h)  # (B, C, H, W)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
