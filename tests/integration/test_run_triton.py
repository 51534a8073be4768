"""The one way code and tests run tritonserver (shoprank.serving.server.run_triton): ready when
the block starts, stopped however the block ends, and a server that cannot start says why."""
from __future__ import annotations

import shutil

import psutil
import pytest

from shoprank import config
from shoprank.serving.server import is_ready, run_triton


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_the_server_is_stopped_when_the_block_raises(repository, tmp_path):
    with pytest.raises(RuntimeError, match="the caller's own failure"), \
            run_triton(repository, work_dir=tmp_path / "w") as server:
        assert is_ready(server.endpoints)
        pid, endpoints = server.pid, server.endpoints
        raise RuntimeError("the caller's own failure")
    assert _gone(pid) and not is_ready(endpoints)
    assert (tmp_path / "w" / "tritonserver.log").stat().st_size > 0


def test_a_repository_that_cannot_load_fails_with_the_log_and_leaves_no_server(repository, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(repository, broken)
    (broken / config.RANKER_MODEL / "config.pbtxt").write_text("this is not a model config {")
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    with pytest.raises(RuntimeError, match="tritonserver exited .* while starting; log:"), run_triton(broken):
        pytest.fail("the block must not run for a server that never got ready")
    left = [p for p in psutil.Process().children(recursive=True) if p.pid not in before and p.is_running()
            and p.status() != psutil.STATUS_ZOMBIE]
    assert not left, f"processes left behind: {left}"
