"""``advgen --help`` says what the tool is and lists every registered subcommand with its one-line
help, both through ``main`` and through the installed ``advgen`` console script."""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from advgen.cli import COMMANDS, DESCRIPTION, build_parser, main


def _registered() -> dict[str, str]:
    """{name: help} of the subparsers the parser really has (not only what COMMANDS claims)."""
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    helps = {a.dest: a.help for a in sub._choices_actions}
    return {name: helps.get(name) for name in sub.choices}


def _check_help(text: str) -> None:
    flat = " ".join(text.split())
    assert " ".join(DESCRIPTION.split()) in flat
    assert "adversarial robustness and generative models" in flat
    registered = _registered()
    assert list(registered) == [c.name for c in COMMANDS]
    assert {"smoke", "c3", "compare"} <= set(registered)
    listed = {}
    for line in text.splitlines():
        m = re.match(r"^\s+(\S+)\s{2,}(\S.*)$", line)
        if m and m.group(1) in registered:
            listed[m.group(1)] = m.group(2).strip()
    for name, help_ in registered.items():
        assert help_ and help_.strip(), f"subcommand {name} has no help"
        assert name in listed, f"advgen --help does not list {name}"
        assert help_.startswith(listed[name]), (name, listed[name])  # the line (may wrap when narrow)
    assert "{" not in text.splitlines()[0]  # usage reads "COMMAND ...", not a brace list


def test_main_help_lists_every_subcommand(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    _check_help(capsys.readouterr().out)


def test_console_script_help_lists_every_subcommand():
    script = Path(sys.executable).with_name("advgen")
    assert script.exists(), "the advgen console script is not installed in this venv (pip install -e .)"
    proc = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, "COLUMNS": "100"})
    assert proc.returncode == 0, proc.stderr
    _check_help(proc.stdout)


@pytest.mark.parametrize("name", [c.name for c in COMMANDS])
def test_each_subcommand_has_its_own_help(name, capsys):
    with pytest.raises(SystemExit) as exc:
        main([name, "--help"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: advgen {name}")


def test_no_subcommand_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2
    assert "COMMAND" in capsys.readouterr().err
