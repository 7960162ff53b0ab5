"""PNG figures written by stages (deterministic bytes: no timestamps in the metadata)."""
from __future__ import annotations

import io
from pathlib import Path

import torch

from .utils import atomic_write_bytes


def image_rows(rows: list[tuple[str, torch.Tensor, list[str] | None]], path: str | Path, scale: float = 1.2) -> None:
    """Save a grid: one row per (label, images (n, C, H, W) in [0, 1] or any range, captions).

    Rows whose images leave [0, 1] (perturbations) are shown centred on grey and amplified
    to fill the range.
    """
    import matplotlib  # imported here: it costs half a second, and only figures need it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(len(imgs) for _, imgs, _ in rows)
    fig, axes = plt.subplots(len(rows), n, figsize=(scale * n, scale * 1.25 * len(rows)), squeeze=False)
    for r, (label, imgs, captions) in enumerate(rows):
        imgs = imgs.detach().cpu().float()
        if float(imgs.min()) < 0 or float(imgs.max()) > 1:
            amp = float(imgs.abs().max()) or 1.0
            imgs = 0.5 + 0.5 * imgs / amp
        for c in range(n):
            ax = axes[r][c]
            ax.axis("off")
            if c >= len(imgs):
                continue
            img = imgs[c].permute(1, 2, 0).squeeze(-1).numpy()
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
            if captions:
                ax.set_title(captions[c], fontsize=6)
        axes[r][0].text(-0.1, 0.5, label, transform=axes[r][0].transAxes, ha="right", va="center", fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
