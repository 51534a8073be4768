"""Integration: the real tritonserver, real gRPC and HTTP requests, real ONNX Runtime."""
from __future__ import annotations

import concurrent.futures as futures

import numpy as np
import pytest

from shoprank import config
from shoprank.data.split import query_groups
from shoprank.errors import RankError
from shoprank.model_card import model_max_length
from shoprank.serving.client import RankClient, ranker_counts
from shoprank.serving.engine import OrtEngine, sigmoid
from shoprank.serving.tokenizer import PairEncoder

# The served path runs the same engine file on the same padded batch as in-process ONNX
# Runtime, so scores agree to float rounding.
SCORE_TOL = 1e-5


def _groups(valid_pairs, count=6, min_size=3):
    texts = valid_pairs["text"].to_numpy()
    return [(q, texts[idx].tolist()) for q, idx in query_groups(valid_pairs) if len(idx) >= min_size][:count]


@pytest.fixture(scope="module")
def reference(tiny_model, onnx_int8):
    """In-process ranking with the served engine: the reference the server must match."""
    encoder = PairEncoder.from_dir(tiny_model, max_length=model_max_length(tiny_model))
    engine = OrtEngine(onnx_int8)

    def rank(query, texts):
        logits = engine.logits(encoder.encode(query, texts))
        order = np.argsort(-logits, kind="stable")  # ties keep candidate order, as served
        return order, sigmoid(logits[order])

    return rank


def test_grpc_and_http_rank_identically_and_match_in_process_onnxruntime(server, valid_pairs, reference):
    grpc = RankClient(server.grpc, "grpc")
    http = RankClient(server.http, "http")
    for query, texts in _groups(valid_pairs):
        g_idx, g_scores = grpc.infer_raw(query, texts, 0)
        h_idx, h_scores = http.infer_raw(query, texts, 0)
        ref_idx, ref_scores = reference(query, texts)
        assert g_idx.tolist() == h_idx.tolist() == ref_idx.tolist()
        np.testing.assert_allclose(g_scores, h_scores, atol=SCORE_TOL)
        np.testing.assert_allclose(g_scores, ref_scores, atol=SCORE_TOL)
    grpc.close()
    http.close()


def test_top_k_cuts_the_list_and_zero_means_all(client, valid_pairs):
    query, texts = _groups(valid_pairs, 1, min_size=5)[0]
    full = client.rank(query, texts, 0)
    top = client.rank(query, texts, 3)
    assert len(full) == len(texts)
    assert [h.index for h in top] == [h.index for h in full[:3]]
    assert len(client.rank(query, texts, len(texts) + 10)) == len(texts)
    assert all(a.score >= b.score for a, b in zip(full, full[1:]))
    assert all(0.0 <= h.score <= 1.0 for h in full)
    assert full[0].text == texts[full[0].index]


def test_one_candidate(client):
    ranked = client.rank("cordless drill", ["DEWALT 20V MAX cordless drill"], 10)
    assert len(ranked) == 1 and ranked[0].index == 0


def test_max_candidates(client, valid_pairs, reference):
    texts = valid_pairs["text"].drop_duplicates().tolist()
    texts = [texts[i % len(texts)] for i in range(config.MAX_CANDIDATES)]
    indices, scores = client.infer_raw("white vanity 30 in", texts, 0)
    ref_idx, ref_scores = reference("white vanity 30 in", texts)
    assert len(indices) == config.MAX_CANDIDATES
    np.testing.assert_allclose(scores, ref_scores, atol=SCORE_TOL)


def test_huge_texts_are_truncated_not_rejected(client):
    huge = "stainless steel kitchen sink " * 40000  # ~1.2 MB
    ranked = client.rank("kitchen sink " * 2000, [huge, "garden hose"], 0)
    assert sorted(h.index for h in ranked) == [0, 1]


BAD_REQUESTS = [
    ("empty query", "", ["drill"], 0, "QUERY is empty"),
    ("blank query", "   ", ["drill"], 0, "QUERY is empty"),
    ("NUL-only query", "\x00", ["drill"], 0, "QUERY is empty"),
    ("no candidates", "drill", [], 0, "CANDIDATES is empty"),
    ("too many candidates", "drill", ["x"] * (config.MAX_CANDIDATES + 1), 0, "too many CANDIDATES"),
    ("invalid UTF-8 query", b"dr\xffill", ["drill"], 0, "QUERY is not valid UTF-8"),
    ("invalid UTF-8 candidate", "drill", ["ok", b"\xc3\x28"], 0, "CANDIDATES[1] is not valid UTF-8"),
    ("negative TOP_K", "drill", ["drill"], -1, "TOP_K must be >= 0"),
]


@pytest.mark.parametrize("name,query,candidates,top_k,message", BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_bad_input_gets_a_clear_error_and_the_server_keeps_serving(client, name, query, candidates, top_k, message):
    with pytest.raises(RankError, match=message.replace("[", r"\[").replace("]", r"\]")):
        client.infer_raw(query, candidates, top_k)
    assert client.ready()
    assert len(client.rank("drill", ["cordless drill", "paint"], 0)) == 2


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_wrong_types_and_shapes_are_refused_by_the_contract(server, protocol):
    if protocol == "grpc":
        import tritonclient.grpc as api
        client = api.InferenceServerClient(server.grpc)
    else:
        import tritonclient.http as api
        client = api.InferenceServerClient(server.http)
    from tritonclient.utils import InferenceServerException

    def request(top_k_dtype, top_k_value, queries):
        q = api.InferInput(config.QUERY, [len(queries)], "BYTES")
        q.set_data_from_numpy(np.array(queries, dtype=object))
        c = api.InferInput(config.CANDIDATES, [1], "BYTES")
        c.set_data_from_numpy(np.array([b"drill"], dtype=object))
        k = api.InferInput(config.TOP_K, [1], top_k_dtype)
        k.set_data_from_numpy(np.array([top_k_value], dtype={"INT32": np.int32, "FP32": np.float32}[top_k_dtype]))
        return client.infer(config.ENSEMBLE_MODEL, [q, c, k])

    with pytest.raises(InferenceServerException, match="TOP_K"):
        request("FP32", 1.0, [b"drill"])
    with pytest.raises(InferenceServerException, match="QUERY"):
        request("INT32", 1, [b"drill", b"saw"])
    assert request("INT32", 1, [b"drill"]).as_numpy(config.INDICES).tolist() == [0]
    client.close()


def test_concurrent_requests_are_batched_and_ranked_as_when_alone(server, valid_pairs):
    """The dynamic batcher merges concurrent requests into fewer ranker executions; each
    request still gets exactly its own scores (INT8 quantizes each row on its own:
    tests/integration/test_isolation.py has the full check)."""
    groups = _groups(valid_pairs, count=24, min_size=3)
    alone = {}
    with RankClient(server.grpc, "grpc") as c:
        for q, texts in groups:
            alone[q] = c.infer_raw(q, texts, 0)

    def counts():
        c = ranker_counts(server.grpc)
        return c["success"], c["executions"]

    before = counts()

    def work(item):
        q, texts = item
        with RankClient(server.grpc, "grpc") as c:
            return q, c.infer_raw(q, texts, 0)

    with futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(work, groups * 3))
    after = counts()
    for q, (_, scores) in results:
        ref_idx, ref_scores = alone[q]
        np.testing.assert_allclose(np.sort(scores), np.sort(ref_scores), atol=1e-5)
    requests, executions = after[0] - before[0], after[1] - before[1]
    assert requests == len(groups) * 3
    assert executions < requests, f"no batching: {executions} executions for {requests} requests"
