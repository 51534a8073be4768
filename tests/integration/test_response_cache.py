"""Triton's response cache on the ranker (docs/caching.md), on a real tritonserver: a repeated
request skips the engine, every step after the ranker still runs per request, and no cached
answer outlives a ranker version, with no failed request while versions swap under load."""
from __future__ import annotations

import concurrent.futures as futures
import threading
import time
import urllib.request

import numpy as np

from shoprank import config
from shoprank.online.activate import activate
from shoprank.online.update import rollback
from shoprank.serving.client import RankClient, ranker_counts
from shoprank.serving.triton.versions import publish_version

OWN_SERVER_CACHE_BYTES = 8 * 1024 * 1024  # own_server (conftest) starts with the response cache


def _ranker_counts(endpoints):
    """(requests the engine scored, cache hits) of the ranker's loaded versions, from Triton
    (a version's counts go with it when it is unloaded)."""
    counts = ranker_counts(endpoints.grpc)
    return counts["compute_infer"], counts["cache_hit"]


def test_cache_answers_repeats_and_never_outlives_a_ranker_version(own_server, tiny_model, onnx_fp32, engine_probe):
    repo, running = own_server
    endpoints, key = running.endpoints, running.admin_key
    query, texts, engine_of = engine_probe.query, engine_probe.texts, engine_probe.engine_of

    with RankClient(endpoints.grpc, "grpc") as client:
        # A repeat skips the engine: Triton counts a hit, and the answer and the echoed request id
        # are the request's own.
        first = client.infer_raw(query, texts, 0)
        scored, hits = _ranker_counts(endpoints)
        indices, scores, echoed = client.infer_with_id(query, texts, 0, request_id="repeat-1")
        assert _ranker_counts(endpoints) == (scored, hits + 1)
        assert echoed == "repeat-1" and engine_of(indices, scores) == engine_of(*first) == "int8"
        np.testing.assert_array_equal(indices, first[0])
        # The steps after the ranker run per request: another TOP_K reuses the cached logits and
        # gets its own page, the first two of the full order.
        top2, top2_scores = client.infer_raw(query, texts, 2)
        assert _ranker_counts(endpoints) == (scored, hits + 2)
        np.testing.assert_array_equal(top2, first[0][:2])
        np.testing.assert_array_equal(top2_scores, first[1][:2])

    # Version 2 (FP32) goes live while clients repeat the same request (cache hits): no request
    # fails, and every request sent after activate() returned is answered by version 2.
    stop, results = threading.Event(), []  # (started, finished, engine or error)

    def worker(protocol):
        with RankClient(endpoints.grpc if protocol == "grpc" else endpoints.http, protocol) as c:
            while not stop.is_set():
                started = time.time()
                try:
                    results.append((started, time.time(), engine_of(*c.infer_raw(query, texts, 0))))
                except Exception as exc:  # any failure at all is what this test is about
                    results.append((started, time.time(), f"failed: {exc!r}"))

    with futures.ThreadPoolExecutor(4) as pool:
        running_workers = [pool.submit(worker, p) for p in ["grpc", "http"] * 2]
        try:
            time.sleep(1.0)
            published_at = time.time()
            version = publish_version(repo, onnx_fp32, tiny_model, {"note": "cache swap test"})
            activation = activate(endpoints.grpc, version, [(query, texts)], admin_key=key)
            loaded_at = time.time()
            time.sleep(1.0)
        finally:
            stop.set()
        for f in running_workers:
            f.result()
    failed = [r for r in results if r[2].startswith("failed")]
    assert not failed, f"{len(failed)} of {len(results)} requests failed during the swap: {failed[:3]}"
    before = [r for r in results if r[1] < published_at]
    after = [r for r in results if r[0] > loaded_at]
    assert len(before) > 5 and len(after) > 5
    assert {r[2] for r in before} == {"int8"}
    assert {r[2] for r in after} == {"fp32"}, "a request sent after the swap got the old version's page"
    assert activation["ranker_ready"] == [version] and activation["probe_requests_on_new_version"] >= 1

    # Rollback: version 1 serves again, and its answers are its own (cached under version 1's
    # key, which is still right: the same version gives the same scores).
    with RankClient(endpoints.grpc, "grpc") as client:
        assert rollback(repo, endpoints.grpc, tiny_model, admin_key=key)["serving_version"] == 1
        assert engine_of(*client.infer_raw(query, texts, 0)) == "int8"

    # Triton exports the cache's counters for Prometheus (hit rate = hits / lookups).
    text = urllib.request.urlopen(endpoints.metrics, timeout=10).read().decode()
    for name in ("nv_cache_num_hits_per_model", "nv_cache_num_misses_per_model"):
        assert f'{name}{{model="{config.RANKER_MODEL}"' in text
