"""``advgen evaluate PATH``: a model the user brings, through the robustness stage's cascade,
sanity checks and flags on the leaderboard's images, as a RobustBench-style entry.

RobustBench's ``benchmark()`` reports, per model (``model_info/<dataset>/<threat>/<name>.json``):
clean accuracy, the accuracy the authors claim, AutoAttack's accuracy, eps, the threat model and
the number of forward passes one prediction takes. The entry here has the same fields, with the
suite's cascade (FGSM, PGD, APGD-CE, APGD-T, Square: AutoAttack's standard version plus the
cheap attacks) in place of AutoAttack, per eps of the leaderboard's grid, with 95% intervals.

The model comes as a folder with ``model.safetensors`` and ``model.json`` naming an architecture
of the zoo (what ``imports.models`` takes, :func:`advgen.zoo.load_folder`), or as a TorchScript
archive. A pickle (``torch.save``) is refused, never loaded.
"""
from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..models import FORMAT, load_model
from ..stats import accuracy_ci
from ..zoo import ModelImportError, load_folder
from .params import AttackConfig
from .robustness import CASCADES, cascade_config, evaluate, sweep


class EvaluateError(ValueError):
    """A model file ``advgen evaluate`` cannot take; the message names the file and what was expected."""


@dataclass
class UserModel:
    model: nn.Module
    kind: str  # "safetensors" | "torchscript"
    claimed: float | None
    provenance: dict[str, Any]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _torchscript(path: Path) -> nn.Module:
    """Load a TorchScript archive (a zip with a ``code/`` folder); a plain ``torch.save`` zip or
    anything else is refused before any byte is unpickled."""
    if not zipfile.is_zipfile(path):
        raise EvaluateError(f"{path}: not a TorchScript archive (not a zip file); expected a folder with "
                            "model.safetensors and model.json, or torch.jit.save's output")
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    if not any("/code/" in n for n in names):
        raise EvaluateError(f"{path}: a torch.save archive (pickled objects, no TorchScript code); pickles are never "
                            "loaded: save the state_dict as model.safetensors with a model.json, or use torch.jit.save")
    try:
        return torch.jit.load(str(path), map_location="cpu").eval()
    except RuntimeError as exc:
        raise EvaluateError(f"{path}: TorchScript archive that does not load ({str(exc).splitlines()[0]})") from None


