"""The one quality gate: its rule, its refusals (never an exception of the metrics), and
scoring one query per engine call as served."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from shoprank.data.split import query_groups
from shoprank.errors import GateRefused
from shoprank.quality import metrics
from shoprank.quality.gate import (
    MAX_NDCG_DROP,
    enforce,
    engine_rank_one,
    gate_engines,
    judge,
    judge_ndcg,
    logits_as_served,
)
from shoprank.serving.engine import sigmoid


def test_gate_fails_a_lossy_conversion_and_passes_a_faithful_one(valid_pairs):
    gains = valid_pairs["gain"].to_numpy()
    rng = np.random.default_rng(0)
    fp32 = 1 / (1 + np.exp(-(4 * gains - 2 + rng.normal(0, 1.0, len(gains)))))  # a good ranker
    faithful = fp32 + rng.normal(0, 1e-4, len(fp32))  # float rounding-sized differences
    lossy = fp32 + rng.normal(0, 0.25, len(fp32))     # a conversion whose error swaps products
    assert judge(valid_pairs, fp32, faithful, "faithful")["passed"]
    verdict = judge(valid_pairs, fp32, lossy, "lossy")
    assert not verdict["passed"] and re.match(r"lossy loses 0\.\d+ NDCG@10 against FP32", verdict["reason"])
    assert "Spearman" in verdict["reason"] and verdict["pairs"] == len(valid_pairs)
    with pytest.raises(GateRefused, match=r"lossy loses 0\.\d+ NDCG@10 against FP32") as refused:
        enforce(verdict)
    assert refused.value.verdict is verdict


def test_judge_ndcg_margin_and_undefined_ndcg_is_a_refusal_not_an_exception():
    assert judge_ndcg(0.93, 0.93 - MAX_NDCG_DROP / 2)["passed"]
    assert judge_ndcg(0.93, 0.95)["passed"]  # a gain never fails
    refused = judge_ndcg(0.930, 0.924, "INT8")
    assert not refused["passed"] and refused["reason"].startswith("INT8 loses 0.0060")
    for reference, candidate in ((None, 0.9), (0.9, None), (float("nan"), 0.9)):
        verdict = judge_ndcg(reference, candidate, "x")
        assert verdict["passed"] is False and "undefined" in verdict["reason"] and verdict["ndcg_drop"] is None
    with pytest.raises(GateRefused, match="undefined"):
        enforce(judge_ndcg(None, 0.9))
    assert not judge_ndcg(0.9, 0.92, max_drop=-0.05)["passed"]  # a negative margin demands a gain
    assert judge_ndcg(0.9, 0.96, max_drop=-0.05)["passed"]
    for bad in (float("nan"), "0.005", None):
        with pytest.raises(ValueError, match="max_drop"):
            judge_ndcg(0.9, 0.9, max_drop=bad)


def test_rows_without_a_relevant_product_are_refused_with_a_reason():
    df = pd.DataFrame({"query": ["q", "q", "r", "r"], "text": list("abcd"), "gain": 0.0,
                       "label": np.float32(0.0), "relevant": False})
    verdict = judge(df, [0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1], "nothing relevant")
    assert verdict["passed"] is False and "undefined" in verdict["reason"]


def test_scores_as_served_make_one_engine_call_per_query(valid_pairs):
    calls = []

    def rank_one(query, texts):
        calls.append((query, list(texts)))
        return np.arange(len(texts), dtype=np.float32)

    logits = logits_as_served(valid_pairs, rank_one)
    groups = list(query_groups(valid_pairs))
    assert [q for q, _ in calls] == [q for q, _ in groups]  # one call per query, nothing mixed
    for (_, texts), (_, idx) in zip(calls, groups, strict=True):
        assert texts == valid_pairs["text"].to_numpy()[idx].tolist()
        np.testing.assert_array_equal(logits[idx], np.arange(len(idx)))


def test_engine_gate_scores_each_query_alone(tiny_model, onnx_fp32, onnx_int8, valid_pairs):
    same = gate_engines(tiny_model, onnx_fp32, onnx_fp32, "FP32 again", valid=valid_pairs)
    assert same["passed"] and same["ndcg_drop"] == 0.0 and same["max_abs_diff"] == 0.0
    verdict = gate_engines(tiny_model, onnx_fp32, onnx_int8, "INT8", max_drop=1.0, valid=valid_pairs)
    rank_one = engine_rank_one(tiny_model, onnx_int8)
    expected = np.concatenate([rank_one(q, valid_pairs["text"].to_numpy()[idx].tolist())
                               for q, idx in query_groups(valid_pairs)])
    order = np.concatenate([idx for _, idx in query_groups(valid_pairs)])
    scores = np.empty(len(valid_pairs), np.float32)
    scores[order] = expected
    assert verdict["ndcg_candidate"] == pytest.approx(metrics.evaluate(valid_pairs, sigmoid(scores))["ndcg@10"])
