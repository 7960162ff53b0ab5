"""Scheduled reruns (``advgen rerun``): restore the cache from the DVC remote, reproduce a
profile, push, summarise against a reference revision, and fail on a regression.

The regression gate compares the workspace with the reference (by default the last tag):

- **sanity**: a check (``"checks": [{"name", "passed"}]`` in a metrics file) that fails now and
  did not fail in the reference;
- **verdict**: a claim of ``reports/claims.json`` whose verdict changed;
- **interval**: a figure that carries its own 95% interval (``{"accuracy" | "value" |
  "success_rate" | "rate": x, "ci95": [lo, hi]}``, or ``fid`` with ``fid_lo`` and ``fid_hi``)
  whose interval now is disjoint from its interval in the reference: what another machine, whose
  float kernels differ, must still agree with;
- **bytes**: a stage whose inputs are the reference's (every dependency's hash in ``dvc.lock``)
  and whose environment is the reference's (torch, CPU capability, threads, device, machine: the
  ``env`` of its cost file) but whose outputs are not byte-identical (cost files excepted: they
  hold timings; and ``persist`` caches, whose bytes depend on history). A stage with no recorded environment on either side is held to intervals only.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml

from .io import venv_env

VALUE_KEYS = ("accuracy", "value", "success_rate", "rate")  # the figure a "ci95" belongs to
COST_PREFIX = "reports/cost/"


class RerunError(Exception):
    """A step of the rerun failed (not a regression): exit code 2."""


@dataclass(frozen=True)
class Finding:
    kind: str  # sanity | verdict | interval | bytes
    where: str  # file (and key path) or stage
    detail: str

    def line(self) -> str:
        return f"- **{self.kind}** `{self.where}`: {self.detail}"


class Tree:
    """Files of one revision: the workspace (``rev=None``) or a git revision."""

    def __init__(self, root: Path, rev: str | None = None):
        self.root, self.rev = Path(root), rev

    def read(self, path: str) -> str | None:
        if self.rev is None:
            p = self.root / path
            return p.read_text() if p.is_file() else None
        proc = subprocess.run(["git", "show", f"{self.rev}:{path}"], cwd=self.root, capture_output=True, text=True)
        return proc.stdout if proc.returncode == 0 else None

    def json(self, path: str) -> Any:
        text = self.read(path)
        if text is None:
            return None
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise RerunError(f"{path} at {self.rev or 'the workspace'} is not valid JSON: {exc}") from exc

    def files(self, folder: str, suffix: str = ".json") -> list[str]:
        if self.rev is None:
            base = self.root / folder
            return sorted(str(p.relative_to(self.root)) for p in base.rglob(f"*{suffix}") if p.is_file())
        proc = subprocess.run(["git", "ls-tree", "-r", "--name-only", self.rev, "--", folder], cwd=self.root,
                              capture_output=True, text=True)
        if proc.returncode:
            raise RerunError(f"git cannot list {folder} at {self.rev}: {proc.stderr.strip()}")
        return sorted(p for p in proc.stdout.splitlines() if p.endswith(suffix))

    def lock(self) -> dict[str, dict]:
        text = self.read("dvc.lock")
        return (yaml.safe_load(text) or {}).get("stages", {}) if text else {}


Path_ = tuple  # a key path: dict keys (str) and list positions (int)


def _walk(obj: Any, path: Path_ = ()) -> Iterator[tuple[Path_, dict]]:
    """Every dict in ``obj`` with its key path (keys may hold dots: ``"0.05"``)."""
    if isinstance(obj, dict):
        yield path, obj
        for k, v in obj.items():
            yield from _walk(v, (*path, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _walk(v, (*path, i))


def show(path: Path_) -> str:
    """``("a", 0, "b")`` -> ``a[0].b``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def intervals(data: Any) -> dict[Path_, tuple[float, float, float]]:
    """``{key path: (value, lo, hi)}`` for every figure of ``data`` that carries a 95% interval."""
    out = {}
    for path, d in _walk(data):
        ci = d.get("ci95")
        if isinstance(ci, list) and len(ci) == 2 and all(map(_num, ci)):
            key = next((k for k in VALUE_KEYS if _num(d.get(k))), None)
            if key is not None:
                out[(*path, key)] = (float(d[key]), float(ci[0]), float(ci[1]))
        if all(_num(d.get(k)) for k in ("fid", "fid_lo", "fid_hi")):
            out[(*path, "fid")] = (float(d["fid"]), float(d["fid_lo"]), float(d["fid_hi"]))
    return out


