"""Seeded, deterministic classifier training, optionally data-parallel under torchrun."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .models import Dropout, is_conv, to_layout
from .utils import quiet


@dataclass
class FitResult:
    history: list[dict[str, float]]  # one row per epoch
    metrics: dict


def rank_world() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside torch.distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def train_one_epoch(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                    batch_size: int, generator: torch.Generator, device: torch.device,
                    sched: torch.optim.lr_scheduler.LRScheduler | None = None) -> tuple[float, float]:
    """One pass over ``x`` (N, C, H, W) float in [0, 1] and ``y`` (N,) in a seeded order.

    Under torchrun every rank draws the same permutation and takes its own stride of each
    global batch of ``batch_size``. Returns (mean loss, accuracy) on this rank's share.
    """
    rank, world = rank_world()
    model.train()
    layout = torch.channels_last if is_conv(model) else torch.contiguous_format
    order = torch.randperm(len(y), generator=generator)
    loss_sum, correct, seen = torch.zeros((), device=device), torch.zeros((), device=device), 0
    for start in tqdm(range(0, len(y), batch_size), leave=False, disable=quiet(), desc="batches"):
        idx = order[start:start + batch_size][rank::world]
        xb, yb = x[idx].to(device, non_blocking=True), y[idx].to(device, non_blocking=True)
        logits = model(xb.contiguous(memory_format=layout))
        loss = F.cross_entropy(logits, yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        # Accumulate on-device: a .item() per batch would force a sync on GPU.
        loss_sum += loss.detach() * len(yb)
        correct += (logits.detach().argmax(1) == yb).sum()
        seen += len(yb)
    return float(loss_sum) / max(seen, 1), float(correct) / max(seen, 1)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int,
             device: torch.device, batch_size: int = 1000) -> dict:
    """Accuracy, per-class accuracy and mean cross-entropy of ``model`` on (x, y)."""
    model.eval()
    layout = torch.channels_last if is_conv(model) else torch.contiguous_format
    preds, loss_sum = [], 0.0
    for start in range(0, len(y), batch_size):
        xb, yb = x[start:start + batch_size].to(device), y[start:start + batch_size].to(device)
        logits = model(xb.contiguous(memory_format=layout))
        loss_sum += float(F.cross_entropy(logits, yb, reduction="sum"))
        preds.append(logits.argmax(1).cpu())
    pred = torch.cat(preds)
    hit = (pred == y).float()
    per_class = [float(hit[y == k].mean()) if (y == k).any() else None for k in range(num_classes)]
    return {"accuracy": float(hit.mean()), "loss": loss_sum / len(y), "per_class_accuracy": per_class}


def fit(model: nn.Module, train: tuple[torch.Tensor, torch.Tensor], test: tuple[torch.Tensor, torch.Tensor],
        *, epochs: int, batch_size: int, lr: float, weight_decay: float, num_classes: int,
        generator: torch.Generator, device: torch.device) -> FitResult:
    """Train ``model`` with AdamW and a cosine schedule; evaluate on ``test`` each epoch.

    ``train`` and ``test`` are (images float (N, C, H, W) in [0, 1], labels (N,)).
    Deterministic given ``generator``'s state: it orders the batches and seeds the dropout
    masks (one stream per rank); nothing reads torch's global RNG. Convolutional models train
    in ``channels_last`` layout (faster on CPU). Under torchrun the model is wrapped in DDP;
    only rank 0 evaluates, other ranks record NaN for test figures.
    """
    rank, world = rank_world()
    to_layout(model.to(device))
    dropout_seed = int(torch.randint(0, 2**62, (1,), generator=generator)) + rank
    for m in model.modules():
        if isinstance(m, Dropout):
            m.generator = torch.Generator().manual_seed(dropout_seed)
    net: nn.Module = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    steps = epochs * -(-len(train[1]) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1), pct_start=0.15)
    history = []
    for epoch in tqdm(range(1, epochs + 1), desc="epochs", disable=quiet() or rank > 0):
        tr_loss, tr_acc = train_one_epoch(net, opt, *train, batch_size, generator, device, sched)
        row = {"epoch": epoch, "train_loss": tr_loss, "train_acc": tr_acc,
               "test_loss": float("nan"), "test_acc": float("nan")}
        if rank == 0:
            ev = evaluate(model, *test, num_classes, device)
            row.update(test_loss=ev["loss"], test_acc=ev["accuracy"])
        history.append(row)
    metrics = evaluate(model, *test, num_classes, device) if rank == 0 else {}
    return FitResult(history=history, metrics=metrics)
