"""`make eval`'s parts without a server: baselines against hand and numpy computations, the
table marking a refused variant, the model's rows, and `make compare`."""
from __future__ import annotations

import math
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from shoprank.data.split import model_pairs
from shoprank.measure.eval.baselines import BM25, bm25_scores, bm25_tokens, random_metrics, zero_shot_scores
from shoprank.measure.eval.compare import compare_models, comparison_markdown
from shoprank.measure.eval.run import gate_rows, mean_label_baseline
from shoprank.measure.eval.table import Row, Table
from shoprank.model_card import write_model_card
from shoprank.quality import metrics
from shoprank.quality.gate import MAX_NDCG_DROP


def _frame(rows, max_gain=1.0):
    df = pd.DataFrame(rows, columns=["query", "text", "gain"])
    df["label"] = (df["gain"] / max_gain).astype(np.float32)
    df["relevant"] = df["gain"] >= max_gain
    df.attrs.update(mapping="clicks", max_gain=max_gain, relevant_gain=max_gain, source="test")
    return df


def test_bm25_matches_a_hand_computed_example():
    df = _frame([("red paint", "red drill", 0), ("red paint", "red red paint can", 1),
                 ("red paint", "blue paint", 0), ("drill", "red drill", 1)])  # "red drill" counted once
    scores = bm25_scores(df)
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
    model = BM25(["red drill", "blue paint"])
    assert model.score("red red", "red drill") == model.score("red", "red drill")  # distinct query terms
    assert model.score("hammer", "red drill") == 0.0
    assert bm25_tokens("1/2-in. PVC Pipe") == ["1", "2", "in", "pvc", "pipe"]


def test_zero_shot_cosine_matches_numpy(tiny_model, build_dir):
    import torch
    from transformers import AutoModel, AutoTokenizer

    base = build_dir / "tiny-base"
    df = _frame([("cordless drill", "DEWALT 20V MAX cordless drill driver kit", 1),
                 ("cordless drill", "white interior paint, 1 gallon", 0),
                 ("vanity", "Glacier Bay 30 in. bathroom vanity in white with a long description", 1)])
    scores = zero_shot_scores(df, base)
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
    out = random_metrics(valid_pairs, seeds=3)
    runs = [metrics.evaluate(valid_pairs, np.random.default_rng(s).random(len(valid_pairs))) for s in range(3)]
    for key in ("ndcg@10", "mrr", "p@5", "auc"):
        assert out[key] == pytest.approx(np.mean([r[key] for r in runs]))


def test_eval_table_marks_a_failed_gate():
    rows = [Row("pytorch-fp32", "PyTorch FP32", "variant"), Row("ort-int8", "INT8", "variant")]
    df = _frame([("q", "a", 1), ("q", "b", 0), ("q", "c", 0), ("r", "a", 0), ("r", "d", 1)])
    rows[0].scores = np.array([0.9, 0.2, 0.1, 0.3, 0.8])
    rows[1].scores = np.array([0.1, 0.2, 0.9, 0.8, 0.3])  # both queries reversed
    for r in rows:
        r.metrics = metrics.evaluate(df, r.scores)
    gate_rows(rows, rows[0], df, MAX_NDCG_DROP)
    assert rows[0].gate is None and rows[1].gate["passed"] is False and "INT8 loses" in rows[1].gate["reason"]
    table = Table(rows, {"graded": False, "random_ndcg": 0.5, "reference": "pytorch-fp32",
                                    "reference_ndcg": rows[0].ndcg, "max_ndcg_drop": MAX_NDCG_DROP})
    assert table.gates_failed == [rows[1]] and "**FAIL**" in table.to_markdown()


def test_bad_split_is_refused(tiny_model):
    with pytest.raises(ValueError, match="part must be one of"):
        model_pairs(tiny_model, "test")


def test_compare_models_on_one_split_and_refuses_models_with_other_splits(tiny_model, tmp_path):
    other = tmp_path / "other-model"
    shutil.copytree(tiny_model, other)
    df = model_pairs(tiny_model, "valid", limit_queries=30)
    results = compare_models([tiny_model, other], df, log=lambda _: None)
    assert results[0]["ndcg@10"] == results[1]["ndcg@10"] and "ndcg_diff" not in results[0]
    assert results[1]["ndcg_diff"]["mean"] == results[1]["ndcg_diff"]["low"] == 0.0
    assert "+0.0000 [+0.0000, +0.0000]" in comparison_markdown(results)
    def run(*models):
        return subprocess.run([sys.executable, "-m", "shoprank.cli", "compare", *map(str, models),
                               "--limit-queries", "30"], capture_output=True, text=True, timeout=300)

    done = run(tiny_model, other)
    assert done.returncode == 0, done.stderr
    assert "Δ NDCG vs first" in done.stdout and str(other) in done.stdout
    # Trained with another split seed: its "validation" rows may be the others' training rows.
    write_model_card(other, seed=99)
    refused = run(tiny_model, other)
    assert refused.returncode == 2 and "different data or split seeds" in refused.stderr


def test_mean_label_baseline_names_where_it_comes_from(tiny_model, valid_pairs):
    train = model_pairs(tiny_model, "train")
    value, source = mean_label_baseline(tiny_model, valid_pairs)
    assert value == pytest.approx(float(train["label"].mean())) and source == "training split"
    everything = model_pairs(tiny_model, "all")
    value, source = mean_label_baseline(tiny_model, everything)
    assert value == pytest.approx(float(everything["label"].mean())) and "no training split" in source
    bad = valid_pairs.copy()
    bad.attrs = {**valid_pairs.attrs, "source": "/nowhere/missing.csv"}
    with pytest.raises(FileNotFoundError):  # an error is an error, not a quieter baseline
        mean_label_baseline(tiny_model, bad)
