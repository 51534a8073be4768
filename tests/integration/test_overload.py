"""A short burst far above what the server can take: accepted requests succeed, the rest are
refused at once with the retryable "overloaded" error, nothing else fails, and the server
serves normally afterwards. The server's queues are cut to a few requests so that a burst the
test machine can send overflows them for sure (the policy itself is what config.py generates)."""
from __future__ import annotations

import random
import re

import pytest

from shoprank import config
from shoprank.data.requests import RequestPool
from shoprank.measure.loadtest.overload import burst
from shoprank.serving.client import RankClient

SMALL_QUEUES = {config.TOKENIZER_MODEL: 2, config.RANKER_MODEL: 1}


@pytest.fixture(scope="module")
def small_queue_server(tiny_model, onnx_int8, tmp_path_factory):
    from shoprank.serving.server import run_triton
    from shoprank.serving.triton.repository import build_repository

    work = tmp_path_factory.mktemp("overload")
    repo = build_repository(tiny_model, onnx_int8, work / "model_repository", target="python")
    for model, size in SMALL_QUEUES.items():
        path = repo / model / "config.pbtxt"
        text, count = re.subn(r"max_queue_size: \d+", f"max_queue_size: {size}", path.read_text())
        assert count == 1, f"{path} has no generated queue policy"
        path.write_text(text)
    with run_triton(repo, work_dir=work) as running:
        yield running.endpoints


def test_a_burst_is_shed_with_a_retryable_overloaded_error(small_queue_server, valid_pairs):
    pool = RequestPool(valid_pairs)
    result = burst(small_queue_server, pool, clients=16, seconds=4, size=(150, 200), top_k=5)
    assert result["other_failures"] == 0, result["failures"]
    assert result["accepted"] > 0
    assert result["refused_overloaded"] > 0, f"16 clients against queues of 1-2 were never refused: {result}"
    with RankClient(small_queue_server.grpc, "grpc") as client:
        query, texts = pool.draw(random.Random(0), 20)
        assert len(client.rank(query, texts, 5)) == 5
