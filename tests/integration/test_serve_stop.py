"""`make serve` / `make stop` as a user runs them (the `shoprank` command in a run folder of its
own, on free ports): the server comes up with its supervisor and gateway, and stop leaves no
process, pid file, key or shared-memory region behind, and keeps the logs."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from shoprank import config
from shoprank.serving.client import RankClient
from shoprank.serving.gateway import nginx_binary
from shoprank.serving.server import Endpoints, free_ports
from shoprank.serving.supervisor import SHM_DIR, stubs


def _shoprank(args: list[str], env: dict) -> subprocess.CompletedProcess:
    run = subprocess.run([sys.executable, "-m", "shoprank.cli", *args], env=env, capture_output=True, text=True,
                         timeout=300, cwd=config.PROJECT_ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    return run


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


@pytest.mark.skipif(nginx_binary() is None, reason="nginx is not installed (make system installs it)")
def test_serve_then_stop_leaves_nothing_but_the_logs(repository, valid_pairs):
    # Not under pytest's tmp_path: run as root, nginx's workers (user nobody) must pass through
    # the run folder's parents (shoprank.serving.gateway).
    run_dir = Path(tempfile.mkdtemp(prefix="shoprank-serve-stop-"))
    run_dir.chmod(0o711)
    try:
        _serve_then_stop(repository, run_dir, valid_pairs)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def _serve_then_stop(repository, run_dir, valid_pairs):
    http, grpc, metrics, door_http, door_grpc = free_ports(5)
    env = dict(os.environ, SHOPRANK_RUN_DIR=str(run_dir))
    ports = ["--repo", str(repository), "--http-port", str(http), "--grpc-port", str(grpc),
             "--metrics-port", str(metrics)]
    doors = ["--gateway-http-port", str(door_http), "--gateway-grpc-port", str(door_grpc)]
    try:
        _shoprank(["serve", *ports, *doors], env)
        pids = {name: int((run_dir / f"{name}.pid").read_text())
                for name in ("tritonserver", "supervisor", "gateway")}
        regions = [SHM_DIR / s.shm_region for s in stubs(pids["tritonserver"])]
        assert all(_alive(pid) for pid in pids.values()) and regions and all(r.exists() for r in regions)
        public = Endpoints("127.0.0.1", door_http, door_grpc, metrics)
        texts = valid_pairs["text"].tolist()[:10]
        for url, protocol in ((public.grpc, "grpc"), (public.http, "http")):
            with RankClient(url, protocol) as client:
                assert len(client.rank("cordless drill", texts, 3)) == 3
        assert "ready; gateway answering" in _shoprank(["status", *ports[2:], *doors], env).stdout
    finally:
        _shoprank(["stop"], env)
    assert not any(_alive(pid) for pid in pids.values()), "a process outlived make stop"
    assert not [r for r in regions if r.exists()], "shared memory left behind"
    left = sorted(p.name for p in run_dir.iterdir() if p.suffix in (".pid", ".key"))
    assert not left, f"left behind: {left}"
    assert (run_dir / "tritonserver.log").stat().st_size > 0 and (run_dir / "gateway.log").exists()
