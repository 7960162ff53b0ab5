"""The scrape area's headline figures (``dvc metrics``), kept few (the whole of ``dvc metrics
show`` stays under 450 values): per policy, the poisoned images that entered the scraped sets;
per scraped set, the ASR of the cnn trained on it, beside the clean twin's. Everything else
(status counts, CA, intervals, drift) is in reports/scrape/ and reports/split_view/."""
from __future__ import annotations

from typing import Any


def scrape(summary: dict[str, dict]) -> dict[str, Any]:
    """Per policy: poisoned images that entered its scraped sets, over every purchase."""
    out: dict[str, int] = {}
    for s in summary.values():
        out[s["policy"]] = out.get(s["policy"], 0) + s["poison_entered"]
    return {"poison_entered": out}


def split_view(m: dict[str, Any]) -> dict[str, Any]:
    """Per scraped set, the ASR of its cnn; the clean twin's (trained on the published images) on the same images."""
    return {"asr": {"clean": m["clean"]["asr"]["value"], **{n: s["asr"]["value"] for n, s in m["sets"].items()}}}
