"""DCGAN generator and discriminator for 28x28 images, and the generator file format.

Generators map codes z (B, z_dim) to images (B, C, 28, 28) in [0, 1], the classifiers' input
convention, so the pipeline's own classifier can label their samples. A generator is saved as
``generator.safetensors`` plus ``generator.json`` (architecture, kwargs, provenance, weights
sha256); :func:`load_generator` rebuilds it without unpickling, like :func:`advgen.models.load_model`.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..utils import dumps

FORMAT = "advgen-generator/1"


class DCGANGenerator(nn.Module):
    """Radford et al. 2016, sized for 28x28: z -> dense 7x7 map -> two stride-2 transposed
    convolutions (BatchNorm + ReLU between) -> sigmoid. (B, z_dim) -> (B, channels, 28, 28)."""

    def __init__(self, z_dim: int = 100, channels: int = 1, width: int = 64):
        super().__init__()
        self.z_dim, self.channels = z_dim, channels
        self.project = nn.Sequential(nn.Linear(z_dim, 2 * width * 7 * 7, bias=False),
                                     nn.BatchNorm1d(2 * width * 7 * 7), nn.ReLU())
        self.body = nn.Sequential(
            nn.Unflatten(1, (2 * width, 7, 7)),
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),  # 14x14
            nn.ConvTranspose2d(width, channels, 4, 2, 1), nn.Sigmoid())  # 28x28

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # (B, z_dim) -> (B, C, 28, 28)
        return self.body(self.project(z))


class DCGANDiscriminator(nn.Module):
    """Two stride-2 convolutions with LeakyReLU(0.2) and a linear logit. No BatchNorm, so the
    same network serves the JS-type losses and WGAN-GP (whose per-sample gradient penalty
    BatchNorm would break, Gulrajani et al. 2017). (B, C, 28, 28) -> (B,) logits."""

    def __init__(self, channels: int = 1, width: int = 64):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 4, 2, 1), nn.LeakyReLU(0.2),  # 14x14
            nn.Conv2d(width, 2 * width, 4, 2, 1), nn.LeakyReLU(0.2),  # 7x7
            nn.Flatten(), nn.Linear(2 * width * 7 * 7, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, 28, 28) -> (B,)
        return self.net(x).squeeze(1)


def init_dcgan(model: nn.Module, generator: torch.Generator) -> nn.Module:
    """DCGAN initialisation from an explicit generator: conv and linear weights N(0, 0.02),
    BatchNorm weights N(1, 0.02), biases 0."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02, generator=generator)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.normal_(m.weight, 1.0, 0.02, generator=generator)
            nn.init.zeros_(m.bias)
    return model


def build_pair(z_dim: int, channels: int, width: int, generator: torch.Generator) -> tuple[nn.Module, nn.Module]:
    """A freshly initialised (G, D) pair; G's weights are drawn first, then D's."""
    if z_dim < 1:
        raise ValueError(f"z_dim must be >= 1, found {z_dim}")
    g = init_dcgan(DCGANGenerator(z_dim, channels, width), generator)
    d = init_dcgan(DCGANDiscriminator(channels, width), generator)
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
    out_dir = Path(out_dir)
    weights = out_dir / "generator.safetensors"
    save_file({k: v.detach().cpu().contiguous() for k, v in g.state_dict().items()}, str(weights))
    meta = {"format": FORMAT, "arch": "dcgan", **sidecar,
            "weights_sha256": hashlib.sha256(weights.read_bytes()).hexdigest()}
    (out_dir / "generator.json").write_text(dumps(meta))


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a generator saved by the ``gan`` stage, in eval mode; ``g.sidecar`` holds its JSON.

    Raises FileNotFoundError or ValueError naming the file when it is missing, was not produced
    by ``gan`` or its weights do not match the recorded sha256.
    """
    folder = Path(path)
    meta_path, weights = folder / "generator.json", folder / "generator.safetensors"
    for p in (meta_path, weights):
        if not p.is_file():
            raise FileNotFoundError(f"{p}: not found; generators are written by the gan stage")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{meta_path}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("produced_by") != "gan":
        raise ValueError(f"{meta_path}: expected format {FORMAT!r} produced by 'gan', found "
                         f"{(meta.get('format'), meta.get('produced_by')) if isinstance(meta, dict) else meta!r}")
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    if digest != meta.get("weights_sha256"):
        raise ValueError(f"{weights}: sha256 {digest} does not match the sidecar's {meta.get('weights_sha256')}")
    g = DCGANGenerator(**meta["arch_kwargs"])
    g.load_state_dict(load_file(str(weights)), strict=True)
    g.sidecar = meta  # type: ignore[attr-defined]
    return g.to(device).eval()


def code_norm(z_dim: int) -> float:
    """E||z|| for z ~ N(0, I_d), about sqrt(d): the radius codes concentrate on."""
    return math.sqrt(2) * math.exp(math.lgamma((z_dim + 1) / 2) - math.lgamma(z_dim / 2))
