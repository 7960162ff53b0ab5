"""DCGAN generator and discriminator for 28x28 images, and the generator file format.

Generators map codes z (B, z_dim) to images (B, C, 28, 28) in [0, 1], the classifiers' input
convention, so the pipeline's own classifier can label their samples. A generator is saved as
``generator.safetensors`` plus ``generator.json`` (architecture, kwargs, provenance, weights
sha256); :func:`load_generator` rebuilds it without unpickling, like :func:`advgen.models.load_model`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from ..sidecar import read_sidecar, save_weights

FORMAT = "advgen-generator/1"


NORMS = ("batch", "none", "spectral")  # the discriminator's normalisation


class DCGANGenerator(nn.Module):
    """Radford et al. 2016, sized for 28x28: z -> dense 7x7 map -> two stride-2 transposed
    convolutions (BatchNorm + ReLU after each) -> a stride-1 3x3 convolution -> sigmoid.
    (B, z_dim) -> (B, channels, 28, 28).

    The last layer is a stride-1 convolution rather than a transposed one straight to pixels:
    a stride-2 transposed convolution's kernel overlaps unevenly and paints checkerboards into
    the output (Odena et al. 2016, "Deconvolution and checkerboard artifacts"); a stride-1
    convolution after it smooths them out."""

    def __init__(self, z_dim: int = 100, channels: int = 1, width: int = 64):
        super().__init__()
        self.z_dim, self.channels = z_dim, channels
        self.project = nn.Sequential(nn.Linear(z_dim, 2 * width * 7 * 7, bias=False),
                                     nn.BatchNorm1d(2 * width * 7 * 7), nn.ReLU())
        half = max(width // 2, 1)
        self.body = nn.Sequential(
            nn.Unflatten(1, (2 * width, 7, 7)),
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),  # 14x14
            nn.ConvTranspose2d(width, half, 4, 2, 1, bias=False), nn.BatchNorm2d(half), nn.ReLU(),  # 28x28
            nn.Conv2d(half, channels, 3, 1, 1), nn.Sigmoid())

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # (B, z_dim) -> (B, C, 28, 28)
        return self.body(self.project(z))


class DCGANDiscriminator(nn.Module):
    """The PyTorch DCGAN example's discriminator, sized for 28x28: three stride-2 convolutions
    (28 -> 14 -> 7 -> 4) with LeakyReLU(0.2) and a linear logit. ``norm`` after the second and
    third convolution: ``batch`` (the example's; the JS losses), ``spectral`` (spectral
    normalisation of every layer, Miyato et al. 2018) or ``none`` (WGAN-GP: BatchNorm would
    break its per-sample gradient penalty, Gulrajani et al. 2017). (B, C, 28, 28) -> (B,) logits."""

    def __init__(self, channels: int = 1, width: int = 64, norm: str = "batch"):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"unknown discriminator norm {norm!r}; expected one of {list(NORMS)}")
        sn = nn.utils.parametrizations.spectral_norm if norm == "spectral" else (lambda m: m)
        bn = (lambda c: nn.BatchNorm2d(c)) if norm == "batch" else (lambda c: nn.Identity())
        self.net = nn.Sequential(
            sn(nn.Conv2d(channels, width, 4, 2, 1)), nn.LeakyReLU(0.2),  # 14x14
            sn(nn.Conv2d(width, 2 * width, 4, 2, 1, bias=norm != "batch")), bn(2 * width), nn.LeakyReLU(0.2),  # 7x7
            sn(nn.Conv2d(2 * width, 4 * width, 3, 2, 1, bias=norm != "batch")), bn(4 * width),
            nn.LeakyReLU(0.2),  # 4x4
            nn.Flatten(), sn(nn.Linear(4 * width * 4 * 4, 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, 28, 28) -> (B,)
        return self.net(x).squeeze(1)


def init_dcgan(model: nn.Module, generator: torch.Generator) -> nn.Module:
    """DCGAN initialisation from an explicit generator: conv and linear weights N(0, 0.02),
    BatchNorm weights N(1, 0.02), biases 0."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            weight = m.parametrizations.weight.original if hasattr(m, "parametrizations") else m.weight
            nn.init.normal_(weight, 0.0, 0.02, generator=generator)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.normal_(m.weight, 1.0, 0.02, generator=generator)
            nn.init.zeros_(m.bias)
    return model


def build_pair(z_dim: int, channels: int, width: int, generator: torch.Generator,
               norm: str = "batch") -> tuple[nn.Module, nn.Module]:
    """A freshly initialised (G, D) pair; G's weights are drawn first, then D's."""
    if z_dim < 1:
        raise ValueError(f"z_dim must be >= 1, found {z_dim}")
    g = init_dcgan(DCGANGenerator(z_dim, channels, width), generator)
    if norm == "spectral":  # spectral norm draws its power-iteration vectors from the global RNG: fork and seed it
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            d = init_dcgan(DCGANDiscriminator(channels, width, norm), generator)
    else:
        d = init_dcgan(DCGANDiscriminator(channels, width, norm), generator)
    return g, d


def sample_codes(n: int, z_dim: int, generator: torch.Generator) -> torch.Tensor:
    """n codes z ~ N(0, I), (n, z_dim), drawn on the CPU from ``generator``."""
    return torch.randn(n, z_dim, generator=generator)


@torch.no_grad()
def generate(g: nn.Module, z: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """G(z) in eval mode, batched, returned on the CPU: (N, z_dim) -> (N, C, 28, 28)."""
    was = g.training
    g.eval()
    device = next(g.parameters()).device
    out = torch.cat([g(z[i:i + batch_size].to(device)).float().cpu() for i in range(0, len(z), batch_size)])
    g.train(was)
    return out.contiguous()


def save_generator(g: nn.Module, out_dir: str | Path, sidecar: dict[str, Any]) -> None:
    """Write ``generator.safetensors`` and ``generator.json`` into ``out_dir`` (an existing folder).
    ``sidecar`` must hold ``arch_kwargs`` (z_dim, channels, width) and ``produced_by``."""
    save_weights(g.state_dict(), out_dir, "generator", {"format": FORMAT, "arch": "dcgan", **sidecar})


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a generator saved by the ``gan`` stage, in eval mode; ``g.sidecar`` holds its JSON.

    Raises FileNotFoundError or ValueError naming the file when it is missing, was not produced
    by ``gan`` or its weights do not match the recorded sha256.
    """
    meta = read_sidecar(path, "generator", fmt=FORMAT, producer="gan")
    g = DCGANGenerator(**meta["arch_kwargs"])
    g.load_state_dict(load_file(str(Path(path) / "generator.safetensors")), strict=True)
    g.sidecar = meta  # type: ignore[attr-defined]
    return g.to(device).eval()
