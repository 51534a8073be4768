"""What the explain model returns, apart from Triton: occlusion through sorter-style outputs
(probabilities, best first), the served order and the sorter's rule trace per candidate."""
from __future__ import annotations

import json

import numpy as np
import pytest

from shoprank import config
from shoprank.explain.explanation import Explained
from shoprank.explain.served import chunks, explain_request, probability_logit, trace_of

from .test_methods import WEIGHTS, additive_group


def sorter_outputs(logits: np.ndarray, rules_trace: bool = False) -> dict:
    order = np.argsort(-logits, kind="stable").astype(np.int32)
    out = {config.INDICES: order, config.SCORES: (1 / (1 + np.exp(-logits[order]))).astype(np.float32)}
    if rules_trace:
        out[config.FINAL_SCORES] = out[config.SCORES] * 0.5
        # The sorter's trace: columns, one entry per returned item (shoprank.serving.rules).
        columns = {"index": order.tolist(), "relevance": out[config.SCORES].astype(float).tolist(),
                   "final": [0.5] * len(order), "relevance_position": list(range(len(order))),
                   "moved_by": ["boost"] + [""] * (len(order) - 1), "randomized": False}
        out[config.TRACE] = np.array([json.dumps(columns).encode()], dtype=np.object_)
    return out


def test_explain_request_attributes_through_probabilities_and_keeps_the_served_order():
    calls = []

    def run_steps(query, texts, traced):
        calls.append(traced)
        return sorter_outputs(additive_group(query, texts) / 2, rules_trace=traced)  # logits within sigmoid's range

    texts = ["white paint", "DEWALT 20V cordless drill", "drill bit"]
    docs = [Explained.from_json(d) for d in explain_request("cordless drill", texts, run_steps,
                                                            (config.FINAL_SCORES, config.TRACE))]
    assert calls.count(True) == 1
    assert [d.index for d in docs] == [0, 1, 2]
    assert [d.position for d in docs] == [3, 1, 2]
    drill = docs[1].attribution
    expected = [0, WEIGHTS["20v"] / 2, WEIGHTS["cordless"] / 2, WEIGHTS["drill"] / 2]
    np.testing.assert_allclose(drill.text_scores, expected, atol=1e-5)
    assert docs[1].trace["rules"] == ["boost"] and docs[1].trace["final_score"] == 0.5
    assert docs[2].trace["rules"] == [] and docs[2].trace["randomized"] is False
    assert docs[1].trace["score_before_rules"] == pytest.approx(docs[1].score)
    assert docs[0].trace["position_before_rules"] == 3


def test_without_rules_the_trace_names_the_place_and_leaves_rules_empty():
    traces = trace_of(sorter_outputs(np.array([0.1, 2.0])), (config.FINAL_SCORES, config.TRACE), 2)
    assert [t["final_position"] for t in traces] == [2, 1]
    assert traces[0]["rules"] is None and traces[0]["score_before_rules"] is None


def test_helpers():
    assert [len(c) for c in chunks(list("abcde"), 2)] == [2, 2, 1]
    assert probability_logit(np.array([0.5]))[0] == pytest.approx(0.0)
    assert np.isfinite(probability_logit(np.array([1.0, 0.0]))).all()
