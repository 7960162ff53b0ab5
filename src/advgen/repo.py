"""Edits to a checkout that commands share (``advgen smoke``, ``advgen rerun``)."""
from __future__ import annotations

import re
from pathlib import Path


def set_profile(repo: Path, profile: str) -> None:
    """Rewrite the top-level ``profile:`` line of params.yaml, keeping its comments."""
    params = repo / "params.yaml"
    text, n = re.subn(r"^profile:.*$", f"profile: {profile}", params.read_text(), count=1, flags=re.M)
    if n != 1:
        raise ValueError(f"{params}: expected one top-level 'profile:' line")
    params.write_text(text)
