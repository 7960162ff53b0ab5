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
            # Hidden axes draw nothing either way; invisible ones also skip the tick layout that
            # title placement computes for every axes (a third of the figure's time).
            ax.xaxis.set_visible(False)
            ax.yaxis.set_visible(False)
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


def line_plot(series: dict[str, tuple[list[float], list[float]]], *, title: str, xlabel: str, ylabel: str,
              ylim: tuple[float, float] | None = (0.0, 1.0), figsize: tuple[float, float] = (6.0, 4.0),
              bands: dict[str, tuple[list[float], list[float]]] | None = None, xscale: str = "linear",
              top_axis: tuple[str, float] | None = None) -> bytes:
    """A PNG of one line per ``label -> (x, y)``, in the dict's order (deterministic bytes);
    ``bands`` shades ``label -> (low, high)`` around that line (an interval); ``xscale`` is
    matplotlib's (``"log"`` for query budgets); ``top_axis`` = (label, factor) adds a second x axis
    on top showing x * factor (queries as hours at a rate limit)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=figsize)
    for label, (x, y) in series.items():
        line, = ax.plot(x, y, marker="o", markersize=3, linewidth=1.5, label=label)
        if bands and label in bands:
            ax.fill_between(x, *bands[label], color=line.get_color(), alpha=0.15, linewidth=0)
    if xscale != "linear":  # leaves the other figures' bytes as they were
        ax.set_xscale(xscale)
    if top_axis is not None:
        label, factor = top_axis
        ax.secondary_xaxis("top", functions=(lambda v: v * factor, lambda v: v / factor)).set_xlabel(label)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.grid(True, alpha=0.3)
    if series:
        ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def robustness_plot(model: str, table: dict[str, list[float]]) -> bytes:
    """Robust accuracy of ``model`` against L-inf eps: one line per column of ``linf.tsv`` but ``eps``."""
    eps = table["eps"]
    return line_plot({col: (eps, ys) for col, ys in table.items() if col != "eps"},
                     title=f"Robust accuracy of {model} (L-inf)", xlabel="L-inf eps", ylabel="accuracy")


def worst_case_plot(tables: dict[str, dict[str, list[float]]]) -> bytes:
    """The worst case (cascade) against L-inf eps, one line per model (``model -> linf.tsv`` columns)."""
    return line_plot({m: (t["eps"], t["worst_case"]) for m, t in tables.items() if "worst_case" in t},
                     title="Worst-case robust accuracy (cascade), L-inf", xlabel="L-inf eps", ylabel="accuracy")


def training_plot(curves: dict[str, dict[str, list[float]]]) -> bytes:
    """Test accuracy against epoch, one line per model (``model -> curve.tsv`` columns)."""
    return line_plot({m: (c["epoch"], c["test_acc"]) for m, c in curves.items() if "epoch" in c and "test_acc" in c},
                     title="Training: test accuracy per epoch", xlabel="epoch", ylabel="test accuracy", ylim=None)


def grid_png(images: torch.Tensor, nrow: int, padding: int = 2, pad_value: float = 1.0) -> bytes:
    """A PNG of images (B, C, H, W) in [0, 1] laid out ``nrow`` per row: the bytes torchvision's
    ``save_image(make_grid(images, nrow, padding, pad_value=pad_value))`` writes (grey images
    become RGB, values rounded as there). Written here because importing torchvision costs a
    stage 1.7 s (it loads torch's compiler stack), over the smoke profile's budget; a test checks
    the bytes against torchvision's."""
    from PIL import Image

    x = images.detach().float().cpu()
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    b, c, h, w = x.shape
    cols = min(nrow, b)
    rows = -(-b // cols)
    grid = torch.full((c, (h + padding) * rows + padding, (w + padding) * cols + padding), float(pad_value))
    for k in range(b):
        y0, x0 = (k // cols) * (h + padding) + padding, (k % cols) * (w + padding) + padding
        grid[:, y0:y0 + h, x0:x0 + w] = x[k]
    arr = grid.mul(255).add_(0.5).clamp_(0, 255).permute(1, 2, 0).to(torch.uint8).numpy()
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()
