"""The sorter's ordering and the request checks, without a server."""
import numpy as np
import pytest

from shoprank import config
from shoprank.errors import RequestError
from shoprank.serving.engine import sigmoid
from shoprank.serving.request import check_top_k, decode_request
from shoprank.serving.sorter import rank_logits, ranked


def test_rank_logits_orders_best_first_and_cuts_to_top_k():
    indices, scores = rank_logits(np.array([[0.0], [2.0], [-1.0], [1.0]], np.float32), 0)
    assert indices.tolist() == [1, 3, 0, 2]
    np.testing.assert_allclose(scores, 1 / (1 + np.exp(-np.array([2.0, 1.0, 0.0, -1.0]))), rtol=1e-6)
    assert indices.dtype == np.int32 and scores.dtype == np.float32
    assert rank_logits(np.array([0.0, 2.0, -1.0, 1.0]), 2)[0].tolist() == [1, 3]
    assert rank_logits(np.array([0.0, 2.0]), 5)[0].tolist() == [1, 0]


def test_ranked_gives_every_probability_in_request_order():
    """The sorter's histogram reads every candidate's probability from the same sigmoid as the page."""
    logits = np.array([[0.0], [2.0], [-1.0], [1.0]], np.float32)
    indices, scores, probabilities = ranked(logits, 2)
    np.testing.assert_array_equal(probabilities, sigmoid(logits.reshape(-1)))
    assert indices.tolist() == [1, 3] and probabilities.shape == (4,)
    np.testing.assert_array_equal(scores, probabilities[[1, 3]])


def test_ties_keep_candidate_order():
    assert rank_logits(np.array([1.0, 3.0, 1.0, 3.0]), 0)[0].tolist() == [1, 3, 0, 2]


def test_decode_request_accepts_utf8_and_str():
    query, texts = decode_request(np.array([b"caf\xc3\xa9"], object), np.array([b"a", "b"], object))
    assert query == "café" and texts == ["a", "b"]


@pytest.mark.parametrize("query,candidates,message", [
    ([b""], [b"a"], "QUERY is empty"),
    ([b" \t"], [b"a"], "QUERY is empty"),
    ([b"\x00\x00"], [b"a"], "QUERY is empty"),
    ([b"a", b"b"], [b"a"], "exactly one"),
    ([b"q"], [], "CANDIDATES is empty"),
    ([b"q"], [b"a"] * (config.MAX_CANDIDATES + 1), "too many CANDIDATES: 1001 > 1000"),
    ([b"\xff"], [b"a"], "QUERY is not valid UTF-8"),
    ([b"q"], [b"a", b"\xe2\x82"], r"CANDIDATES\[1\] is not valid UTF-8"),
])
def test_decode_request_errors_name_the_problem(query, candidates, message):
    with pytest.raises(RequestError, match=message):
        decode_request(query, candidates)


def test_top_k_checks():
    assert check_top_k(np.array([0], np.int32)) == 0
    assert check_top_k(np.array([7], np.int32)) == 7
    with pytest.raises(RequestError, match="TOP_K must be >= 0"):
        check_top_k(np.array([-3], np.int32))
    with pytest.raises(RequestError, match="exactly one"):
        check_top_k(np.array([1, 2], np.int32))