def _pipeline_folder(path: Path) -> bool:
    """Whether ``path/model.json`` is the sidecar the train stage writes (its ``format`` key)."""
    import json

    try:
        meta = json.loads((path / "model.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("format") == FORMAT


def load_user_model(path: str | Path, in_shape: tuple[int, int, int], num_classes: int) -> UserModel:
    """The model at ``path`` for inputs (C, H, W) = ``in_shape``, checked: it must map a batch
    (B, C, H, W) in [0, 1] to (B, ``num_classes``) scores. Raises :class:`EvaluateError`."""
    path = Path(path)
    if not path.exists():
        raise EvaluateError(f"{path}: not found; expected a model folder (model.safetensors + model.json) "
                            "or a TorchScript file")
    if path.is_dir() and _pipeline_folder(path):  # a model this suite trained (its sidecar, its checks)
        try:
            model = load_model(path)
        except (OSError, ValueError) as exc:
            raise EvaluateError(f"{path}: {exc}") from None
        user = UserModel(model, "safetensors", None, {"path": str(path), "arch": model.sidecar["arch"],
                                                      "weights_sha256": model.sidecar.get("weights_sha256")})
    elif path.is_dir():
        try:
            imp = load_folder(path, in_shape, num_classes)
        except ModelImportError as exc:
            raise EvaluateError(str(exc)) from None
        user = UserModel(imp.model, "safetensors", imp.claimed_accuracy,
                         {**imp.provenance, "arch": imp.arch, "arch_kwargs": imp.arch_kwargs})
    else:
        user = UserModel(_torchscript(path), "torchscript", None, {"path": str(path), "sha256": _sha256(path)})
    with torch.no_grad():
        try:
            out = user.model(torch.zeros(2, *in_shape))
        except RuntimeError as exc:
            raise EvaluateError(f"{path}: the model fails on a batch of shape (2, {', '.join(map(str, in_shape))}) "
                                f"({str(exc).splitlines()[0]})") from None
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, num_classes):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise EvaluateError(f"{path}: the model maps (2, {', '.join(map(str, in_shape))}) to {shape}; expected "
                            f"(2, {num_classes}) class scores")
    return user


def flags(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 250) -> dict[str, Any]:
    """AutoAttack's automatic flags on the clean inputs (fra31/auto-attack, ``flags_doc.md``).

    ``zero_gradient``: the share of examples whose cross-entropy input gradient is exactly zero
    (a model that masks gradients, e.g. by quantising its input or saturating its output: white-
    box attacks see nothing there). ``softmax_output``: the outputs look like probabilities
    (non-negative, each row summing to 1); the attacks expect logits, and a softmax layer
    flattens the loss (DLR still works, cross-entropy on probabilities saturates).
    x (N, C, H, W) in [0, 1], y (N,).
    """
    zero, rows_sum_to_one, nonneg = 0, True, True
    for i in range(0, len(y), batch_size):
        xb = x[i:i + batch_size].clone().requires_grad_(True)
        out = model(xb)
        loss = nn.functional.cross_entropy(out, y[i:i + batch_size], reduction="sum")
        (grad,) = torch.autograd.grad(loss, xb)
        zero += int((grad.flatten(1).abs().amax(1) == 0).sum())
        out = out.detach()
        rows_sum_to_one &= bool(torch.allclose(out.sum(1), torch.ones(len(out), device=out.device), atol=1e-4))
        nonneg &= bool((out >= 0).all())
    n = len(y)
    return {"zero_gradient": {"share": zero / n if n else 0.0, "count": zero, "n": n, "raised": zero > 0},
            "softmax_output": {"raised": rows_sum_to_one and nonneg}}


def entry(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: AttackConfig, *, name: str, dataset: str,
          generator: torch.Generator, claimed: float | None = None, provenance: dict | None = None,
          log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """A RobustBench-style entry for ``model`` on (x (N, C, H, W) in [0, 1], y (N,)).

    The robustness stage's evaluation (:func:`advgen.attacks.robustness.evaluate`) with FGSM,
    PGD, uniform noise and PGD-L2 run here (the attack stage's budgets, ``cfg``) instead of read
    from an attack stage, no transfer attacks (there is no zoo to transfer from), and the flags of
    :func:`flags`. ``autoattack_acc`` is the cascade's worst case per eps.
    """
    per_attack = {}
    for attack, grid in (("fgsm", cfg.eps_linf), ("pgd", cfg.eps_linf), ("noise", cfg.eps_linf),
                         ("pgd_l2", cfg.eps_l2)):
        res = sweep(attack, model, x, y, grid, cfg, generator)
        per_attack[attack] = (res.eps, res.correct)
        log(f"{attack}: {res.seconds:.1f} s")
    ev = evaluate(model, x, y, eps_linf=cfg.eps_linf, per_attack=per_attack, transfer={}, transfer_eps=None,
                  cfg=cascade_config(cfg), convergence_eps=cfg.convergence_eps, check_eps=cfg.check_eps,
                  tolerance=cfg.tolerance, pgd_steps=cfg.pgd_steps, generator=generator, log=log)
    m = ev.metrics
    worst = {f"{e:g}": accuracy_ci(r) for e, r in sorted(ev.worst_case.items()) if e > 0}
    return {
        "name": name, "dataset": dataset, "threat_model": "Linf", "eps": [e for e in cfg.eps_linf if e > 0],
        "clean_acc": m["clean_accuracy"], "clean_acc_ci95": m["clean_ci95"], "claimed_acc": claimed,
        "autoattack_acc": {e: v["accuracy"] for e, v in worst.items()},
        "autoattack_acc_ci95": {e: v["ci95"] for e, v in worst.items()},
        "attack": (f"advgen cascade, attack.cascade = {cfg.cascade}: clean, FGSM, PGD, "
                   + ", ".join(a.upper().replace("_", "-") for a in CASCADES[cfg.cascade])
                   + ", SQUARE; no transfer attacks"),
        "number_forward_passes": 1, "additional_data": False, "n_eval": len(y),
        "checks_passed": m["checks_passed"], "checks_failed": m["checks_failed"],
        "failed_checks": [c for c in m["checks"] if not c["passed"]],
        "gradient_masking": m["gradient_masking"], "flags": flags(model, x, y),
        "invariant_violations": m["invariant_violations"], "provenance": provenance or {},
        "linf": m["linf"], "cascade": m["cascade"]}


def evaluate_path(path: str | Path, params: dict[str, Any], *, name: str | None = None, claimed: float | None = None,
                  eps: list[float] | None = None, n_eval: int | None = None, defended: bool = False,
                  log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """The entry of the model at ``path`` under ``params`` (params.yaml as a dict: its active
    profile's attack budgets and evaluation images, the ingested dataset). ``eps`` replaces the
    leaderboard's L-inf grid, ``n_eval`` its number of images, ``defended`` picks the grid and
    sizes defended models get. ``claimed`` overrides the model.json's ``claimed_accuracy``."""
    import dataclasses

    from ..data import load_classes
    from ..evaluation import eval_set
    from ..schema import dataset as dataset_of
    from ..schema import load_common
    from ..utils import deterministic_kernels, generator, resolve_device
    from .params import load_attack_config

    common = load_common(params)
    dataset = dataset_of(params)
    prepared = Path("data/prepared") / dataset
    if not (prepared / "manifest.json").is_file():
        raise EvaluateError(f"{prepared}: not found; the evaluation images come from the ingested dataset: "
                            "run `dvc repro ingest` (or `dvc pull ingest`) first")
    cfg = load_attack_config(params, defended=defended)
    if eps is not None:
        bad = [e for e in eps if not 0 < e <= 1]
        if bad or not eps:
            raise EvaluateError(f"--eps {eps}: expected L-inf radii in (0, 1] (pixels in [0, 1])")
        grid = sorted({0.0, *eps})
        cfg = dataclasses.replace(cfg, eps_linf=grid, convergence_eps=[e for e in cfg.convergence_eps if e in grid],
                                  check_eps=cfg.check_eps if cfg.check_eps in grid else max(grid))
    if n_eval is not None:
        if n_eval < 1:
            raise EvaluateError(f"--n {n_eval}: expected at least 1 image")
        cfg = dataclasses.replace(cfg, n_eval=n_eval, n_square=min(cfg.n_square, n_eval))
    x, y = eval_set(dataset, cfg.n_eval, common.seed)
    user = load_user_model(path, tuple(x.shape[1:]), len(load_classes(prepared)))
    deterministic_kernels()
    device = resolve_device(common.device)
    model = user.model.to(device)
    out = entry(model, x.to(device), y.to(device), cfg, name=name or Path(path).stem, dataset=dataset,
                generator=generator(common.seed), claimed=claimed if claimed is not None else user.claimed,
                provenance={"kind": user.kind, **user.provenance}, log=log)
    out["profile"] = common.profile
    return out