def _get(data: Any, path: Path_) -> Any:
    """The value at ``path``, or None."""
    for part in path:
        if isinstance(part, int):
            data = data[part] if isinstance(data, list) and part < len(data) else None
        else:
            data = data.get(part) if isinstance(data, dict) else None
        if data is None:
            return None
    return data


def failed_checks(data: Any) -> set[str]:
    return {f"{show(path)}:{c.get('name')}" for path, d in _walk(data) for c in d.get("checks", []) or []
            if isinstance(c, dict) and c.get("passed") is False}


def check_sanity(ref: Tree, cur: Tree) -> list[Finding]:
    out = []
    for path in cur.files("reports"):
        if path.startswith(COST_PREFIX):
            continue
        new = failed_checks(cur.json(path)) - failed_checks(ref.json(path))
        out += [Finding("sanity", path, f"check {name.rsplit(':', 1)[1]} fails (it did not in the reference)")
                for name in sorted(new)]
    return out


def check_verdicts(ref: Tree, cur: Tree) -> list[Finding]:
    before = {c["id"]: c["verdict"] for c in ref.json("reports/claims.json") or []}
    after = {c["id"]: c["verdict"] for c in cur.json("reports/claims.json") or []}
    return [Finding("verdict", f"reports/claims.json:{cid}", f"{before[cid]} -> {after.get(cid, 'missing')}")
            for cid in sorted(before) if after.get(cid) != before[cid]]


def check_intervals(ref: Tree, cur: Tree) -> list[Finding]:
    """A figure regresses when its interval now and its interval in the reference are disjoint
    (a point outside the reference's interval alone is too weak a test: two runs on different
    CPUs draw the same figure twice, and with hundreds of figures some points fall outside by
    chance). A figure that lost its interval is held to the reference's interval."""
    out = []
    for path in ref.files("reports"):
        if path.startswith(COST_PREFIX):
            continue
        before, now = ref.json(path), cur.json(path)
        now_iv = intervals(now)
        for key, (value, lo, hi) in sorted(intervals(before).items(), key=lambda kv: show(kv[0])):
            got = _get(now, key)
            where = f"{path}:{show(key)}"
            if not _num(got):
                out.append(Finding("interval", where, f"missing now (reference {value:g})"))
                continue
            _, glo, ghi = now_iv.get(key, (got, got, got))
            if ghi < lo or glo > hi:
                out.append(Finding("interval", where, f"{got:g} [{glo:g}, {ghi:g}] does not overlap the reference's "
                                                      f"95% interval [{lo:g}, {hi:g}] (reference {value:g})"))
    return out


def _entries(items: list[dict] | None) -> dict[str, str | None]:
    return {e["path"]: e.get("md5") for e in items or []}


def _env(tree: Tree, outs: dict[str, str | None]) -> dict | None:
    cost = next((p for p in outs if p.startswith(COST_PREFIX)), None)
    data = tree.json(cost) if cost else None
    return data.get("env") if isinstance(data, dict) else None


def persist_outs(tree: Tree) -> set[str]:
    """Outputs declared ``persist: true`` in dvc.yaml (caches kept across runs, such as the
    scraper's shards): their bytes depend on history, not only on the stage's inputs."""
    spec = yaml.safe_load(tree.read("dvc.yaml") or "") or {}
    found = set()
    for stage in (spec.get("stages") or {}).values():
        for out in (stage.get("outs") or []) if isinstance(stage, dict) else []:
            if isinstance(out, dict):
                found |= {p for p, opts in out.items() if isinstance(opts, dict) and opts.get("persist")}
    return found


def check_bytes(ref: Tree, cur: Tree) -> tuple[list[Finding], list[str]]:
    """Findings, and the stages rebuilt by this run (their cost file, which holds timings, is
    new) and held byte for byte to the reference (same inputs, same recorded environment). A
    stage restored from the cache is identical by construction and not listed; its outputs are
    still checked."""
    before, after = ref.lock(), cur.lock()
    skip = persist_outs(cur)
    out, compared = [], []
    for stage in sorted(set(before) & set(after)):
        if _entries(before[stage].get("deps")) != _entries(after[stage].get("deps")):
            continue  # other inputs: other outputs are expected
        outs_b, outs_a = _entries(before[stage].get("outs")), _entries(after[stage].get("outs"))
        env_b, env_a = _env(ref, outs_b), _env(cur, outs_a)
        if env_b is None or env_b != env_a:
            continue
        differ = [p for p in sorted(set(outs_b) | set(outs_a))
                  if not p.startswith(COST_PREFIX) and p not in skip and outs_b.get(p) != outs_a.get(p)]
        out += [Finding("bytes", f"{stage}:{p}", "not byte-identical to the reference although its inputs and "
                        "environment are the same") for p in differ]
        rebuilt = any(p.startswith(COST_PREFIX) and outs_b.get(p) != outs_a.get(p) for p in outs_a)
        if rebuilt and not differ:
            compared.append(stage)
    return out, compared


