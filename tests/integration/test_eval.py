"""`make eval`'s table against the real served ensemble: every variant and baseline on the same
rows, the served scores equal to in-process INT8, and the build's quality gate seeing exactly
the NDCG@10 the served ensemble has."""
from __future__ import annotations

import numpy as np
import pytest

from shoprank.data.split import model_pairs, query_groups
from shoprank.measure.eval.baselines import RANDOM_SEEDS
from shoprank.measure.eval.run import evaluate_model
from shoprank.model_card import model_max_length
from shoprank.quality import metrics
from shoprank.quality.gate import gate_engines
from shoprank.serving.engine import OrtEngine, sigmoid
from shoprank.serving.tokenizer import PairEncoder

VARIANTS = ["pytorch-fp32", "onnx-fp32", "ort-int8", "qdq-int8", "tensorrt", "served"]
BASELINES = ["random", "bm25", "zero-shot"]
SCORE_TOL = 1e-5  # served vs in-process, same engine and same per-query batch (as test_server.py)


@pytest.fixture(scope="module")
def table(tiny_model, onnx_fp32, onnx_int8, server, build_dir, tmp_path_factory):
    df = model_pairs(tiny_model, "valid")
    return evaluate_model(
        tiny_model, df, onnx_dir=onnx_int8.parent, plan_dir=tmp_path_factory.mktemp("no-plans"),
        grpc_url=server.grpc, base_model=build_dir / "tiny-base", log=lambda *a: None), df


def test_eval_rows_are_the_models_validation_split(tiny_model, valid_pairs, table):
    _, df = table
    assert df[["query", "text", "label"]].equals(valid_pairs[["query", "text", "label"]])
    assert df.attrs["split"] == "valid"


def test_table_has_every_variant_and_baseline_with_query_counts(table):
    tab, df = table
    assert [r.key for r in tab.rows] == VARIANTS + BASELINES
    groups = [idx for _, idx in query_groups(df) if len(idx) >= 2]
    with_relevant = [idx for idx in groups if df["relevant"].to_numpy()[idx].any()]
    assert len(with_relevant) >= 5
    scored = [r for r in tab.rows if r.metrics is not None]
    assert {r.key for r in scored} >= {"pytorch-fp32", "onnx-fp32", "ort-int8", "served", *BASELINES}
    for r in scored:
        assert r.metrics["queries"] == {"ndcg@10": len(with_relevant), "mrr": len(with_relevant),
                                        "p@5": len(with_relevant)}, r.key
        assert 0.0 <= r.ndcg <= 1.0 and r.metrics["rows"] == len(df)
    assert "TensorRT" in tab.row("tensorrt").note and tab.row("tensorrt").metrics is None
    # No QDQ engine in this ONNX folder (unit/convert builds its own elsewhere): skipped, and says how to build it.
    qdq = tab.row("qdq-int8")
    assert qdq.metrics is None and "make qdq" in qdq.note
    text = tab.to_markdown()
    for r in tab.rows:
        assert r.label in text
    assert f"{len(with_relevant)} / {len(with_relevant)}" in text
    # Every scored row but the reference carries its paired difference to FP32, interval included.
    ref = tab.row("pytorch-fp32")
    for r in scored:
        if r is ref or r.key == "random":  # random order is a mean over shuffles: no one score per row
            assert r.ndcg_diff is None
            continue
        d = r.ndcg_diff
        assert d["mean"] == pytest.approx(r.ndcg - ref.ndcg, abs=1e-9), r.key
        assert d["low"] <= d["mean"] <= d["high"] and d["queries"] == len(with_relevant)
        assert f"{d['mean']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]" in text
    assert tab.summary["random_ndcg"] == pytest.approx(metrics.random_baseline(df, seeds=RANDOM_SEEDS))


def test_fp32_variants_agree_and_the_served_ensemble_matches_in_process_int8(table, tiny_model, onnx_int8):
    tab, df = table
    torch_row, onnx_row = tab.row("pytorch-fp32"), tab.row("onnx-fp32")
    np.testing.assert_allclose(onnx_row.scores, torch_row.scores, atol=1e-4)
    assert onnx_row.gate["passed"] and onnx_row.max_abs_diff < 1e-4

    # The served scores, mapped back through INDICES, equal the INT8 engine run in-process on
    # the same request (one query, its judged products).
    encoder = PairEncoder.from_dir(tiny_model, max_length=model_max_length(tiny_model))
    engine = OrtEngine(onnx_int8)
    texts = df["text"].to_numpy(dtype=object)
    expected = np.zeros(len(df))
    for query, idx in query_groups(df):
        expected[idx] = sigmoid(engine.logits(encoder.encode(query, texts[idx].tolist())))
    served, int8 = tab.row("served"), tab.row("ort-int8")
    np.testing.assert_allclose(served.scores, expected, atol=SCORE_TOL)
    np.testing.assert_allclose(int8.scores, expected, atol=SCORE_TOL)
    for name in ("ndcg@10", "mrr", "p@5", "auc", "rmse_label"):
        assert served.metrics[name] == pytest.approx(int8.metrics[name], abs=1e-6), name
    assert served.gate is not None and int8.gate is not None


def test_engine_gate_scores_as_served(tiny_model, onnx_fp32, onnx_int8, table):
    tab, df = table
    same = gate_engines(tiny_model, onnx_fp32, onnx_fp32, "FP32 again", valid=df)
    assert same["passed"] and same["ndcg_drop"] == 0.0 and same["max_abs_diff"] == 0.0
    int8 = gate_engines(tiny_model, onnx_fp32, onnx_int8, "INT8", max_drop=1.0, valid=df)
    # The build gate sees exactly the NDCG@10 the served ensemble has.
    assert int8["ndcg_candidate"] == pytest.approx(tab.row("served").ndcg, abs=1e-9)
    assert int8["ndcg_reference"] == pytest.approx(tab.row("onnx-fp32").ndcg, abs=1e-9)
    assert int8["queries"] == tab.row("served").metrics["queries"]["ndcg@10"]
