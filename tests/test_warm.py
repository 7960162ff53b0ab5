"""Stage commands run through advgen.warm: a child forked from a server that imported torch."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

from advgen.io import venv_env
from advgen.warm import socket_path

SCRIPT = """
import os, sys
import torch
print("argv", sys.argv[1:], "cwd", os.path.basename(os.getcwd()), "env", os.environ.get("STAGE_VALUE"))
print("pid", os.getpid(), "parent", os.getppid())
if sys.argv[1] == "fail":
    raise RuntimeError("boom")
if sys.argv[1] == "wait":
    try:
        print("waiting", flush=True)
        import time; time.sleep(60)
    finally:
        print("cleaned up", flush=True)  # a finally block runs on Ctrl-C, as in a plain interpreter
sys.exit(int(sys.argv[1]))
"""


def _run(tmp_path: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "advgen.warm", "script.py", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)


def test_a_script_runs_in_a_forked_child_with_its_args_cwd_env_and_exit_status(tmp_path):
    (tmp_path / "script.py").write_text(SCRIPT)
    env = {**venv_env(), "ADVGEN_WARM_KEY": uuid.uuid4().hex, "STAGE_VALUE": "first"}
    first = _run(tmp_path, env, "0")  # no server yet: runs the plain way and starts one
    assert first.returncode == 0 and f"argv ['0'] cwd {tmp_path.name} env first" in first.stdout, first.stderr
    path = socket_path(env)
    for _ in range(300):
        if path.exists():
            break
        time.sleep(0.1)
    assert path.exists()
    server_pid = None
    for value, code in (("second", "0"), ("third", "3")):
        proc = _run(tmp_path, {**env, "STAGE_VALUE": value}, code)
        assert proc.returncode == int(code), proc.stderr
        assert f"argv ['{code}'] cwd {tmp_path.name} env {value}" in proc.stdout
        parent = int(proc.stdout.split("parent ")[1].split()[0])
        assert server_pid in (None, parent) and parent != os.getpid()  # forked by the same server
        server_pid = parent
    failed = _run(tmp_path, env, "fail")
    assert failed.returncode == 1 and "RuntimeError: boom" in failed.stderr
    # Ctrl-C of the command reaches the stage as KeyboardInterrupt: its finally blocks run
    proc = subprocess.Popen([sys.executable, "-m", "advgen.warm", "script.py", "wait"], cwd=tmp_path,
                            env={**env, "STAGE_VALUE": "x"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert "waiting" in [proc.stdout.readline() for _ in range(3)][2]
    proc.send_signal(2)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "cleaned up" in out and "KeyboardInterrupt" in err, (out, err)
    plain = _run(tmp_path, {**env, "ADVGEN_WARM": "0"}, "4")
    assert plain.returncode == 4 and f"parent {server_pid}" not in plain.stdout
    os.kill(server_pid, 15)