def gate(ref: Tree, cur: Tree) -> tuple[list[Finding], list[str]]:
    """Every regression of ``cur`` against ``ref``, and the stages held to byte identity."""
    found = check_sanity(ref, cur) + check_verdicts(ref, cur) + check_intervals(ref, cur)
    bytes_found, compared = check_bytes(ref, cur)
    return found + bytes_found, compared


def profile_of(tree: Tree) -> str | None:
    text = tree.read("params.yaml")
    return (yaml.safe_load(text) or {}).get("profile") if text else None


def last_tag(root: Path) -> str:
    proc = subprocess.run(["git", "describe", "--tags", "--abbrev=0"], cwd=root, capture_output=True, text=True)
    if proc.returncode:
        raise RerunError("no reference: the repository has no tag (tag a release, or pass --reference REV)")
    return proc.stdout.strip()


def summary(reference: str, profile: str, findings: list[Finding], compared: list[str], table: str) -> str:
    head = [f"# Benchmark rerun: profile `{profile}` against `{reference}`", ""]
    if findings:
        head += [f"**{len(findings)} regression(s)**:", "", *(f.line() for f in findings), ""]
    else:
        head += ["No regression: sanity checks, verdicts and intervals agree with the reference.", ""]
    head += [f"Rebuilt by this run and byte-identical to the reference (same inputs, same environment): "
             f"{len(compared)} stage(s)" + (f" ({', '.join(compared)})" if compared else "") + ".", "",
             "## Metrics against the reference", "",
             table]
    return "\n".join(head)


Runner = Callable[[list[str]], None]


def dvc_runner(root: Path) -> Runner:
    def run(args: list[str]) -> None:
        print("$ dvc " + " ".join(args), flush=True)
        # venv_env: the stages' `python` must be this interpreter (advgen, torch), not PATH's first
        proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=root, env=venv_env())
        if proc.returncode:
            raise RerunError(f"`dvc {' '.join(args)}` failed with exit code {proc.returncode}")
    return run


def rerun(root: Path, profile: str, reference: str | None = None, remote: str | None = None, pull: bool = True,
          push: bool = True, force: bool = False, single_item: bool = False, targets: list[str] | None = None,
          summary_path: Path | None = None, dvc: Runner | None = None) -> tuple[int, str]:
    """Run the scheduled rerun in ``root``; returns (exit code: 0 clean, 1 regression; summary).
    Raises :class:`RerunError` when a step fails."""
    from .compare import CompareError, compare
    from .repo import set_profile

    root = Path(root)
    dvc = dvc or dvc_runner(root)
    reference = reference or last_tag(root)
    ref = Tree(root, reference)
    if ref.read("params.yaml") is None:
        raise RerunError(f"reference {reference!r} is not a revision of this repository")
    ref_profile = profile_of(ref)
    if ref_profile != profile:
        raise RerunError(f"reference {reference} was run on profile {ref_profile!r}, this rerun on {profile!r}: "
                         "pass a reference of the same profile")
    remote_args = ["-r", remote] if remote else []
    if pull:
        # --allow-missing: a first run against an empty remote restores nothing and goes on
        dvc(["pull", "--run-cache", "--allow-missing", *remote_args])
    if profile_of(Tree(root)) != profile:
        set_profile(root, profile)
    if single_item:  # -s skips the params check, which a stage needs current: run it first
        dvc(["repro", "-s", "validate"])
    dvc(["repro", *(["-f"] if force else []), *(["-s"] if single_item else []), *(targets or [])])
    if push:
        dvc(["push", "--run-cache", *remote_args])
    findings, compared = gate(ref, Tree(root))
    try:
        table = compare([reference, "workspace"], markdown=True, cwd=root)
    except CompareError as exc:
        table = f"(advgen compare failed: {exc})"
    text = summary(reference, profile, findings, compared, table)
    target = summary_path or (Path(os.environ["GITHUB_STEP_SUMMARY"]) if os.environ.get("GITHUB_STEP_SUMMARY") else None)
    if target is not None:
        with open(target, "a") as f:
            f.write(text + "\n")
    return (1 if findings else 0), text
