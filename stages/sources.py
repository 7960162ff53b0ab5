"""Stage sources: the digest of each stage script's source files (``reports/sources/<script>.json``).

Every other stage depends on its script's digest instead of listing the source files it
imports (see :mod:`advgen.sources`). Runs without torch, in well under a second.
"""
from __future__ import annotations

from pathlib import Path

from advgen.sources import write_digests

if __name__ == "__main__":
    write_digests(Path.cwd(), Path("reports/sources"))
