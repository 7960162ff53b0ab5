"""Stage import_model: a classifier trained outside the pipeline (``imports.models.<name>``).

Usage: ``python stages/import_model.py <name>``. Checks the folder ``imports.models.<name>.path``
(``model.safetensors`` + ``model.json``, :mod:`advgen.zoo`; never a pickle), loads the weights
into the zoo's architecture, scores it on the whole test split and writes it like the train
stage's models (``models/<name>/``), so ``attack``, ``robustness`` and every stage that names it
evaluate it unchanged; ``reports/imports/<name>/metrics.json`` holds its test accuracy beside the
accuracy its authors claim.
"""
from __future__ import annotations

import sys
from pathlib import Path

from advgen import headline, stage
from advgen.config import ConfigError, load_section
from advgen.data import load_classes, load_split, manifest_sha256, to_float
from advgen.models import save_model
from advgen.schema import ImportConfig
from advgen.utils import atomic_dir, atomic_write_json, deterministic_kernels, resolve_device, round_floats
from advgen.zoo import ModelImportError, load_folder, score


def import_model(params: dict, name: str) -> None:
    common = stage.common(params)
    spec = load_section(ImportConfig, params, "imports").spec(name)
    deterministic_kernels()
    dataset = stage.dataset(params)
    prepared = Path("data/prepared") / dataset
    x, y = load_split(prepared, "test")
    x = to_float(x)  # (N, C, H, W) in [0, 1]
    classes = load_classes(prepared)
    try:
        imp = load_folder(spec.path, tuple(x.shape[1:]), len(classes))
    except ModelImportError as exc:
        raise ConfigError(f"imports.models.{name}: {exc}") from None
    scores = score(imp.model, x, y, len(classes), resolve_device(common.device))
    sidecar = {"name": name, "arch": imp.arch, "arch_kwargs": imp.arch_kwargs, "in_shape": list(x.shape[1:]),
               "num_classes": len(classes), "dataset": dataset, "data_manifest_sha256": manifest_sha256(prepared),
               "profile": common.profile, "imported": imp.provenance}
    with atomic_dir(Path("models") / name) as tmp:
        save_model(imp.model.cpu(), tmp, sidecar)
    metrics = round_floats({"model": name, "arch": imp.arch, **scores, "claimed_accuracy": imp.claimed_accuracy,
                            "params": sum(p.numel() for p in imp.model.parameters()), "imported": imp.provenance})
    atomic_write_json(Path("reports/imports") / name / "metrics.json", metrics)
    headline.write(f"imports/{name}", headline.train(metrics))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python stages/import_model.py <model name from params imports.models>")
    model_name = sys.argv[1]
    stage.run("import_model", lambda p: import_model(p, model_name), Path("reports/cost/imports") / f"{model_name}.json")
