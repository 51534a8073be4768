"""`make loadtest` / `make perf`: against the server running on the endpoints, or one started
from the model repository for the run (and stopped after it).

Profiles: profiles.py (targets.toml); a Locust run and its gate: locust.py; capacity steps:
capacity.py; perf_analyzer: perf.py; what the server did: server_stats.py. Reports land under
reports/loadtest/<run name>/.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ... import config
from ...serving.server import Endpoints, is_ready, run_triton
from .server_stats import find_server_pid

REPORTS = config.REPORTS_DIR / "loadtest"


@contextmanager
def ensure_server(endpoints: Endpoints, repo: Path = config.MODEL_REPOSITORY,
                  work_dir: Path | None = None, cache_bytes: int = 0) -> Iterator[int | None]:
    """Yields the server's pid (None if unknown). Starts tritonserver from `repo` on the
    endpoints' ports when nothing answers there (with a response cache of `cache_bytes`), and
    stops it afterwards."""
    if is_ready(endpoints):
        yield find_server_pid(endpoints.grpc_port)
        return
    repo = Path(repo)
    if not (repo / config.RANKER_MODEL / "config.pbtxt").exists():
        raise FileNotFoundError(f"no server on {endpoints.http} and no generated model repository in {repo}: "
                                "run `make repository` (or `make serve`) first")
    work_dir = Path(work_dir or config.RUN_DIR / "loadtest")
    print(f"no server on {endpoints.http}: starting tritonserver from {repo} (log {work_dir / 'tritonserver.log'})",
          flush=True)
    started = time.time()
    ports = (endpoints.http_port, endpoints.grpc_port, endpoints.metrics_port)
    with run_triton(repo, work_dir=work_dir, ports=ports, host=endpoints.host, cache_bytes=cache_bytes) as server:
        print(f"tritonserver ready in {time.time() - started:.1f} s (pid {server.pid})", flush=True)
        yield server.pid
    print("tritonserver stopped", flush=True)
