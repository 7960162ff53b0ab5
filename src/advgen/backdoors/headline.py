"""The backdoors area's headline figures (``dvc metrics``) for the backdoor_defense stage."""
from __future__ import annotations

from typing import Any


def backdoor(m: dict[str, Any]) -> dict[str, Any]:
    """A poisoned model's CA, ASR, RA and CA drop against the clean reference; each defense's
    ASR after it and DER."""
    u = m["undefended"]
    out: dict[str, Any] = {"ca": u["ca"]["value"], "asr": u["asr"]["value"], "ra": u["ra"]["value"],
                           "ca_drop": m["ca_drop"][m["reference"]]["value"]}
    for name, d in m.get("defenses", {}).items():
        out[name] = {"asr": d["asr"]["value"], "der": d["der"]}
    return out
