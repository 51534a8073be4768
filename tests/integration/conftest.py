"""The one server fixture: the real tritonserver (shoprank.serving.server.run_triton, free
loopback ports, stopped however the session ends) serving the tiny model's INT8 repository."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def running_server(repository, build_dir):
    """The shared server (a RunningServer: endpoints, pid, log, admin key)."""
    from shoprank.serving.server import run_triton

    with run_triton(repository, work_dir=build_dir / "triton") as running:
        yield running


@pytest.fixture(scope="session")
def server(running_server):
    return running_server.endpoints


@pytest.fixture(params=["grpc", "http"])
def client(request, server):
    from shoprank.serving.client import RankClient

    url = server.grpc if request.param == "grpc" else server.http
    with RankClient(url, request.param) as c:
        yield c


@pytest.fixture(scope="module")
def own_server(request, tiny_model, onnx_int8, tmp_path_factory):
    """A server of the module's own over a repository of its own: for tests that publish and
    retire ranker versions (explicit model control), so the shared server stays as it was.
    Yields (repo, RunningServer): its admin key is what publishing needs. A module that sets
    OWN_SERVER_CACHE_BYTES gets Triton's response cache of that size (off otherwise)."""
    from shoprank.serving.server import run_triton
    from shoprank.serving.triton.repository import build_repository

    work = tmp_path_factory.mktemp("own-server")
    repo = build_repository(tiny_model, onnx_int8, work / "model_repository", target="python")
    cache_bytes = getattr(request.module, "OWN_SERVER_CACHE_BYTES", 0)
    with run_triton(repo, work_dir=work, cache_bytes=cache_bytes) as running:
        yield repo, running
