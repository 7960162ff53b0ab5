"""Attack throughput and Square Attack success: advgen against torchattacks 3.5.1, same model,
same images, same device.

1. PGD-20 (L-inf): images/s of each and the ratio advgen / torchattacks (target >= 1.0), every
   step run by both (advgen's early stop off where PGD has it).
2. Square Attack (L-inf, eps 0.1 as in the attack stage, 5000-query budget) on --n test images
   that the model classifies correctly at the start: queries/s of each and their ratio, and the
   success rate (fraction of those images misclassified) within 10/100/180/1000/5000 queries.
   180 is the lecture's one-hour window at 3 queries a minute. advgen reports the query of first
   success per example (``queries_to_success``); torchattacks' per-example query counts come from
   its ``attack_single_run`` (what ``Square.perturb`` calls), under the seed ``perturb`` would set.
   advgen redraws proposals that are no-ops after clipping (the authors' code does too);
   torchattacks does not, so it spends part of its queries on unchanged images.

The model is models/cnn (the train stage's, via advgen.models.load_model) when it exists, else
a cnn trained here for --epochs epochs on the first --train-n Fashion-MNIST training images (without
data/prepared/fashion-mnist: an untrained cnn on random images, for throughput only).

Usage: python benchmarks/bench_attacks.py [--n 100] [--queries 5000] [--eps 0.1] [--batch 256]
       [--reps 3] [--epochs 2] [--train-n 20000] [--threads 0] [--device auto]
"""
from __future__ import annotations

import argparse
import inspect
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from advgen.attacks.base import margin

from advgen.attacks.pgd import PGD

from advgen.attacks.square import Square
from advgen.data import load_split, to_float
from advgen.models import build_model, load_model
from advgen.utils import resolve_device

DATA = Path("data/prepared/fashion-mnist")
BUDGETS = (10, 100, 180, 1000, 5000)


def best_times(fns, reps: int, sync) -> list[float]:
    """Best wall time of each function over ``reps`` repetitions, interleaved (drift hits all alike)."""
    times = [[] for _ in fns]
    for _ in range(reps):
        for fn, t in zip(fns, times):
            sync()
            start = time.perf_counter()
            fn()
            sync()
            t.append(time.perf_counter() - start)
    return [min(t) for t in times]


def get_model(dev: torch.device, epochs: int, n_train: int) -> tuple[torch.nn.Module, str]:
    path = Path("models/cnn")
    if (path / "model.json").is_file():
        return load_model(path, dev), f"{path} (train stage)"
    model = build_model("cnn", (1, 28, 28), 10, generator=torch.Generator().manual_seed(0))
    if not DATA.is_dir():
        return model.to(dev).eval(), "untrained cnn (no data/prepared/fashion-mnist)"
    x, y = load_split(DATA, "train")
    x, y = to_float(x[:n_train]), y[:n_train]
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)  # dropout masks, whatever the Dropout in use draws from
    model.to(dev).train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    start = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), 128):
            idx = order[i:i + 128]
            loss = F.cross_entropy(model(x[idx].to(dev)), y[idx].to(dev))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    took = time.perf_counter() - start
    return model.eval(), f"cnn trained here, {epochs} epochs on {len(y)} images ({took:.0f} s; models/cnn absent)"


@torch.no_grad()
def eval_images(model, n: int, dev: torch.device) -> tuple[torch.Tensor, torch.Tensor, str]:
    """The first n test images the model classifies correctly (random images labelled with the
    model's own predictions when there is no data)."""
    if DATA.is_dir():
        x, y = load_split(DATA, "test")
        x, y = to_float(x[: 4 * n + 100]).to(dev), y[: 4 * n + 100].to(dev)
        ok = model(x).argmax(1) == y
        what = f"Fashion-MNIST test, first {n} correctly classified (clean acc {float(ok.float().mean()):.3f})"
        return x[ok][:n], y[ok][:n], what
    x = torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(0)).to(dev)
    return x, model(x).argmax(1), "random images labelled with the model's predictions"


def torchattacks_square(ta, model, x, y, eps, n_queries, seed=0):
    """(adversarial images, per-example queries spent) from torchattacks' Square."""
    attack = ta.Square(model, norm="Linf", eps=eps, n_queries=n_queries, n_restarts=1, p_init=0.8, seed=seed)
    attack.init_hyperparam(x)
    torch.manual_seed(seed)  # what Square.perturb does before attack_single_run
    torch.cuda.manual_seed(seed)
    n_q, adv = attack.attack_single_run(x, y)
    return adv, n_q.long().cpu()


