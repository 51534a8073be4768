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


class EngineProbe:
    """One request whose served scores tell which engine answered it (version 1 of own_server
    serves INT8, the tests publish FP32 as version 2): the group of the validation pairs, among
    the first 20 with at least 4 texts, where the two engines' scores differ most."""

    def __init__(self, model_dir, engines: dict, valid_pairs):
        import numpy as np

        from shoprank.data.split import query_groups
        from shoprank.model_card import model_max_length
        from shoprank.serving.engine import OrtEngine, sigmoid
        from shoprank.serving.tokenizer import PairEncoder

        encoder = PairEncoder.from_dir(model_dir, max_length=model_max_length(model_dir))
        score = {name: (lambda e: lambda q, t: sigmoid(e.logits(encoder.encode(q, t))))(OrtEngine(path))
                 for name, path in engines.items()}
        groups = [(q, valid_pairs["text"].to_numpy()[idx].tolist()) for q, idx in query_groups(valid_pairs)
                  if len(idx) >= 4]
        spread = lambda g: np.ptp([s(*g) for s in score.values()], axis=0).max()  # noqa: E731
        self.query, self.texts = max(groups[:20], key=spread)
        self.expected = {name: s(self.query, self.texts) for name, s in score.items()}
        assert spread((self.query, self.texts)) > 1e-4, "engines too similar to tell apart"

    def engine_of(self, indices, scores) -> str:
        """The engine whose scores these are (within 1e-5), or "other"."""
        import numpy as np

        served = np.zeros(len(self.texts), np.float32)
        served[indices] = scores
        return next((name for name, want in self.expected.items() if np.abs(served - want).max() <= 1e-5), "other")


@pytest.fixture(scope="module")
def engine_probe(tiny_model, onnx_int8, onnx_fp32, valid_pairs) -> EngineProbe:
    return EngineProbe(tiny_model, {"int8": onnx_int8, "fp32": onnx_fp32}, valid_pairs)
