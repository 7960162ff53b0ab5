"""The replicate stages' headline figures (``dvc metrics``): per seed, the figures its claim's
criterion reads (3 values per seed in all: ``dvc metrics show`` stays short). Details (intervals,
cascades, paired counts, per config) are in reports/replicate/."""
from __future__ import annotations

from typing import Any


def c9(m: dict[str, Any]) -> dict[str, Any]:
    """The figure C9's criterion reads: the defended worst case minus the base's PGD accuracy."""
    return {"gain": m["gain"]}


def c10(m: dict[str, Any]) -> dict[str, Any]:
    """The figures C10's criterion reads, worst over the judged configs: the lowest ASR and the
    largest clean-accuracy drop against the clean twin."""
    rows = m["configs"].values()
    return {"asr_min": min(r["asr"]["value"] for r in rows), "ca_drop_max": max(r["ca_drop"]["value"] for r in rows)}