def success_at(q_first: torch.Tensor, budgets) -> list[float]:
    """Fraction of examples first misclassified within each budget (q_first: -1 = never)."""
    return [float(((q_first >= 1) & (q_first <= b)).float().mean()) for b in budgets]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100, help="images for the Square Attack")
    ap.add_argument("--queries", type=int, default=5000, help="Square's query budget per image")
    ap.add_argument("--eps", type=float, default=0.1, help="Square's L-inf eps")
    ap.add_argument("--batch", type=int, default=256, help="images for PGD-20")
    ap.add_argument("--reps", type=int, default=3, help="PGD repetitions (best of)")
    ap.add_argument("--epochs", type=int, default=2, help="training epochs when models/cnn is absent")
    ap.add_argument("--train-n", type=int, default=20000, help="training images when models/cnn is absent")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    import torchattacks as ta

    if args.threads > 0:
        torch.set_num_threads(args.threads)

    dev = resolve_device(args.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    model, origin = get_model(dev, args.epochs, args.train_n)
    for p in model.parameters():
        p.requires_grad_(False)
    print(f"device {dev}, {torch.get_num_threads()} threads; model: {origin}")

    # --- PGD-20
    x, y, _ = eval_images(model, args.batch, dev)
    eps, steps = 0.1, 20
    kw = {"early_stop": False} if "early_stop" in inspect.signature(PGD).parameters else {}
    ours = PGD(model, eps, steps=steps, alpha=2.5 * eps / steps, generator=torch.Generator().manual_seed(0), **kw)
    ref = ta.PGD(model, eps=eps, alpha=2.5 * eps / steps, steps=steps, random_start=True)
    ours(x, y)  # warm-up
    ref(x, y)
    t_ours, t_ref = best_times([lambda: ours(x, y), lambda: ref(x, y)], args.reps, sync)
    print(f"\nPGD-{steps} L-inf eps={eps}, batch {len(y)}, best of {args.reps} interleaved")
    print(f"  advgen       {len(y) / t_ours:9.1f} images/s")
    print(f"  torchattacks {len(y) / t_ref:9.1f} images/s")
    print(f"  ratio advgen/torchattacks = {t_ref / t_ours:.3f} (target >= 1.0)")

    # --- Square Attack
    x, y, what = eval_images(model, args.n, dev)
    n, nq = len(y), args.queries
    budgets = [b for b in BUDGETS if b < nq] + [nq]
    print(f"\nSquare Attack L-inf eps={args.eps}, budget {nq} queries, p_init 0.8, on {n} images: {what}")
    sq = Square(model, args.eps, n_queries=nq, p_init=0.8, generator=torch.Generator().manual_seed(0))
    sync()
    start = time.perf_counter()
    adv = sq(x, y)
    sync()
    t_sq = time.perf_counter() - start
    q_ours = sq.queries_to_success
    start = time.perf_counter()
    adv_ref, spent_ref = torchattacks_square(ta, model, x, y, args.eps, nq)
    sync()
    t_ref = time.perf_counter() - start
    with torch.no_grad():
        fooled_ref = (margin(model(adv_ref), y) <= 0).cpu()  # torchattacks' own success test
        fooled_ours = (model(adv).argmax(1) != y).cpu()
    q_ref = torch.where(fooled_ref, spent_ref, torch.full_like(spent_ref, -1))
    assert torch.equal(q_ours >= 0, fooled_ours)
    qps_ours, qps_ref = sq.queries / t_sq, int(spent_ref.sum()) / t_ref
    print(f"  advgen       {qps_ours:9.1f} queries/s ({sq.queries} queries in {t_sq:.1f} s)")
    print(f"  torchattacks {qps_ref:9.1f} queries/s ({int(spent_ref.sum())} queries in {t_ref:.1f} s)")
    print(f"  ratio advgen/torchattacks: queries/s {qps_ours / qps_ref:.3f}, wall time {t_ref / t_sq:.3f}")
    s_ours, s_ref = success_at(q_ours, budgets), success_at(q_ref, budgets)
    print(f"  {'success within':>16s} {'advgen':>8s} {'torchattacks':>13s} {'ratio':>7s}")
    for b, so, sr in zip(budgets, s_ours, s_ref):
        ratio = f"{so / sr:7.3f}" if sr > 0 else "      -"
        print(f"  {b:>10d} queries {so:8.3f} {sr:13.3f} {ratio}")
    med = lambda q: float(q[q >= 1].float().median()) if bool((q >= 1).any()) else float("nan")  # noqa: E731
    print(f"  median queries to success: advgen {med(q_ours):.0f}, torchattacks {med(q_ref):.0f}")


if __name__ == "__main__":
    main()
