"""advgen's worst-case cascade against AutoAttack's standard version at its published budgets.

AutoAttack "standard" (Croce & Hein 2020): APGD-CE (100 iterations), APGD-T (targeted DLR,
9 target classes, 100 iterations each), FAB-T (9 target classes, 100 iterations each) and
Square (5,000 queries), run as a cascade. Here they are torchattacks 3.5.1's components at
those budgets under ``torchattacks.MultiAttack`` (which is a cascade: each attack runs on the
images every earlier one left robust). Note that ``torchattacks.AutoAttack`` itself runs its
APGD with 10 iterations, which is weaker than published.

advgen's cascade is what the robustness stage runs (default profile): FGSM and PGD-20 (the
per-attack curves, which the cascade reuses), then APGD-CE, APGD-T and Square on survivors.

Both run on the same images of the committed ``models/cnn`` in the same process, alternating,
and the script prints robust accuracy and wall time of each and their ratio. Targets:
advgen's accuracy within 0.5 points of AutoAttack's or lower, and at least 2x faster.

``--union`` also runs the evaluation advgen ran before the cascade (every attack standalone on
every image), to show the cascade is no weaker on the same model.

``--breakdown`` prints instead the time of each attack on both sides.

Usage: python benchmarks/bench_autoattack.py [--n 200] [--eps 0.025 0.05] [--union | --breakdown]
"""
from __future__ import annotations

import argparse
import time

import torch

from advgen.attacks.fgsm import FGSM

from advgen.attacks.pgd import PGD
from advgen.evaluation import eval_set, load_for_attack, predict
from advgen.attacks.robustness import CascadeConfig, batched, cascade


def advgen_worst_case(model, x, y, eps: float, cfg: CascadeConfig, seed: int) -> torch.Tensor:
    """(N,) bool robust under advgen's pipeline: FGSM and PGD-20 curves, then the cascade."""
    gen = torch.Generator().manual_seed(seed)
    known = {"fgsm": (predict(model, batched(FGSM(model, eps), x, y)) == y).cpu(),
             "pgd": (predict(model, batched(PGD(model, eps, steps=20, generator=gen), x, y)) == y).cpu()}
    return cascade(model, x, y, eps, cfg, gen, known_white=known).robust


def breakdown(model, x, y, eps: float, cfg: CascadeConfig, seed: int) -> None:
    """Print where each side's time goes: advgen's cascade stages, and torchattacks' components
    run one after the other on the survivors (what ``MultiAttack`` does)."""
    import torchattacks as ta

    gen = torch.Generator().manual_seed(seed)
    times, known = {}, {}
    for name, attack in (("fgsm", FGSM(model, eps)), ("pgd", PGD(model, eps, steps=20, generator=gen))):
        start = time.perf_counter()
        known[name] = (predict(model, batched(attack, x, y)) == y).cpu()
        times[name] = time.perf_counter() - start
    res = cascade(model, x, y, eps, cfg, gen, known_white=known)
    times.update(res.seconds)
    left = {s: int(res.after(s).sum()) for s in res.stages}
    print(f"  advgen     {'  '.join(f'{k} {v:.1f}s' for k, v in times.items())}; survivors {left}")
    components = [("apgd_ce", ta.APGD(model, eps=eps, steps=100, n_restarts=1, loss="ce", seed=seed)),
                  ("apgd_t", ta.APGDT(model, eps=eps, steps=100, n_restarts=1, n_classes=10, seed=seed)),
                  ("fab_t", ta.FAB(model, eps=eps, steps=100, n_restarts=1, multi_targeted=True, n_classes=10, seed=seed)),
                  ("square", ta.Square(model, eps=eps, n_queries=5000, n_restarts=1, seed=seed))]
    ok = predict(model, x) == y
    parts = []
    for name, attack in components:
        idx = ok.nonzero().squeeze(1)
        start = time.perf_counter()
        if len(idx):
            ok[idx] = predict(model, attack(x[idx], y[idx])) == y[idx]
        parts.append(f"{name} {time.perf_counter() - start:.1f}s (left {int(ok.sum())})")
    print(f"  AA-std     {'  '.join(parts)}")


