"""A real redis-server (Debian's package) for the duration of a block: the profile store's
production backend in tests, `make personalize` and the demo, as run_triton is for Triton.
Nothing is persisted (no RDB, no AOF): the profiles are rebuilt from the feedback log."""
from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .processes import stop_process, wait_until, work_folder
from .server import free_ports

REDIS_BINARY = "redis-server"


def redis_binary() -> str | None:
    """The redis-server on PATH (or Debian's /usr/bin), None when not installed."""
    return shutil.which(REDIS_BINARY) or (f"/usr/bin/{REDIS_BINARY}" if Path(f"/usr/bin/{REDIS_BINARY}").exists()
                                          else None)


def _answers_ping(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextmanager
def run_redis(work_dir: str | Path | None = None, host: str = "127.0.0.1",
              port: int | None = None) -> Iterator[str]:
    """Yields the server's URL (redis://host:port/0); the server is stopped when the block ends."""
    binary = redis_binary()
    if binary is None:
        raise FileNotFoundError("redis-server is not installed (Debian package redis-server; `make system`)")
    with work_folder(work_dir, "shoprank-redis-") as folder:
        port = port or free_ports(1)[0]
        log_path = folder / "redis.log"
        with open(log_path, "ab") as log:
            proc = subprocess.Popen([binary, "--bind", host, "--port", str(port), "--save", "", "--appendonly", "no",
                                     "--dir", str(folder), "--protected-mode", "yes"],
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_until(lambda: _answers_ping(host, port), "redis-server", proc, log_path, timeout=15)
            yield f"redis://{host}:{port}/0"
        finally:
            stop_process(proc)
