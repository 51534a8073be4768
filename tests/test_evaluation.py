"""`make eval`'s table (every variant and baseline on the same rows), its baselines against
hand and numpy computations, and the quality gate that fails a build losing NDCG."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from shoprank import data, evaluation, metrics
from shoprank.build_steps import BuildError
from shoprank.quality_gate import DEFAULT_MAX_NDCG_DROP, check_ndcg, gate_scores

VARIANTS = ["pytorch-fp32", "onnx-fp32", "ort-int8", "qdq-int8", "tensorrt", "served"]
BASELINES = ["random", "bm25", "zero-shot"]
SCORE_TOL = 1e-5  # served vs in-process, same engine and same per-query batch (as tests/test_server.py)


def _frame(rows, max_gain=1.0):
    df = pd.DataFrame(rows, columns=["query", "text", "gain"])
    df["label"] = (df["gain"] / max_gain).astype(np.float32)
    df["relevant"] = df["gain"] >= max_gain
    df.attrs.update(mapping="clicks", max_gain=max_gain, relevant_gain=max_gain, source="test")
    return df


@pytest.fixture(scope="module")
def table(tiny_model, onnx_fp32, onnx_int8, server, build_dir, tmp_path_factory):
    df = evaluation.eval_pairs(tiny_model)
    return evaluation.evaluate_model(
        tiny_model, df, onnx_dir=onnx_int8.parent, plan_dir=tmp_path_factory.mktemp("no-plans"),
        grpc_url=server.grpc, base_model=build_dir / "tiny-base", log=lambda *a: None), df


def test_eval_rows_are_the_models_validation_split(tiny_model, valid_pairs, table):
    _, df = table
    assert df[["query", "text", "label"]].equals(valid_pairs[["query", "text", "label"]])
    assert df.attrs["split"] == "valid"


def test_table_has_every_variant_and_baseline_with_query_counts(table):
    tab, df = table
    assert [r.key for r in tab.rows] == VARIANTS + BASELINES
    groups = [idx for _, idx in data.query_groups(df) if len(idx) >= 2]
    with_relevant = [idx for idx in groups if df["relevant"].to_numpy()[idx].any()]
    assert len(with_relevant) >= 5
    scored = [r for r in tab.rows if r.metrics is not None]
    assert {r.key for r in scored} >= {"pytorch-fp32", "onnx-fp32", "ort-int8", "served", *BASELINES}
    for r in scored:
        assert r.metrics["queries"] == {"ndcg@10": len(with_relevant), "mrr": len(with_relevant),
                                        "p@5": len(with_relevant)}, r.key
        assert 0.0 <= r.ndcg <= 1.0 and r.metrics["rows"] == len(df)
    assert "TensorRT" in tab.row("tensorrt").note and tab.row("tensorrt").metrics is None
    qdq = tab.row("qdq-int8")  # built by another test module or not: either scored or skipped
    assert qdq.metrics is not None or "make qdq" in qdq.note
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
    assert tab.summary["random_ndcg"] == pytest.approx(metrics.random_baseline(df, seeds=evaluation.RANDOM_SEEDS))


def test_fp32_variants_agree_and_the_served_ensemble_matches_in_process_int8(table, tiny_model, onnx_int8):
    from shoprank.engine import OrtEngine, sigmoid
    from shoprank.modeling import model_max_length
    from shoprank.tokenize import PairEncoder

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
    for query, idx in data.query_groups(df):
        expected[idx] = sigmoid(engine.logits(encoder.encode(query, texts[idx].tolist())))
    served, int8 = tab.row("served"), tab.row("ort-int8")
    np.testing.assert_allclose(served.scores, expected, atol=SCORE_TOL)
    np.testing.assert_allclose(int8.scores, expected, atol=SCORE_TOL)
    for name in ("ndcg@10", "mrr", "p@5", "auc", "rmse_label"):
        assert served.metrics[name] == pytest.approx(int8.metrics[name], abs=1e-6), name
    assert served.gate is not None and int8.gate is not None


def test_bm25_matches_a_hand_computed_example():
    df = _frame([("red paint", "red drill", 0), ("red paint", "red red paint can", 1),
                 ("red paint", "blue paint", 0), ("drill", "red drill", 1)])  # "red drill" counted once
    scores = evaluation.bm25_scores(df)
    # N = 3 distinct texts, avgdl = (2 + 4 + 2) / 3; "red" and "paint" are each in 2 of them.
    idf = math.log(1 + (3 - 2 + 0.5) / (2 + 0.5))
    idf_drill = math.log(1 + (3 - 1 + 0.5) / (1 + 0.5))
    norm2 = 1.2 * (1 - 0.75 + 0.75 * 2 / (8 / 3))   # length-2 documents
    norm4 = 1.2 * (1 - 0.75 + 0.75 * 4 / (8 / 3))
    expected = [idf * 1 * 2.2 / (1 + norm2),                                  # red
                idf * 2 * 2.2 / (2 + norm4) + idf * 1 * 2.2 / (1 + norm4),    # red x2, paint
                idf * 1 * 2.2 / (1 + norm2),                                  # paint
                idf_drill * 1 * 2.2 / (1 + norm2)]
    np.testing.assert_allclose(scores, expected, rtol=1e-12)
    model = evaluation.BM25(["red drill", "blue paint"])
    assert model.score("red red", "red drill") == model.score("red", "red drill")  # distinct query terms
    assert model.score("hammer", "red drill") == 0.0
    assert evaluation.bm25_tokens("1/2-in. PVC Pipe") == ["1", "2", "in", "pvc", "pipe"]


def test_zero_shot_cosine_matches_numpy(tiny_model, build_dir):
    import torch
    from transformers import AutoModel, AutoTokenizer

    base = build_dir / "tiny-base"
    df = _frame([("cordless drill", "DEWALT 20V MAX cordless drill driver kit", 1),
                 ("cordless drill", "white interior paint, 1 gallon", 0),
                 ("vanity", "Glacier Bay 30 in. bathroom vanity in white with a long description", 1)])
    scores = evaluation.zero_shot_scores(df, base)
    tokenizer, model = AutoTokenizer.from_pretrained(str(base)), AutoModel.from_pretrained(str(base)).eval()

    def embed(text):  # one sentence, no padding: the plain mean of its token states
        with torch.inference_mode():
            hidden = model(**tokenizer(text, return_tensors="pt")).last_hidden_state[0].numpy()
        return hidden.mean(axis=0)

    expected = []
    for q, t in zip(df["query"], df["text"]):
        a, b = embed(q), embed(t)
        expected.append(float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))))
    np.testing.assert_allclose(scores, expected, atol=1e-5)


def test_random_baseline_averages_every_metric_over_seeds(valid_pairs):
    out = evaluation.random_metrics(valid_pairs, seeds=3)
    runs = [metrics.evaluate(valid_pairs, np.random.default_rng(s).random(len(valid_pairs))) for s in range(3)]
    for key in ("ndcg@10", "mrr", "p@5", "auc"):
        assert out[key] == pytest.approx(np.mean([r[key] for r in runs]))


def test_gate_fails_a_lossy_conversion_and_passes_a_faithful_one(valid_pairs):
    gains = valid_pairs["gain"].to_numpy()
    rng = np.random.default_rng(0)
    fp32 = 1 / (1 + np.exp(-(4 * gains - 2 + rng.normal(0, 1.0, len(gains)))))  # a good ranker
    faithful = fp32 + rng.normal(0, 1e-4, len(fp32))  # float rounding-sized differences
    lossy = fp32 + rng.normal(0, 0.25, len(fp32))     # a conversion whose error swaps products
    assert gate_scores(valid_pairs, fp32, faithful, "faithful")["passed"]
    with pytest.raises(BuildError, match=r"lossy loses 0\.\d+ NDCG@10 against FP32"):
        gate_scores(valid_pairs, fp32, lossy, "lossy")


def test_check_ndcg_margin_and_undefined_ndcg():
    assert check_ndcg(0.93, 0.93 - DEFAULT_MAX_NDCG_DROP / 2)["passed"]
    assert check_ndcg(0.93, 0.95)["passed"]  # a gain never fails
    with pytest.raises(BuildError, match="INT8 loses 0.0060"):
        check_ndcg(0.930, 0.924, "INT8")
    with pytest.raises(BuildError, match="undefined"):
        check_ndcg(None, 0.9)
    with pytest.raises(ValueError):
        check_ndcg(0.9, 0.9, max_drop=-0.1)


def test_eval_table_marks_a_failed_gate():
    rows = [evaluation.Row("pytorch-fp32", "PyTorch FP32", "variant"), evaluation.Row("ort-int8", "INT8", "variant")]
    df = _frame([("q", "a", 1), ("q", "b", 0), ("q", "c", 0), ("r", "a", 0), ("r", "d", 1)])
    rows[0].scores = np.array([0.9, 0.2, 0.1, 0.3, 0.8])
    rows[1].scores = np.array([0.1, 0.2, 0.9, 0.8, 0.3])  # both queries reversed
    for r in rows:
        r.metrics = metrics.evaluate(df, r.scores)
    evaluation._gate(rows, rows[0], df, DEFAULT_MAX_NDCG_DROP)
    assert rows[0].gate is None and rows[1].gate["passed"] is False
    table = evaluation.Table(rows, {"graded": False, "random_ndcg": 0.5, "reference": "pytorch-fp32",
                                    "reference_ndcg": rows[0].ndcg, "max_ndcg_drop": DEFAULT_MAX_NDCG_DROP})
    assert table.gates_failed == [rows[1]] and "**FAIL**" in table.to_markdown()


def test_bad_split_is_refused(tiny_model):
    with pytest.raises(ValueError, match="split"):
        evaluation.eval_pairs(tiny_model, split="train")


def test_engine_gate_scores_as_served(tiny_model, onnx_fp32, onnx_int8, table):
    from shoprank.quality_gate import gate_engines

    tab, df = table
    same = gate_engines(tiny_model, onnx_fp32, onnx_fp32, "FP32 again", valid=df)
    assert same["passed"] and same["ndcg_drop"] == 0.0 and same["max_abs_diff"] == 0.0
    int8 = gate_engines(tiny_model, onnx_fp32, onnx_int8, "INT8", max_drop=1.0, valid=df)
    # The build gate sees exactly the NDCG@10 the served ensemble has.
    assert int8["ndcg_candidate"] == pytest.approx(tab.row("served").ndcg, abs=1e-9)
    assert int8["ndcg_reference"] == pytest.approx(tab.row("onnx-fp32").ndcg, abs=1e-9)
    assert int8["queries"] == tab.row("served").metrics["queries"]["ndcg@10"]


def test_compare_models_on_one_split_and_refuses_models_with_other_splits(tiny_model, tmp_path):
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from shoprank.modeling import write_model_card

    root = Path(__file__).resolve().parent.parent
    other = tmp_path / "other-model"
    shutil.copytree(tiny_model, other)
    df = evaluation.eval_pairs(tiny_model, limit_queries=30)
    results = evaluation.compare_models([tiny_model, other], df, log=lambda _: None)
    assert results[0]["ndcg@10"] == results[1]["ndcg@10"] and "ndcg_diff" not in results[0]
    assert results[1]["ndcg_diff"]["mean"] == results[1]["ndcg_diff"]["low"] == 0.0
    assert "+0.0000 [+0.0000, +0.0000]" in evaluation.comparison_markdown(results)
    run = lambda *models: subprocess.run(  # noqa: E731
        [sys.executable, str(root / "build" / "compare.py"), *map(str, models), "--limit-queries", "30"],
        capture_output=True, text=True, timeout=300)
    done = run(tiny_model, other)
    assert done.returncode == 0, done.stderr
    assert "Δ NDCG vs first" in done.stdout and str(other) in done.stdout
    # Trained with another split seed: its "validation" rows may be the others' training rows.
    write_model_card(other, seed=99)
    refused = run(tiny_model, other)
    assert refused.returncode == 2 and "different data or split seeds" in refused.stderr
