"""Robustness evaluation: epsilon sweeps, the worst case as an AutoAttack-style cascade, and
automatic sanity checks with paired statistics.

Every attack and model uses the same evaluation subset, so per-example results combine: an
example counts as robust at eps only if it is classified correctly clean and no attack run at
that eps fooled it.

Two kinds of figures come out, and the report says which is which:

* **per-attack curves** (FGSM, PGD, PGD-L2, noise): each attack run on every example at every
  eps, as the lecture compares them (``attack`` stage, :func:`sweep`);
* **cascade figures** (the worst case): AutoAttack's convention (Croce & Hein 2020), where each
  attack runs only on the examples every earlier one left robust (:func:`cascade`).

Where an attack only decides robust accuracy it stops working on an example once it is fooled
and keeps that adversarial example (PGD, APGD, APGD-T, Square all do); this changes no robust
accuracy, only the cost.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from ..evaluation import predict
from ..stats import accuracy_ci, mcnemar, wilson
from .apgd import APGD, APGDT
from .base import Attack, AttackError, lp_norm
from .fab import FABT
from .fgsm import FGSM
from .noise import UniformNoise
from .params import AttackConfig
from .pgd import PGD
from .square import Square

# name -> (norm, builder(model, eps, cfg, generator)); cfg: the typed ``attack`` section
Builder = Callable[[nn.Module, float, AttackConfig, torch.Generator], Attack]
ATTACKS: dict[str, tuple[str, Builder]] = {
    "fgsm": ("Linf", lambda m, e, c, g: FGSM(m, e)),
    "pgd": ("Linf", lambda m, e, c, g: PGD(m, e, steps=c.pgd_steps, restarts=c.pgd_restarts, generator=g)),
    "pgd_l2": ("L2", lambda m, e, c, g: PGD(m, e, norm="L2", steps=c.pgd_steps, restarts=c.pgd_restarts,
                                           generator=g)),
    "apgd_ce": ("Linf", lambda m, e, c, g: APGD(m, e, loss="ce", steps=c.apgd_steps, generator=g)),
    "apgd_dlr": ("Linf", lambda m, e, c, g: APGD(m, e, loss="dlr", steps=c.apgd_steps, generator=g)),
    "square": ("Linf", lambda m, e, c, g: Square(m, e, n_queries=c.square_queries, p_init=c.square_p_init,
                                                generator=g)),
    "noise": ("Linf", lambda m, e, c, g: UniformNoise(m, e, generator=g)),
}
ITERATIVE = ("pgd", "apgd_ce", "apgd_dlr")  # loss maximisers: expected monotone in eps
ALPHA = 0.01  # significance of the paired tests behind the sanity checks


def build_attack(name: str, model: nn.Module, eps: float, cfg: AttackConfig, generator: torch.Generator) -> Attack:
    """Instantiate attack ``name`` (one of :data:`ATTACKS`) with the budgets of ``cfg``."""
    if name not in ATTACKS:
        raise AttackError(f"unknown attack {name!r}; expected one of {sorted(ATTACKS)}")
    return ATTACKS[name][1](model, eps, cfg, generator)


def batched(attack: Attack, x: torch.Tensor, y: torch.Tensor, batch_size: int = 250) -> torch.Tensor:
    """Run ``attack`` on (x (N, C, H, W), y (N,)) in batches; returns (N, C, H, W)."""
    if len(y) == 0:
        return x.clone()
    return torch.cat([attack(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, len(y), batch_size)])


@dataclass
class SweepResult:
    eps: list[float]
    correct: torch.Tensor  # (n_eps, N) bool: still correctly classified
    adv_examples: torch.Tensor  # (n_show, C, H, W) at ``show_eps``
    show_eps: float
    queries: int
    grad_evals: int
    seconds: float
    max_norm: list[float]  # largest perturbation norm found at each eps (must be <= eps)
    extra: dict


def sweep(name: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps_list: list[float], cfg: AttackConfig,
          generator: torch.Generator, batch_size: int = 250, n_show: int = 8, show_eps: float | None = None) -> SweepResult:
    """Run attack ``name`` at each eps on (x (N, C, H, W), y (N,)) and record who stays correct."""
    norm = ATTACKS[name][0] if name in ATTACKS else "Linf"
    show_eps = show_eps if show_eps in eps_list else max(eps_list)
    correct, max_norm, queries, grads, extra = [], [], 0, 0, {}
    shown = x[:n_show].clone()
    start = time.perf_counter()
    for eps in eps_list:
        hits, worst, q_first = [], 0.0, []
        for i in range(0, len(y), batch_size):
            xb, yb = x[i:i + batch_size], y[i:i + batch_size]
            attack = build_attack(name, model, eps, cfg, generator)
            adv = attack(xb, yb)
            hits.append(predict(model, adv) == yb)
            worst = max(worst, float(lp_norm(adv - xb, norm).max()))
            queries, grads = queries + attack.queries, grads + attack.grad_evals
            if isinstance(attack, Square) and eps > 0:
                q_first.append(attack.queries_to_success)
            if eps == show_eps and i == 0:
                shown = adv[:n_show].clone()
        correct.append(torch.cat(hits))
        max_norm.append(worst)
        if q_first:
            extra.setdefault("queries_to_success", {})[eps] = torch.cat(q_first).tolist()  # by eps
    return SweepResult(list(eps_list), torch.stack(correct), shown, show_eps, queries, grads,
                       time.perf_counter() - start, max_norm, extra)


def success_vs_budget(queries_to_success: list[int], clean_correct: torch.Tensor, budgets: list[int]) -> dict[int, float]:
    """Fraction of initially correct examples fooled within each query budget."""
    q = torch.tensor(queries_to_success)
    ok = clean_correct.bool()
    n = max(int(ok.sum()), 1)
    return {b: float(((q >= 1) & (q <= b) & ok).sum()) / n for b in budgets}


def square_summary(q_first: list[int], clean: torch.Tensor, *, eps: float, budgets: list[int], n_queries: int,
                   queries_per_minute: float, window_minutes: float) -> dict:
    """C7: Square's success against query budget (with 95% intervals over the initially
    correct examples), and the wall-clock time each budget takes under a rate limit."""
    window = int(queries_per_minute * window_minutes)
    budgets = sorted(set(budgets) | {min(window, n_queries)})
    succ = success_vs_budget(q_first, clean.cpu(), budgets)
    n_ok = int(clean.sum())
    return {"eps": eps, "n_correct": n_ok, "success_at_budget": {str(b): s for b, s in succ.items()},
            "success_ci95": {str(b): list(wilson(round(s * n_ok), n_ok)) for b, s in succ.items()},
            "hours_at_rate_limit": {str(b): b / queries_per_minute / 60 for b in budgets},
            "queries_per_minute": queries_per_minute, "window_minutes": window_minutes,
            "window_budget": min(window, n_queries),
            "median_queries_to_success": float(torch.tensor([q for q in q_first if q > 0] or [0]).float().median())}


# ----------------------------------------------------------------------------- the cascade

@dataclass
class CascadeConfig:
    """Budgets of the worst-case cascade (AutoAttack's standard version by default)."""

    apgd_steps: int = 100
    n_target_classes: int = 9
    square_queries: int = 5000
    square_p_init: float = 0.8
    n_square: int = 1000  # Square runs on the survivors among the first n_square examples
    more_restarts: int = 2
    batch_size: int = 250
    version: str = "advgen"  # which white-box attacks: a key of CASCADES


def cascade_config(cfg: AttackConfig) -> CascadeConfig:
    """The cascade budgets of an :class:`~advgen.attacks.params.AttackConfig`."""
    return CascadeConfig(apgd_steps=cfg.apgd_steps, n_target_classes=cfg.n_target_classes,
                         square_queries=cfg.square_queries, square_p_init=cfg.square_p_init,
                         n_square=cfg.n_square, more_restarts=cfg.more_restarts, version=cfg.cascade)


#: The cascade's white-box attacks after the known ones, per version. "advgen" is what the committed
#: results ran; "standard" adds FAB-T, completing AutoAttack's standard version (APGD-CE, APGD-T,
#: FAB-T, Square); "plus" adds the untargeted APGD-DLR too (AutoAttack's plus version runs every
#: attack with more restarts; here each runs once).
CASCADES: dict[str, tuple[str, ...]] = {"advgen": ("apgd_ce", "apgd_t"), "standard": ("apgd_ce", "apgd_t", "fab_t"),
                                        "plus": ("apgd_ce", "apgd_dlr", "apgd_t", "fab_t")}


def _white_box(name: str, model: nn.Module, eps: float, cfg: CascadeConfig, generator: torch.Generator) -> Attack:
    if name == "apgd_ce":
        return APGD(model, eps, loss="ce", steps=cfg.apgd_steps, generator=generator)
    if name == "apgd_dlr":
        return APGD(model, eps, loss="dlr", steps=cfg.apgd_steps, generator=generator)
    if name == "apgd_t":
        return APGDT(model, eps, steps=cfg.apgd_steps, n_target_classes=cfg.n_target_classes, generator=generator)
    return FABT(model, eps, steps=cfg.apgd_steps, n_target_classes=cfg.n_target_classes)


@dataclass
class CascadeResult:
    """Who broke each example at one eps. ``broken_by[i]`` is the index into ``stages`` of the
    first stage that fooled example i (0 = "clean": misclassified without attack), -1 = robust."""

    eps: float
    stages: list[str]
    broken_by: torch.Tensor  # (N,) long
    white_box: list[str]
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def robust(self) -> torch.Tensor:  # (N,) bool
        return self.broken_by < 0

    def after(self, stage: str) -> torch.Tensor:
        """(N,) bool: still robust after ``stage`` and every stage before it."""
        k = self.stages.index(stage)
        return (self.broken_by < 0) | (self.broken_by > k)

    def white_box_survivors(self) -> torch.Tensor:
        return self.after(self.white_box[-1])

    def masking_points(self) -> int:
        """Examples a black-box stage broke after every white-box attack missed them."""
        k = self.stages.index(self.white_box[-1])
        return int((self.broken_by > k).sum())

    def as_dict(self) -> dict:
        n = len(self.broken_by)
        rows = []
        for k, name in enumerate(self.stages):
            left = self.after(name)
            rows.append({"stage": name, "broke": int((self.broken_by == k).sum()),
                         **accuracy_ci(left)})
        return {"eps": self.eps, "n": n, "stages": rows, "robust": accuracy_ci(self.robust),
                "white_box_survivors": int(self.white_box_survivors().sum()),
                "masking_points": self.masking_points()}


def _attack_on(attack: Attack, model: nn.Module, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor,
               batch_size: int) -> torch.Tensor:
    """Indices (subset of ``idx``) of the examples ``attack`` fools."""
    if len(idx) == 0:
        return idx
    adv = batched(attack, x[idx], y[idx], batch_size)
    return idx[predict(model, adv) != y[idx]]


def cascade(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, cfg: CascadeConfig,
            generator: torch.Generator, *, known_white: dict[str, torch.Tensor] | None = None,
            known_black: dict[str, torch.Tensor] | None = None) -> CascadeResult:
    """The worst case at ``eps`` (L-inf) as a cascade; each stage sees only the survivors.

    Order: clean -> ``known_white`` (per-example correctness (N,) of attacks already run on
    every example, e.g. FGSM and PGD from the attack stages) -> the white-box attacks of
    ``CASCADES[cfg.version]`` (by default APGD-CE -> APGD-T, targeted DLR over
    ``n_target_classes`` classes; "standard" adds FAB-T, "plus" APGD-DLR and FAB-T) ->
    ``known_black`` (e.g. transfer attacks) ->
    Square (scores only) on the survivors among the first ``n_square`` examples. Black-box
    stages come last, so any example they break is one every white-box attack missed: the
    gradient-masking signal (:meth:`CascadeResult.masking_points`).

    x (N, C, H, W) in [0, 1], y (N,). Random starts come from ``generator`` (CPU).
    """
    known_white, known_black = known_white or {}, known_black or {}
    n = len(y)
    attacks = CASCADES[cfg.version]
    stages = ["clean", *known_white, *attacks, *known_black, "square"]
    white = ["clean", *known_white, *attacks]
    broken = torch.full((n,), -1, dtype=torch.long)
    seconds: dict[str, float] = {}

    def mark(stage: str, fooled_idx: torch.Tensor) -> None:
        fresh = fooled_idx[broken[fooled_idx] < 0]
        broken[fresh] = stages.index(stage)

    mark("clean", (predict(model, x) != y).nonzero().squeeze(1).cpu())
    for name, correct in {**known_white}.items():
        mark(name, (~correct.bool().cpu()).nonzero().squeeze(1))
    dev = x.device
    for name in attacks:
        attack = _white_box(name, model, eps, cfg, generator)
        start = time.perf_counter()
        idx = (broken < 0).nonzero().squeeze(1)
        mark(name, _attack_on(attack, model, x, y, idx.to(dev), cfg.batch_size).cpu())
        seconds[name] = time.perf_counter() - start
    for name, correct in known_black.items():
        fooled = (~correct.bool().cpu()).nonzero().squeeze(1)
        mark(name, fooled)
    start = time.perf_counter()
    idx = (broken[: cfg.n_square] < 0).nonzero().squeeze(1)
    sq = Square(model, eps, n_queries=cfg.square_queries, p_init=cfg.square_p_init, generator=generator)
    mark("square", _attack_on(sq, model, x, y, idx.to(dev), cfg.batch_size).cpu())
    seconds["square"] = time.perf_counter() - start
    return CascadeResult(eps, stages, broken, white, seconds)


def convergence(model: nn.Module, x: torch.Tensor, y: torch.Tensor, result: CascadeResult, cfg: CascadeConfig,
                generator: torch.Generator) -> list[dict]:
    """Is the headline cascade converged? Re-attack with stronger budgets.

    The budgets, in order: the headline; APGD-CE with twice the iterations from a fresh
    start; APGD-CE with ``more_restarts`` fresh restarts. Each stronger budget runs on every
    example the headline's APGD-CE saw (its standalone accuracy there is compared with the
    headline APGD-CE's by an exact paired test: a stronger budget that leaves *more* examples
    correct beyond chance is a bug), and the worst case with it added shows how far the
    headline would still fall (more than a tolerance: not converged).
    Returns an ordered list of ``{budget, steps, restarts, accuracy, ci95, ...}`` rows.
    """
    seen = result.after(result.stages[result.stages.index("apgd_ce") - 1])  # inputs of APGD-CE
    base_ok = seen & result.after("apgd_ce")  # APGD-CE alone left these correct
    idx = seen.nonzero().squeeze(1)
    rows = [{"budget": "headline", "steps": cfg.apgd_steps, "restarts": 1, **accuracy_ci(result.robust)}]
    robust = result.robust.clone()
    for label, steps, restarts in ((f"+APGD-CE {2 * cfg.apgd_steps} steps", 2 * cfg.apgd_steps, 1),
                                   (f"+APGD-CE {cfg.more_restarts} restarts", cfg.apgd_steps, cfg.more_restarts)):
        attack = APGD(model, result.eps, loss="ce", steps=steps, restarts=restarts, generator=generator)
        fooled = _attack_on(attack, model, x, y, idx.to(x.device), cfg.batch_size).cpu()
        ok = seen.clone()
        ok[fooled] = False
        robust &= ok | ~seen
        test = mcnemar(ok[idx], base_ok[idx])
        rows.append({"budget": label, "steps": steps, "restarts": restarts, **accuracy_ci(robust),
                     "standalone_vs_headline_apgd_ce": test})
    return rows


# ----------------------------------------------------------------------------- sanity checks

@dataclass
class Check:
    name: str
    passed: bool
    detail: str

    def as_dict(self) -> dict:
        return {"name": self.name, "passed": self.passed, "detail": self.detail}


def _pct(v: float) -> str:
    return f"{100 * v:.1f}%"


def paired_increase(low: torch.Tensor, high: torch.Tensor) -> tuple[bool, dict]:
    """Is the accuracy of ``high`` above ``low`` beyond chance (exact sign test, p < ALPHA)?"""
    test = mcnemar(high, low)
    return test["p_a_higher"] < ALPHA, test


def sanity_checks(*, clean: torch.Tensor, curves: dict[str, dict[float, torch.Tensor]], check_eps: float,
                  convergence: dict[float, list[dict]], tolerance: float, masking: dict[float, tuple[int, int]],
                  noise_margin: float, unbounded_acc: float, deterministic: bool) -> tuple[list[Check], list[str]]:
    """The automatic checks of an evaluation (Carlini et al. 2019, sections 5-6).

    ``clean`` (N,) bool and ``curves`` attack -> {eps: correct (N,) bool} on the same
    examples, including ``"worst_case"`` (the cascade). ``convergence`` maps eps to the rows
    of :func:`convergence`; ``masking`` eps -> (examples black-box attacks broke after every
    white-box attack missed them, n). Comparisons of two figures on the same examples use an
    exact paired test at p < 0.01, so one image out of 1,000 cannot trip them.

    Returns (checks, observations). Facts that hold by construction (accuracy at eps = 0
    equals clean accuracy; the worst case is at most clean accuracy) are not checks: the
    unit tests assert them.
    """
    checks, notes = [], []
    for name, curve in curves.items():
        eps_sorted = sorted(curve)
        if name in ITERATIVE:
            over = {e: paired_increase(clean, c) for e, c in curve.items() if e > 0}
            bad = {e: t for e, (hit, t) in over.items() if hit}
            checks.append(Check(f"robust_le_clean[{name}]", not bad,
                                "never above clean beyond chance" if not bad else
                                f"above clean at eps {sorted(bad)} (p < {ALPHA})"))
        if name in ITERATIVE + ("worst_case",):
            ups = [(a, b) for a, b in zip(eps_sorted, eps_sorted[1:]) if paired_increase(curve[a], curve[b])[0]]
            checks.append(Check(f"monotone_in_eps[{name}]", not ups,
                                "no significant increase with eps" if not ups else "significant increase " +
                                ", ".join(f"{_pct(_acc(curve[a]))}@{a:g} -> {_pct(_acc(curve[b]))}@{b:g}" for a, b in ups)))
        elif name == "fgsm":
            ups = [(a, b) for a, b in zip(eps_sorted, eps_sorted[1:]) if _acc(curve[b]) > _acc(curve[a])]
            if ups:  # single-step FGSM overshoots at large eps: expected, so only reported
                notes.append("FGSM accuracy rises with eps (single-step overshoot): " +
                             ", ".join(f"{_pct(_acc(curve[a]))}@{a:g} -> {_pct(_acc(curve[b]))}@{b:g}" for a, b in ups))
    if "pgd" in curves and "fgsm" in curves:
        bad = [e for e in curves["pgd"] if e in curves["fgsm"] and e > 0
               and paired_increase(curves["fgsm"][e], curves["pgd"][e])[0]]
        checks.append(Check("pgd_le_fgsm", not bad, "PGD never above FGSM beyond chance" if not bad else
                            "PGD above FGSM at eps " + ", ".join(
                                f"{e:g} ({_pct(_acc(curves['pgd'][e]))} vs {_pct(_acc(curves['fgsm'][e]))})" for e in bad)))
    for eps, rows in sorted(convergence.items()):
        head = rows[0]
        for r in rows[1:]:
            drop = head["accuracy"] - r["accuracy"]
            test = r["standalone_vs_headline_apgd_ce"]
            raised = test["p_a_higher"] < ALPHA
            checks.append(Check(
                f"converged[{r['budget']}]@{eps:g}", drop <= tolerance + 1e-9 and not raised,
                f"worst case {_pct(head['accuracy'])} -> {_pct(r['accuracy'])} with {r['budget']} "
                f"(drop {100 * drop:.1f} points, tolerance {100 * tolerance:.1f}); standalone it leaves "
                f"{test['only_a']} examples correct that the headline APGD-CE fooled and fools {test['only_b']} "
                f"it did not (p = {test['p_a_higher']:.2g} that the stronger budget is weaker by chance)"))
    for eps, (count, n) in sorted(masking.items()):
        checks.append(Check(f"black_box_not_stronger@{eps:g}", count <= tolerance * n,
                            f"{count} of {n} examples broken by black-box attacks after every white-box attack "
                            f"missed them (tolerance {tolerance * n:.0f})"))
    if "noise" in curves and "pgd" in curves and check_eps in curves["noise"]:
        c, noise, pgd = _acc(clean), _acc(curves["noise"][check_eps]), _acc(curves["pgd"][check_eps])
        checks.append(Check("noise_much_weaker_than_pgd", (c - noise) <= noise_margin * (c - pgd),
                            f"noise drop {c - noise:.4f} vs PGD drop {c - pgd:.4f} at eps={check_eps:g} "
                            f"(must be <= {noise_margin:g} x)"))
    checks.append(Check("unbounded_pgd_reaches_zero", unbounded_acc == 0.0, f"PGD at eps=1: {unbounded_acc:.4f}"))
    checks.append(Check("logits_deterministic", deterministic, "two forward passes equal" if deterministic
                        else "two forward passes differ"))
    return checks, notes


def _acc(c: torch.Tensor) -> float:
    return float(c.float().mean())


def invariants(clean: torch.Tensor, curves: dict[str, dict[float, torch.Tensor]]) -> list[str]:
    """The facts that hold by construction; returns the violated ones (each one is a bug).

    Attacks return x itself at eps = 0, so their accuracy there equals clean accuracy, and
    the worst case never counts an image misclassified clean. They are not sanity checks
    (they cannot fail on a sound implementation); the unit tests assert them and the stage
    reports any violation loudly.
    """
    bad = []
    for name, curve in curves.items():
        if 0.0 in curve and name != "noise" and not torch.equal(curve[0.0].cpu(), clean.cpu()):
            bad.append(f"{name}: predictions at eps=0 differ from the clean ones")
    for eps, c in curves.get("worst_case", {}).items():
        if bool((c.cpu() & ~clean.cpu()).any()):
            bad.append(f"worst case at eps={eps:g} counts an image misclassified clean")
    return bad


@dataclass
class Evaluation:
    """What :func:`evaluate` returns: the metrics dict and the rows of the two plot files."""

    metrics: dict
    linf_rows: list[dict]
    l2_rows: list[dict]
    worst_case: dict[float, torch.Tensor] = field(default_factory=dict)  # eps -> robust (N,) bool


def _curve(eps: list[float], correct: torch.Tensor) -> dict[float, torch.Tensor]:
    return {round(e, 9): correct[i].bool().cpu() for i, e in enumerate(eps)}


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps_linf: list[float],
             per_attack: dict[str, tuple[list[float], torch.Tensor]], transfer: dict[str, torch.Tensor],
             transfer_eps: float | None, cfg: CascadeConfig, convergence_eps: list[float], check_eps: float,
             tolerance: float, pgd_steps: int, generator: torch.Generator, noise_margin: float = 0.5,
             log: Callable[[str], None] = lambda s: None) -> Evaluation:
    """The robustness stage's whole evaluation of one model on (x (N, C, H, W), y (N,)).

    ``per_attack``: attack -> (eps list, correct (n_eps, N)) from the attack stages (``fgsm``,
    ``pgd`` and ``noise`` L-inf curves, ``pgd_l2``); ``transfer``: source -> correct (N,) of
    transfer attacks at ``transfer_eps``. Runs the worst-case cascade at every non-zero eps,
    the convergence ladder at ``convergence_eps``, unbounded PGD and the sanity checks.
    """
    clean = (predict(model, x) == y).cpu()
    n = len(y)
    curves = {a: _curve(e, c) for a, (e, c) in per_attack.items() if a in ("fgsm", "pgd", "noise", *ITERATIVE)}
    worst, cascades, conv, masking = {0.0: clean.clone()}, [], {}, {}
    for eps in [e for e in eps_linf if e > 0]:
        white = {a: curves[a][round(eps, 9)] for a in ("fgsm", "pgd") if a in curves and round(eps, 9) in curves[a]}
        black = {f"transfer_from_{s}": c for s, c in transfer.items()} if transfer_eps == eps else {}
        res = cascade(model, x, y, eps, cfg, generator, known_white=white, known_black=black)
        log(f"cascade eps={eps:g}: robust {int(res.robust.sum())}/{n}; seconds "
            + ", ".join(f"{k} {v:.1f}" for k, v in res.seconds.items()))
        worst[eps] = res.robust
        cascades.append(res.as_dict())
        masking[eps] = (res.masking_points(), n)
        if eps in convergence_eps:
            conv[eps] = convergence(model, x, y, res, cfg, generator)
    curves["worst_case"] = worst
    broken = invariants(clean, curves)
    for b in broken:
        log(f"!!! INVARIANT VIOLATED (a bug): {b}")
    unbounded = batched(PGD(model, 1.0, steps=pgd_steps, generator=generator), x, y)
    unbounded_acc = float((predict(model, unbounded) == y).float().mean())
    with torch.no_grad():
        deterministic = torch.equal(model(x[:256]), model(x[:256]))
    checks, notes = sanity_checks(clean=clean, curves=curves, check_eps=check_eps, convergence=conv,
                                  tolerance=tolerance, masking=masking, noise_margin=noise_margin,
                                  unbounded_acc=unbounded_acc, deterministic=deterministic)
    stats = {a: {f"{e:g}": accuracy_ci(c) for e, c in curve.items()} for a, curve in curves.items()}
    l2 = per_attack.get("pgd_l2")
    l2_stats = {f"{e:g}": accuracy_ci(c) for e, c in _curve(*l2).items()} if l2 else {}
    paired = {"vs_clean": {a: {f"{e:g}": mcnemar(clean, c) for e, c in curve.items() if e > 0}
                           for a, curve in curves.items() if a != "worst_case"}}
    if transfer_eps is not None and "noise" in curves and round(transfer_eps, 9) in curves["noise"]:
        noise = curves["noise"][round(transfer_eps, 9)]
        paired["transfer_vs_noise"] = {s: mcnemar(noise, c) for s, c in transfer.items()}
    metrics = {
        "n": n, "clean_accuracy": float(clean.float().mean()), "clean_ci95": accuracy_ci(clean)["ci95"],
        "worst_case_kind": "cascade: clean, FGSM, PGD, APGD-CE, APGD-T, transfer, Square (see 'cascade')",
        "linf": {a: {e: v["accuracy"] for e, v in d.items()} for a, d in stats.items()},
        "linf_ci95": {a: {e: v["ci95"] for e, v in d.items()} for a, d in stats.items()},
        "l2_pgd": {e: v["accuracy"] for e, v in l2_stats.items()},
        "l2_pgd_ci95": {e: v["ci95"] for e, v in l2_stats.items()},
        "cascade": cascades,
        "convergence": {f"{e:g}": rows for e, rows in conv.items()},
        "transfer": {s: float(c.float().mean()) for s, c in transfer.items()}, "transfer_eps": transfer_eps,
        "paired": paired, "unbounded_pgd_accuracy": unbounded_acc,
        # black-box attacks beat white-box ones on the same images beyond the tolerance
        "gradient_masking": any(not c.passed for c in checks if c.name.startswith("black_box_not_stronger")),
        "checks": [c.as_dict() for c in checks], "checks_passed": sum(c.passed for c in checks),
        "checks_failed": sum(not c.passed for c in checks), "observations": notes,
        "invariant_violations": broken}
    cols = list(curves)
    linf_rows = [{"eps": e, **{a: stats[a].get(f"{e:g}", {}).get("accuracy", float("nan")) for a in cols}}
                 for e in eps_linf]
    l2_rows = [{"eps": float(e), "pgd_l2": v["accuracy"]} for e, v in l2_stats.items()]
    return Evaluation(metrics, linf_rows, l2_rows, worst)