def union_of_standalone_attacks(model, x, y, eps: float, seed: int, n_square: int = 200) -> torch.Tensor:
    """(N,) bool robust under the evaluation advgen ran before the cascade: every attack on every
    image (FGSM, PGD-20, APGD-CE and untargeted APGD-DLR with 100 iterations), Square with 5,000
    queries on the first ``n_square`` images, an image robust only if every attack missed it."""
    from advgen.attacks.apgd import APGD
    from advgen.attacks.square import Square

    gen = torch.Generator().manual_seed(seed)
    ok = predict(model, x) == y
    for attack in (FGSM(model, eps), PGD(model, eps, steps=20, generator=gen),
                   APGD(model, eps, loss="ce", steps=100, generator=gen),
                   APGD(model, eps, loss="dlr", steps=100, generator=gen)):
        ok &= predict(model, batched(attack, x, y)) == y
    sq = Square(model, eps, n_queries=5000, generator=gen)
    ok[:n_square] &= predict(model, batched(sq, x[:n_square], y[:n_square])) == y[:n_square]
    return ok.cpu()


def autoattack_standard(model, x, y, eps: float, seed: int) -> torch.Tensor:
    """(N,) bool robust under torchattacks' components at AutoAttack's published budgets."""
    import torchattacks as ta

    attacks = [ta.APGD(model, eps=eps, steps=100, n_restarts=1, loss="ce", seed=seed),
               ta.APGDT(model, eps=eps, steps=100, n_restarts=1, n_classes=10, seed=seed),
               ta.FAB(model, eps=eps, steps=100, n_restarts=1, multi_targeted=True, n_classes=10, seed=seed),
               ta.Square(model, eps=eps, n_queries=5000, n_restarts=1, seed=seed)]
    adv = ta.MultiAttack(attacks)(x, y)
    return (predict(model, adv) == y).cpu()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200, help="evaluation images (the first n of the pipeline's set)")
    ap.add_argument("--eps", type=float, nargs="+", default=[0.025, 0.05])
    ap.add_argument("--model", default="cnn")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--union", action="store_true", help="also run the pre-cascade evaluation (every attack standalone)")
    ap.add_argument("--breakdown", action="store_true", help="only print the time of each attack of both sides")
    args = ap.parse_args()
    torch.set_grad_enabled(True)
    model = load_for_attack(args.model, torch.device("cpu"))
    x, y = eval_set("fashion-mnist", 1000, args.seed, model.sidecar["in_shape"][-1])
    x, y = x[: args.n], y[: args.n]
    cfg = CascadeConfig(apgd_steps=100, n_target_classes=9, square_queries=5000, n_square=args.n)
    clean = float((predict(model, x) == y).float().mean())
    print(f"model {args.model}, n={args.n}, clean accuracy {100 * clean:.1f}%")
    print(f"{'eps':>6} {'advgen %':>9} {'AA-std %':>9} {'advgen s':>9} {'AA-std s':>9} {'speed-up':>9} {'diff pts':>9}")
    for eps in args.eps:
        if args.breakdown:
            print(f"eps {eps:g}")
            breakdown(model, x, y, eps, cfg, args.seed)
            continue
        start = time.perf_counter()
        ours = advgen_worst_case(model, x, y, eps, cfg, args.seed)
        t_ours = time.perf_counter() - start
        if args.union:
            start = time.perf_counter()
            old = union_of_standalone_attacks(model, x, y, eps, args.seed)
            t_old = time.perf_counter() - start
            print(f"       before the cascade (every attack standalone): {100 * float(old.float().mean()):.1f}% in "
                  f"{t_old:.1f} s; robust under the cascade only: {int((ours & ~old).sum())}, under the union only: "
                  f"{int((old & ~ours).sum())}", flush=True)
        start = time.perf_counter()
        ref = autoattack_standard(model, x, y, eps, args.seed)
        t_ref = time.perf_counter() - start
        a, b = float(ours.float().mean()), float(ref.float().mean())
        print(f"{eps:6.3f} {100 * a:9.1f} {100 * b:9.1f} {t_ours:9.1f} {t_ref:9.1f} {t_ref / t_ours:8.2f}x "
              f"{100 * (a - b):+9.1f}", flush=True)
        print(f"       robust under advgen only: {int((ours & ~ref).sum())}, under AutoAttack only: "
              f"{int((ref & ~ours).sum())}", flush=True)
    print("targets: advgen within +0.5 points of AutoAttack or lower, and >= 2x faster")


if __name__ == "__main__":
    main()
