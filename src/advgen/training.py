"""Seeded, deterministic classifier training, optionally data-parallel under torchrun."""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .data import dataset_dir, load_classes, load_split, manifest_sha256, subset, subset_index, to_float
from .models import Dropout, is_conv, to_layout
from .utils import quiet, resolve_device


@dataclass
class FitResult:
    history: list[dict[str, float]]  # one row per epoch
    metrics: dict
    grad_evals: int = 0  # per-example gradients: parameter updates plus any inner attack's input gradients


class BatchLoss:
    """The per-batch training loss: plain cross-entropy. Defenses subclass it.

    ``__call__(net, module, xb, yb)`` returns (loss, logits of the examples in ``yb``). ``net`` is
    what to train through (DDP-wrapped under torchrun), ``module`` the bare model (an inner
    attack runs on it, so that DDP sees one forward per backward). ``xb`` (B, C, H, W) comes in
    the model's memory layout. ``grad_evals`` counts per-example gradients (one per example
    and parameter update, plus every input gradient an inner attack takes).
    """

    def __init__(self) -> None:
        self.grad_evals = 0

    def __call__(self, net: nn.Module, module: nn.Module, xb: torch.Tensor,
                 yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = net(xb)
        self.grad_evals += len(yb)
        return F.cross_entropy(logits, yb), logits


def launch_torchrun(nproc: int) -> None:
    """Re-run the current script under torchrun with ``nproc`` workers (gloo on CPU, nccl on
    GPU), one thread share each; raise RuntimeError if it fails. The caller returns after it."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *sys.argv]
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // nproc))}
    code = subprocess.call(cmd, env=env)
    if code:
        raise RuntimeError(f"torchrun with {nproc} processes failed with exit code {code}")


def init_distributed(device_name: str) -> tuple[int, torch.device]:
    """Under torchrun: join the process group; returns (rank, this rank's device)."""
    device = resolve_device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), device


def setup(nproc: int, device_name: str) -> tuple[int, torch.device] | None:
    """What a training stage does first: with ``nproc > 1`` outside torchrun, relaunch itself under
    torchrun and return None (the caller then returns); else (rank, device)."""
    if nproc > 1 and "LOCAL_RANK" not in os.environ:
        launch_torchrun(nproc)
        return None
    return init_distributed(device_name) if "LOCAL_RANK" in os.environ else (0, resolve_device(device_name))


@dataclass
class TrainingData:
    train: tuple[torch.Tensor, torch.Tensor]  # (x (N, C, H, W) float in [0, 1], y (N,))
    test: tuple[torch.Tensor, torch.Tensor]
    num_classes: int
    manifest_sha256: str
    train_index: torch.Tensor  # (N,) positions of the training subset in the full split


def training_data(dataset: str, n_train: int, n_test: int, resolution: int | None,
                  generator: torch.Generator, data: str = "prepared") -> TrainingData:
    """The seeded train/test subsets (0 = all) of the prepared ``dataset`` (or of the poisoned
    copy ``data = "poisoned/<name>"``), as floats at ``resolution``."""
    prepared = dataset_dir(dataset, data)
    (xtr, ytr), (xte, yte) = load_split(prepared, "train"), load_split(prepared, "test")
    index = subset_index(len(ytr), n_train, generator)
    xtr, ytr = xtr[index], ytr[index]
    xte, yte = subset(xte, yte, n_test, generator)
    return TrainingData((to_float(xtr, resolution), ytr), (to_float(xte, resolution), yte),
                        len(load_classes(prepared)), manifest_sha256(prepared), index)


def rank_world() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside torch.distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def train_one_epoch(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                    batch_size: int, generator: torch.Generator, device: torch.device,
                    sched: torch.optim.lr_scheduler.LRScheduler | None = None,
                    loss_fn: BatchLoss | None = None) -> tuple[float, float]:
    """One pass over ``x`` (N, C, H, W) float in [0, 1] and ``y`` (N,) in a seeded order.

    Under torchrun every rank draws the same permutation and takes its own stride of each
    global batch of ``batch_size``. ``loss_fn`` (default: cross-entropy) maps a batch to its
    loss. Returns (mean loss, accuracy of the logits ``loss_fn`` returns) on this rank's share.
    """
    rank, world = rank_world()
    loss_fn = loss_fn or BatchLoss()
    module = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    model.train()
    layout = torch.channels_last if is_conv(model) else torch.contiguous_format
    order = torch.randperm(len(y), generator=generator)
    loss_sum, correct, seen = torch.zeros((), device=device), torch.zeros((), device=device), 0
    for start in tqdm(range(0, len(y), batch_size), leave=False, disable=quiet(), desc="batches"):
        idx = order[start:start + batch_size][rank::world]
        xb, yb = x[idx].to(device, non_blocking=True), y[idx].to(device, non_blocking=True)
        loss, logits = loss_fn(model, module, xb.contiguous(memory_format=layout), yb)
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


EpochHook = Callable[[int, nn.Module], tuple[dict[str, Any], bool]]


def fit(model: nn.Module, train: tuple[torch.Tensor, torch.Tensor], test: tuple[torch.Tensor, torch.Tensor],
        *, epochs: int, batch_size: int, lr: float, weight_decay: float, num_classes: int,
        generator: torch.Generator, device: torch.device, loss_fn: BatchLoss | None = None,
        after_epoch: EpochHook | None = None) -> FitResult:
    """Train ``model`` with AdamW and a one-cycle schedule; evaluate on ``test`` each epoch.

    ``train`` and ``test`` are (images float (N, C, H, W) in [0, 1], labels (N,)).
    Deterministic given ``generator``'s state: it orders the batches and seeds the dropout
    masks (one stream per rank); nothing reads torch's global RNG. Convolutional models train
    in ``channels_last`` layout (faster on CPU). Under torchrun the model is wrapped in DDP;
    only rank 0 evaluates, other ranks record NaN for test figures.

    ``loss_fn`` is the per-batch loss (default: cross-entropy; the defenses pass theirs).
    ``after_epoch(epoch, model)``, called on every rank after each epoch, returns extra columns
    for that epoch's history row and whether to stop training early.
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
    loss_fn = loss_fn or BatchLoss()
    for epoch in tqdm(range(1, epochs + 1), desc="epochs", disable=quiet() or rank > 0):
        tr_loss, tr_acc = train_one_epoch(net, opt, *train, batch_size, generator, device, sched, loss_fn)
        row = {"epoch": epoch, "train_loss": tr_loss, "train_acc": tr_acc,
               "test_loss": float("nan"), "test_acc": float("nan")}
        if rank == 0:
            ev = evaluate(model, *test, num_classes, device)
            row.update(test_loss=ev["loss"], test_acc=ev["accuracy"])
        stop = False
        if after_epoch is not None:
            extra, stop = after_epoch(epoch, model)
            row.update(extra)
            if world > 1:  # ranks may judge differently (their BatchNorm buffers differ): stop together
                flag = torch.tensor([int(stop)], device=device)
                dist.all_reduce(flag, op=dist.ReduceOp.MAX)
                stop = bool(flag.item())
        history.append(row)
        if stop:
            break
    metrics = evaluate(model, *test, num_classes, device) if rank == 0 else {}
    return FitResult(history=history, metrics=metrics, grad_evals=loss_fn.grad_evals * world)