def paired_vs_base(base: nn.Module, x: torch.Tensor, y: torch.Tensor, worst_case: dict[float, torch.Tensor],
                   pgd_steps: int, generator: torch.Generator) -> dict:
    """A defended model against the model it defends, on the same images (C9's paired test).

    The base model (e.g. the standard ``cnn``) is attacked with PGD-``pgd_steps`` at each eps
    of ``worst_case`` (eps -> the defended model's cascade robustness (N,) bool); PGD only
    over-states the base's robustness, so the comparison is conservative. Returns, per eps,
    both accuracies and the exact paired test (:func:`advgen.stats.mcnemar`, a = defended).
    """
    out = {}
    for eps, robust in sorted(worst_case.items()):
        if eps == 0:
            base_ok = (predict(base, x) == y).cpu()
        else:
            adv = batched(PGD(base, eps, steps=pgd_steps, generator=generator), x, y)
            base_ok = (predict(base, adv) == y).cpu()
        out[f"{eps:g}"] = {"defended_worst_case": _acc(robust), "base_pgd": _acc(base_ok),
                           "paired": mcnemar(robust.cpu(), base_ok)}
    return out


def transfer_matrix(models: dict[str, nn.Module], x: torch.Tensor, y: torch.Tensor, eps: float, steps: int,
                    generator: torch.Generator, batch_size: int = 250) -> tuple[dict, dict[str, torch.Tensor]]:
    """Craft L-inf PGD on each source model and evaluate every target on those images.

    Returns ({source: {target: accuracy}}, {"source->target": correct (N,) bool}). The
    diagonal is the white-box attack itself.
    """
    matrix, correct = {}, {}
    for src, model in models.items():
        # Every step runs (no early stop): the example should cross the surrogate's boundary well.
        adv = batched(PGD(model, eps, steps=steps, generator=generator, early_stop=False), x, y, batch_size)
        matrix[src] = {}
        for tgt, target in models.items():
            hit = (predict(target, adv) == y).cpu()
            matrix[src][tgt] = float(hit.float().mean())
            correct[f"{src}->{tgt}"] = hit
    return matrix, correct
