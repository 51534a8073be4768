"""The child processes the project runs beside its code (tritonserver, nginx, Prometheus): one
way to give each a work folder, wait until it answers, read its log's tail and stop it."""
from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .. import config


@contextmanager
def work_folder(folder: str | Path | None, prefix: str) -> Iterator[Path]:
    """`folder` (made if missing, kept afterwards), or a temporary one removed afterwards."""
    if folder is not None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        yield Path(folder).resolve()
        return
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        yield Path(tmp)


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def answers_ok(url: str, timeout: float = 2) -> bool:
    """Whether a GET of `url` answers 200 (a readiness endpoint); False for any error."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            return reply.status == 200
    except OSError:
        return False


def with_project_on_path(env: dict) -> dict:
    """`env` with the checkout first on PYTHONPATH: processes we start (the Triton stubs, the
    supervisor) import shoprank from this checkout."""
    path = os.pathsep.join(filter(None, [str(config.PROJECT_ROOT), env.get("PYTHONPATH")]))
    return {**env, "PYTHONPATH": path}


def wait_until(ready: Callable[[], bool], what: str, proc: subprocess.Popen | None, log_path: Path,
               timeout: float, interval: float = 0.25) -> None:
    """Poll `ready` until it holds; raise with the log's tail if `proc` exits or time runs out."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} while starting; log:\n{tail(log_path)}")
        if ready():
            return
        time.sleep(interval)
    raise TimeoutError(f"{what} not ready after {timeout:.0f} s; log:\n{tail(log_path)}")


def _kill_group_or_process(pid: int) -> None:
    try:
        if os.getpgid(pid) == pid:  # started in a session of its own: take its children with it
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    except OSError:
        pass  # gone meanwhile


def stop_process(proc: subprocess.Popen, timeout: float = 20) -> None:
    """SIGTERM (the process finishes what it is doing), then SIGKILL if it hangs."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _kill_group_or_process(proc.pid)
            proc.wait()


def pid_alive(pid: int) -> bool:
    """Whether `pid` runs: our own exited child is reaped and counts as gone; a process started
    by an earlier command (`make serve`'s) is checked with signal 0."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def terminate_pid(pid: int, timeout: float = 20) -> None:
    """stop_process for a process known only by its pid (a pid file's)."""
    if not pid_alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.time() + timeout
    while pid_alive(pid) and time.time() < deadline:
        time.sleep(0.25)
    if pid_alive(pid):
        _kill_group_or_process(pid)


def pid_in_file(pid_file: Path, program: str | None = None) -> int | None:
    """The pid a pid file names while that process runs; with `program`, only while its command
    is that program (a pid reused by another process after a crash does not count)."""
    try:
        pid = int(Path(pid_file).read_text())
        if program is not None:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
            if Path(command.decode(errors="replace")).name != program:
                return None
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def stop_pid_file(pid_file: Path, program: str | None = None, timeout: float = 20) -> int | None:
    """Stop the process a pid file names (when it runs) and remove the file: the pid stopped, or
    None when nothing ran."""
    pid = pid_in_file(pid_file, program)
    if pid is not None:
        terminate_pid(pid, timeout)
    Path(pid_file).unlink(missing_ok=True)
    return pid
