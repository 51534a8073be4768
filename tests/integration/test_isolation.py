"""Integration: the served INT8 ranker gives a request the same scores and the same order whether
it arrives alone or among concurrent requests that Triton's dynamic batcher merges into one
engine call with it (per-row activation scales: shoprank.convert.per_row)."""
from __future__ import annotations

import concurrent.futures as futures
import random
import time

import numpy as np

from shoprank.data.requests import RequestPool
from shoprank.errors import RankError
from shoprank.measure.loadtest.overload import is_overloaded
from shoprank.serving.client import RankClient, ranker_counts

CLIENTS = 8
ROUNDS = 3         # every client sends every request once per round: a few seconds of load
SCORE_TOL = 1e-5
RETRIES = 5


def _requests(valid_pairs) -> list[tuple[str, list[str]]]:
    """Distinct requests of two sizes, so merged calls hold rows of other requests and lengths."""
    pool = RequestPool(valid_pairs)
    return [(r.query, list(r.texts)) for size, count in ((6, 6), (25, 6)) for r in pool.distinct(size, count)]


def _ranker_counts(url: str) -> tuple[int, int]:
    """(requests, engine executions) the ranker has served so far."""
    # inference_count counts rows (batch elements); the success count counts requests.
    counts = ranker_counts(url)
    return counts["success"], counts["executions"]


def _answer(client: RankClient, query: str, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """One ranking; a request the server sheds (its bounded queues refuse overload at once, a
    retryable error) is sent again, so a slow machine cannot fail the test."""
    for attempt in range(RETRIES):
        try:
            return client.infer_raw(query, texts, 0)
        except RankError as exc:
            if attempt == RETRIES - 1 or not is_overloaded(exc):
                raise
            time.sleep(0.2 * (attempt + 1))


def _client_run(url: str, requests, seed: int) -> list[tuple[int, np.ndarray, np.ndarray]]:
    order = list(range(len(requests))) * ROUNDS
    random.Random(seed).shuffle(order)
    with RankClient(url, "grpc") as client:
        return [(i, *_answer(client, *requests[i])) for i in order]


def test_concurrent_requests_get_the_scores_and_order_they_get_alone(server, valid_pairs):
    requests = _requests(valid_pairs)
    with RankClient(server.grpc, "grpc") as client:
        alone = [client.infer_raw(query, texts, 0) for query, texts in requests]
    served_before, runs_before = _ranker_counts(server.grpc)
    with futures.ThreadPoolExecutor(CLIENTS) as pool:
        answers = [a for run in pool.map(_client_run, [server.grpc] * CLIENTS, [requests] * CLIENTS, range(CLIENTS))
                   for a in run]
    served, runs = (a - b for a, b in zip(_ranker_counts(server.grpc), (served_before, runs_before)))
    assert len(answers) == CLIENTS * ROUNDS * len(requests) <= served
    # The load must have made the batcher merge requests, or this test shows nothing.
    assert runs < served, f"the ranker ran {runs} engine calls for {served} requests: nothing was merged"
    for i, indices, scores in answers:
        ref_indices, ref_scores = alone[i]
        assert indices.tolist() == ref_indices.tolist(), f"request {i} came back in another order under load"
        np.testing.assert_allclose(scores, ref_scores, atol=SCORE_TOL, err_msg=f"request {i}")
