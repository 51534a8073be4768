"""A scoring head served by the real tritonserver: the tokenizer computes each pair's features,
the sorter scores with the head, and the result equals the same head run in process on the
same engine's logits, over gRPC and HTTP. Requests and clients are unchanged."""
from __future__ import annotations

import numpy as np
import pytest

from shoprank.errors import RankError
from shoprank.features.index import LexicalIndex
from shoprank.features.pairs import FEATURE_NAMES, pair_features
from shoprank.serving.client import RankClient
from shoprank.serving.engine import OrtEngine
from shoprank.serving.head import ScoringHead, head_dir
from shoprank.serving.tokenizer import PairEncoder
from shoprank.training.head import HeadFit, fit_head
from shoprank.training.head_build import frame_features

QUERY = "cordless drill 20v"
TEXTS = ["DEWALT 20V MAX cordless drill kit", "white interior paint 1 gal.", "drill bit set",
         "Milwaukee M18 hammer drill", "3/4 in. copper elbow", "RYOBI 18V cordless drill"]


@pytest.fixture(scope="module")
def head_server(tiny_model, onnx_int8, tmp_path_factory):
    """The tiny model with a head fit on its own training logits (serving is what is tested here,
    not the out-of-fold training), in a repository and server of the module's own."""
    import shutil

    from shoprank.data.split import model_pairs
    from shoprank.serving.server import run_triton
    from shoprank.serving.triton.repository import build_repository
    from shoprank.training.oof import model_logits

    work = tmp_path_factory.mktemp("head-server")
    model = work / "model"
    shutil.copytree(tiny_model, model)
    train = model_pairs(model, "train", limit_queries=80)
    index = LexicalIndex.fit(model_pairs(model, "all")["text"].unique(), train["query"].unique())
    features = frame_features(index, train)
    head = fit_head(model_logits(model, train), features, train["label"].to_numpy(np.float32),
                    FEATURE_NAMES, hidden=(8,), fit=HeadFit(epochs=50))
    head.save(head_dir(model))
    index.save(head_dir(model))
    repo = build_repository(model, onnx_int8, work / "model_repository", target="python")
    with run_triton(repo, work_dir=work / "triton") as running:
        yield model, running.endpoints


def _in_process(model, onnx_int8, query, texts) -> np.ndarray:
    encoder = PairEncoder.from_dir(model, max_length=48, buckets=())
    logits = OrtEngine(onnx_int8).logits(encoder.encode(query, texts))
    index = LexicalIndex.load(head_dir(model))
    head = ScoringHead.load(head_dir(model))
    return 1 / (1 + np.exp(-head.logits(logits, pair_features(index, query, texts))))


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_served_head_scores_equal_the_head_in_process(head_server, onnx_int8, protocol):
    model, endpoints = head_server
    expected = _in_process(model, onnx_int8, QUERY, TEXTS)
    with RankClient(endpoints.grpc if protocol == "grpc" else endpoints.http, protocol) as client:
        indices, scores = client.infer_raw(QUERY, TEXTS, 0)
    np.testing.assert_allclose(scores, expected[indices], atol=1e-5)
    assert list(indices) == list(np.argsort(-expected, kind="stable"))


def test_the_head_moves_scores_away_from_the_cross_encoder_alone(head_server, server):
    """The same request on the shared server (no head) and on this one differ: the head is live."""
    with RankClient(head_server[1].grpc, "grpc") as with_head, RankClient(server.grpc, "grpc") as without:
        a, b = with_head.infer_raw(QUERY, TEXTS, 0)[1], without.infer_raw(QUERY, TEXTS, 0)[1]
    assert np.max(np.abs(np.sort(a) - np.sort(b))) > 1e-3


def test_bad_requests_are_still_clear_client_errors_with_a_head(head_server):
    with RankClient(head_server[1].grpc, "grpc") as client:
        with pytest.raises(RankError, match="CANDIDATES"):
            client.infer_raw(QUERY, [b"\xff\xfe"], 0)
        assert len(client.rank(QUERY, ["x" * 10_000] * 3, 2)) == 2  # long texts: features stay bounded
        assert client.rank(QUERY, TEXTS, 1)[0].index in range(len(TEXTS))
