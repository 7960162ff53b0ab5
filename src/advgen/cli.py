"""The ``advgen`` command: ``advgen smoke`` runs the whole pipeline on the smoke profile
in a scratch copy of the repository; ``advgen c3`` prints the lecture's worked example."""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .claims import c3_worked_example


def venv_env() -> dict[str, str]:
    """The environment with this interpreter's folder first on PATH, so dvc's ``python`` is ours."""
    return {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}


def _run(cmd: list[str], cwd: Path) -> None:
    subprocess.run(cmd, cwd=cwd, check=True, env=venv_env())


def set_profile(repo: Path, profile: str) -> None:
    """Rewrite the top-level ``profile:`` line of params.yaml, keeping its comments."""
    params = repo / "params.yaml"
    text, n = re.subn(r"^profile:.*$", f"profile: {profile}", params.read_text(), count=1, flags=re.M)
    if n != 1:
        raise ValueError(f"{params}: expected one top-level 'profile:' line")
    params.write_text(text)


def copy_repo(src: Path, dst: Path) -> None:
    """Copy the files git tracks (and untracked, not ignored ones) from ``src`` into a fresh git repo ``dst``."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=src, check=True,
                            capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        if (src / rel).is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / rel, dst / rel)
    _run(["git", "init", "-q"], dst)
    if not (dst / ".dvc").exists():
        _run([sys.executable, "-m", "dvc", "init", "-q"], dst)


def smoke(src: Path, dst: Path) -> float:
    """Run ``dvc repro`` on the smoke profile in a copy of ``src`` at ``dst``; return wall seconds."""
    copy_repo(src, dst)
    set_profile(dst, "smoke")
    start = time.perf_counter()
    _run([sys.executable, "-m", "dvc", "repro", "-q"], dst)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="advgen")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_smoke = sub.add_parser("smoke", help="run the pipeline on the smoke profile in a scratch copy")
    p_smoke.add_argument("--dir", type=Path, help="where to make the copy (default: a new temp folder)")
    sub.add_parser("c3", help="print the lecture's logistic-regression example")
    args = parser.parse_args(argv)
    if args.cmd == "c3":
        print(json.dumps(c3_worked_example(), indent=2))
        return
    dst = args.dir or Path(tempfile.mkdtemp(prefix="advgen-smoke-"))
    if dst.exists() and any(dst.iterdir()):
        parser.error(f"--dir {dst} is not empty")
    dst.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    wall = smoke(Path.cwd(), dst)
    print(f"smoke profile: dvc repro took {wall:.1f} s; results in {dst}/reports/summary.md")


if __name__ == "__main__":
    main()
