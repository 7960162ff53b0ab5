"""Stage validate: check every key of params.yaml against every area's schema, and write the
params each stage reads (``reports/params/<stage>.json``, see :mod:`advgen.params_digest`).

DVC runs it on every ``dvc repro`` (``always_changed``), even when every other stage is
cached, and every stage depends on its own file in its output, so a typo anywhere in
params.yaml (``train.lrr``) fails the run with its full key instead of being silently ignored,
and a stage reruns exactly when a value it reads changes. A file changes only with its values,
so an unrelated edit makes nothing stale. No torch: about a second, most of it DVC reading
dvc.yaml.
"""
from __future__ import annotations

import sys

from advgen.areas import validate_params  # every area's sections and cross-checks
from advgen.config import ConfigError, load_params
from advgen.params_digest import ROOT, stage_keys, write_digests


def main() -> None:
    try:
        params = load_params()
        validate_params(params)
        write_digests(params, stage_keys("."), ROOT)
    except ConfigError as exc:
        print(f"[validate] {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
