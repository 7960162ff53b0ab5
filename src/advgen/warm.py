"""Run a stage script in a fresh process forked from a warm one: ``python -m advgen.warm SCRIPT ARGS``.

Most of a short stage's cost is its interpreter importing torch (about 1.2 s of the 2.6 s a
smoke-profile stage spends outside its body). ``dvc.yaml``'s commands therefore go through this
module: the first stage of a run starts a small server that imports torch and numpy once and
then waits on a UNIX socket; every later stage command connects, hands over its working folder,
environment, arguments and its own stdin/stdout/stderr, and the server forks a child that runs
the script as ``__main__`` and reports its exit status. Each stage still runs in a process of
its own (a fork, so nothing of one stage survives into the next); only torch's import is shared.
The server imports no advgen module besides this one, so a code change between two stages is seen.

The server serves one interpreter, ``PYTHONPATH`` and thread settings (the socket's name hashes
them), exits after :data:`IDLE_S` seconds without a request, and never holds the caller's
output open (it is detached from the start). Whenever it cannot be used (no socket yet, a
refused connection, ``ADVGEN_WARM=0``), the stage runs the ordinary way: ``python SCRIPT ARGS``.
A child killed by a signal, or one that crashes without reporting, fails the stage.
"""
from __future__ import annotations

import array
import hashlib
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

IDLE_S = 30.0  # a long stage body outlasts it: the next stage then starts a new server (1.2 s once)
#: Environment variables that change how torch sets itself up at import: a server only serves
#: callers whose values match its own.
IMPORT_ENV = ("PYTHONPATH", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "CUDA_VISIBLE_DEVICES",
              "LD_LIBRARY_PATH", "LD_PRELOAD", "PYTHONHASHSEED", "PYTHONWARNINGS", "PYTHONIOENCODING", "LANG", "LC_ALL",
              "ADVGEN_WARM_KEY")  # the last: a private server (tests)
PRELOAD = ("numpy", "torch", "torch.nn", "torch.nn.functional", "safetensors.torch")


def socket_path(env: dict[str, str] | None = None) -> Path:
    """The server's socket for this interpreter and import environment, in a folder of this
    user's only (mode 0700)."""
    env = os.environ if env is None else env
    key = json.dumps([sys.executable, *(env.get(k, "") for k in IMPORT_ENV)])
    folder = Path(tempfile.gettempdir()) / f"advgen-warm-{os.getuid()}"
    return folder / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.sock"


def _private(folder: Path) -> bool:
    """Make ``folder`` (mode 0700) if needed; True if it is this user's and nobody else's."""
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        st = folder.lstat()
    except OSError:
        return False
    return st.st_uid == os.getuid() and stat.S_ISDIR(st.st_mode) and not st.st_mode & 0o077


# ----------------------------------------------------------------------------- client


def _run_plain(argv: list[str]) -> None:
    os.execv(sys.executable, [sys.executable, *argv])


def _start_server(path: Path) -> None:
    subprocess.Popen([sys.executable, "-m", "advgen.warm", "--serve", str(path)], stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)


def _recv_line(conn: socket.socket) -> str | None:
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(1)
        if not chunk:
            return None
        data += chunk
    return data.decode()


def run(argv: list[str]) -> int:
    """Run ``argv`` (script and arguments) in a child of the warm server; return its exit status.
    Falls back to running it directly (this process becomes it) when no server can be used."""
    if os.environ.get("ADVGEN_WARM") == "0":
        _run_plain(argv)
    path = socket_path()
    if not _private(path.parent):
        _run_plain(argv)
    # Signals that arrive before the child is known are delivered once it is: its process group
    # (the stage and anything it starts, e.g. torchrun) gets what this command gets.
    pending: list[int] = []
    child: list[int] = []

    def forward(sig: int, _frame) -> None:
        if not child:
            pending.append(sig)
            return
        try:
            os.killpg(child[0], sig)
        except ProcessLookupError:
            pass

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, forward)
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(str(path))
    except OSError as exc:  # no server (or a stale socket of a killed one): start one for the next stage
        conn.close()
        if isinstance(exc, ConnectionRefusedError):
            path.unlink(missing_ok=True)
        _start_server(path)
        _run_plain(argv)
    try:
        request = json.dumps({"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ),
                              "umask": _umask()}).encode() + b"\n"
        conn.sendmsg([request], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [0, 1, 2]))])
        pid_line = _recv_line(conn)  # the child's own first words: it has started
    except OSError:  # the server went away (idle) while this command waited
        pid_line = None
    if pid_line is None:  # no server, or it went away before forking: run the stage here
        conn.close()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL if sig != signal.SIGINT else signal.default_int_handler)
        if pending:
            return 128 + pending[0]
        _run_plain(argv)
    child.append(int(pid_line))
    for sig in pending:
        forward(sig, None)
    try:
        status = _recv_line(conn)
    except OSError:
        status = None
    return 1 if status is None else int(status)  # no status: the child died without reporting


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ----------------------------------------------------------------------------- server


