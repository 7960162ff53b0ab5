"""Stage validate: check every key of params.yaml against every stage's schema.

DVC runs it on every ``dvc repro`` (``always_changed``), even when every other stage is
cached, and every stage depends on its output, so a typo anywhere in params.yaml (``train.lrr``)
fails the run with its full key instead of being silently ignored. The output never changes
while the file is valid, so it makes nothing stale. No torch: it takes a fraction of a second.
"""
from __future__ import annotations

import sys

from advgen.config import ConfigError, load_params
from advgen.io import atomic_write_text
from advgen.schema import validate_params

OUTPUT = "reports/params.ok"


def main() -> None:
    try:
        validate_params(load_params())
    except ConfigError as exc:
        print(f"[validate] {exc}", file=sys.stderr)
        sys.exit(2)
    atomic_write_text(OUTPUT, "params.yaml: every key is known and valid\n")


if __name__ == "__main__":
    main()