def _child(conn: socket.socket, request: dict, fds: list[int]) -> None:
    """In the forked child: become the stage process, run its script as ``__main__``, report
    its exit status and exit. Never returns."""
    import atexit
    import runpy
    import threading
    import traceback

    code = 1
    try:
        os.setpgid(0, 0)  # its own group: the caller's signals reach the stage and its subprocesses
        signal.signal(signal.SIGINT, signal.default_int_handler)  # KeyboardInterrupt, as in python
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        conn.sendall(f"{os.getpid()}\n".encode())
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.umask(request["umask"])
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.stdin = open(0, "r", closefd=False)  # noqa: SIM115
        sys.stdout = open(1, "w", buffering=1 if os.isatty(1) else -1, closefd=False)  # noqa: SIM115
        if os.environ.get("PYTHONUNBUFFERED"):
            sys.stdout.reconfigure(write_through=True)
        sys.stderr = open(2, "w", buffering=1, errors="backslashreplace", closefd=False)  # noqa: SIM115
        # The caller gone (killed): stop the stage and what it started.
        threading.Thread(target=_watch, args=(conn,), daemon=True).start()
        script = os.path.abspath(request["argv"][0])
        sys.argv = [request["argv"][0], *request["argv"][1:]]
        sys.path[0] = os.path.dirname(script)
        try:
            runpy.run_path(script, run_name="__main__")
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            if exc.code is not None and not isinstance(exc.code, int):
                print(exc.code, file=sys.stderr)
        except KeyboardInterrupt:
            traceback.print_exc()
            code = 128 + signal.SIGINT
        except BaseException:  # noqa: BLE001 -- report it as the interpreter would, then fail
            traceback.print_exc()
            code = 1
        threading._shutdown()  # join non-daemon threads, as the interpreter does at exit
        atexit._run_exitfuncs()
    except BaseException:  # noqa: BLE001 -- the setup failed: say so on the stage's stderr
        try:
            traceback.print_exc()
        except BaseException:  # noqa: BLE001
            pass
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:  # noqa: BLE001
                pass
        try:
            conn.sendall(f"{code}\n".encode())
        except BaseException:  # noqa: BLE001
            pass
        os._exit(code)


def _watch(conn: socket.socket) -> None:
    """Block until the caller's end of ``conn`` closes early; then end the stage's process group."""
    try:
        conn.recv(1)
    except OSError:
        pass
    os.killpg(0, signal.SIGTERM)


def serve(path: Path) -> None:
    """Import torch, then fork one child per request until idle for :data:`IDLE_S` seconds."""
    import importlib

    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    tmp = path.with_name(f"{path.name}.{os.getpid()}")
    server.bind(str(tmp))
    os.chmod(tmp, 0o600)
    inode = os.stat(tmp).st_ino
    server.listen(16)  # bound before torch: a failed bind costs no import
    os.replace(tmp, path)  # atomically, once listening: a second server started at the same time takes over
    for name in PRELOAD:  # callers wait in the backlog meanwhile
        importlib.import_module(name)
    server.settimeout(IDLE_S)
    try:
        while True:
            try:
                conn, _ = server.accept()
            except TimeoutError:
                break
            with conn:
                conn.settimeout(10)
                try:
                    msg, ancdata, _, _ = conn.recvmsg(1 << 20, socket.CMSG_SPACE(3 * array.array("i").itemsize))
                except OSError:
                    continue
                fds = array.array("i")
                for level, kind, data in ancdata:
                    if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                        fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
                while not msg.endswith(b"\n"):
                    more = conn.recv(1 << 20)
                    if not more:
                        break
                    msg += more
                if len(fds) != 3 or not msg.endswith(b"\n"):
                    for fd in fds:
                        os.close(fd)
                    continue
                if os.fork() == 0:
                    try:  # the child never returns into this loop, whatever happens
                        server.close()
                        conn.settimeout(None)
                        _child(conn, json.loads(msg), list(fds))
                    finally:
                        os._exit(1)
                for fd in fds:
                    os.close(fd)
    finally:
        try:
            if os.stat(path).st_ino == inode:  # not replaced by a newer server
                os.unlink(path)
        except OSError:
            pass
        server.close()


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        serve(Path(sys.argv[2]))
        return
    if len(sys.argv) < 2:
        sys.exit("usage: python -m advgen.warm SCRIPT [ARGS...]")
    sys.exit(run(sys.argv[1:]))


if __name__ == "__main__":
    main()
