"""Ranking metrics against values computed by hand (the arithmetic is written out)."""
import math

import numpy as np
import pandas as pd
import pytest

from shoprank.quality import metrics

L3 = math.log2(3)  # 1.584963


def test_dcg_by_hand():
    # gains in ranked order [3, 2, 3, 0, 1, 2], discount log2(rank + 1):
    #   3/1 + 2/1.58496 + 3/2 + 0/2.32193 + 1/2.58496 + 2/2.80735
    # = 3 + 1.261860 + 1.5 + 0 + 0.386853 + 0.712414 = 6.861127
    assert metrics.dcg_at_k([3, 2, 3, 0, 1, 2], 6) == pytest.approx(6.861127, abs=1e-6)
    assert metrics.dcg_at_k([3, 2, 3, 0, 1, 2], 3) == pytest.approx(3 + 2 / L3 + 1.5)  # 5.761860
    assert metrics.dcg_at_k([3, 2, 3, 0, 1, 2], 100) == pytest.approx(6.861127, abs=1e-6)
    assert metrics.dcg_at_k([], 10) == 0.0


def test_ndcg_by_hand_linear_gain():
    gains = [3, 2, 3, 0, 1, 2]
    scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]  # ranks the items in the listed order
    # ideal order [3, 3, 2, 2, 1, 0]: 3 + 3/1.58496 + 2/2 + 2/2.32193 + 1/2.58496 + 0
    #                              = 3 + 1.892789 + 1 + 0.861353 + 0.386853 = 7.140995
    assert metrics.ndcg_at_k(scores, gains, k=6) == pytest.approx(6.861127 / 7.140995, abs=1e-6)  # 0.960808
    # @3: (3 + 1.261860 + 1.5) / (3 + 1.892789 + 1) = 5.761860 / 5.892789 = 0.977781
    assert metrics.ndcg_at_k(scores, gains, k=3) == pytest.approx(0.977781, abs=1e-6)
    # Linear, not exponential: gains ranked [1, 2] give (1 + 2/1.58496) / (2 + 1/1.58496)
    # = 2.261860 / 2.630930 = 0.859719; with 2**g - 1 it would be (1 + 3/1.58496) / (3 + 1/1.58496) = 0.796711.
    assert metrics.ndcg_at_k([0.9, 0.1], [1, 2]) == pytest.approx((1 + 2 / L3) / (2 + 1 / L3))
    assert metrics.ndcg_at_k([0.9, 0.1], [1, 2]) == pytest.approx(0.859719, abs=1e-6)
    assert metrics.ndcg_at_k([0.1, 0.5, 0.3], [0, 2, 1]) == 1.0


def test_ndcg_ties_keep_original_order_and_none_without_gain():
    # Equal scores: row 0 stays first, so the relevant row 1 lands at rank 2 -> 1/log2(3) = 0.630930.
    assert metrics.ndcg_at_k([0.5, 0.5, 0.1], [0, 1, 0]) == pytest.approx(1 / L3)
    assert metrics.ndcg_at_k([0.5, 0.5, 0.1], [1, 0, 0]) == 1.0
    assert metrics.ndcg_at_k([0.3, 0.2], [0, 0]) is None


def test_mrr_by_hand():
    assert metrics.mrr([0.9, 0.8, 0.7, 0.6], [False, False, True, True]) == pytest.approx(1 / 3)
    assert metrics.mrr([0.1, 0.8, 0.7], [True, False, False]) == pytest.approx(1 / 3)
    assert metrics.mrr([0.2, 0.2], [False, True]) == 0.5  # tie: original order decides
    assert metrics.mrr([0.9, 0.1], [False, False]) is None


def test_precision_at_k_by_hand():
    scores, relevant = [0.1, 0.4, 0.3, 0.2], [True, True, False, False]
    # ranked rows 1, 2, 3, 0 -> relevant T, F, F, T
    assert metrics.precision_at_k(scores, relevant, 1) == 1.0
    assert metrics.precision_at_k(scores, relevant, 2) == 0.5
    assert metrics.precision_at_k(scores, relevant, 3) == pytest.approx(1 / 3)
    assert metrics.precision_at_k(scores, relevant, 10) == 0.5  # 2 of the 4 items there are


def test_roc_auc_against_pair_count():
    scores = [0.9, 0.4, 0.4, 0.2, 0.6]
    labels = [1, 1, 0, 0, 0]
    # positive vs negative pairs: 0.9>0.4, 0.9>0.2, 0.9>0.6 -> 3; 0.4=0.4 -> 0.5;
    # 0.4>0.2 -> 1; 0.4<0.6 -> 0.  (3 + 0.5 + 1) / (2 * 3) = 0.75
    assert metrics.roc_auc(scores, labels) == pytest.approx(0.75)
    pairs = [(p, n) for p, lp in zip(scores, labels) if lp for n, ln in zip(scores, labels) if not ln]
    assert metrics.roc_auc(scores, labels) == pytest.approx(
        sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs) / len(pairs))
    assert metrics.roc_auc([0.1, 0.2], [1, 1]) is None
    assert metrics.roc_auc([0.1, 0.2], [0, 0]) is None


def test_rmse_spearman_overlap_by_hand():
    # diffs -1, 0, 2 -> sqrt((1 + 0 + 4) / 3) = 1.290994
    assert metrics.rmse([0, 1, 2], [1, 1, 0]) == pytest.approx(1.290994, abs=1e-6)
    # no ties: d = 0, 1, 1, 0 -> 1 - 6 * 2 / (4 * (16 - 1)) = 0.8
    assert metrics.spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    # ties: ranks b = 1, 2, 3.5, 5, 3.5; Pearson of ranks = 8 / sqrt(10 * 9.5) = 0.820783
    assert metrics.spearman([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]) == pytest.approx(0.820783, abs=1e-6)
    assert metrics.spearman([1, 1, 1], [1, 2, 3]) is None
    assert metrics.spearman([1], [1]) is None
    # top-2 {0, 1} vs {0, 2}: one of two shared
    assert metrics.topk_overlap([0.9, 0.8, 0.7, 0.1], [0.9, 0.1, 0.8, 0.7], k=2) == 0.5
    assert metrics.topk_overlap([0.9, 0.8], [0.1, 0.2], k=10) == 1.0


def _frame(with_attrs=True):
    df = pd.DataFrame({
        "query": ["q1", "q1", "q1", "q2", "q2", "q3"],
        "text": list("abcdef"),
        "gain": [2.0, 0.0, 1.0, 0.0, 1.0, 2.0],
    })
    df["label"] = (df["gain"] / 2).astype(np.float32)
    df["relevant"] = df["gain"] >= 1.5
    if with_attrs:
        df.attrs["max_gain"] = 2.0
    return df


SCORES = [0.2, 0.9, 0.5, 0.7, 0.3, 0.1]


@pytest.mark.parametrize("with_attrs", [True, False])
def test_evaluate_by_hand(with_attrs):
    out = metrics.evaluate(_frame(with_attrs), SCORES, k=10)
    # q1: ranked rows 1, 2, 0 -> gains 0, 1, 2: (0 + 1/1.58496 + 2/2) / (2 + 1/1.58496) = 0.619906
    # q2: ranked rows 3, 4 -> gains 0, 1: (1/1.58496) / 1 = 0.630930; no relevant -> no mrr, p@5
    # q3: one product only -> skipped per query
    assert out["ndcg@10"] == pytest.approx((0.619906 + 0.630930) / 2, abs=1e-6)
    assert out["mrr"] == pytest.approx(1 / 3)  # q1's relevant row 0 is ranked third
    assert out["p@5"] == pytest.approx(1 / 3)  # 1 relevant of q1's 3 products
    assert out["queries"] == {"ndcg@10": 2, "mrr": 1, "p@5": 1}
    # pooled: relevant rows score 0.2 and 0.1, every negative scores higher
    assert out["auc"] == 0.0
    # labels 1, 0, .5, 0, .5, 1: diffs -.8, .9, 0, .7, -.2, -.9 -> sqrt(2.79 / 6) = 0.681909
    assert out["rmse_label"] == pytest.approx(0.681909, abs=1e-6)
    # grade scale: predicted gain 2 * score, so twice the label RMSE = 1.363818
    assert out["rmse_grade"] == pytest.approx(1.363818, abs=1e-6)


def test_evaluate_binary_has_no_grade_rmse_and_checks_length():
    df = _frame()
    df["gain"] = df["relevant"].astype(float)
    df["label"] = df["gain"].astype(np.float32)
    df.attrs["max_gain"] = 1.0
    assert "rmse_grade" not in metrics.evaluate(df, SCORES)
    with pytest.raises(ValueError):
        metrics.evaluate(df, SCORES[:-1])


def test_agreement_by_hand():
    other = [0.2, 0.5, 0.9, 0.7, 0.3, 0.1]  # rows 1 and 2 swapped
    out = metrics.agreement(SCORES, other, _frame(), k=1)
    # ranks 2, 6, 4, 5, 3, 1 vs 2, 4, 6, 5, 3, 1: d^2 sum 8 -> 1 - 6 * 8 / (6 * 35) = 0.771429
    assert out["spearman"] == pytest.approx(0.771429, abs=1e-6)
    assert out["topk_overlap"] == 0.5  # q1 top-1 differs (row 1 vs 2), q2 agrees, q3 skipped
    assert out["max_abs_diff"] == pytest.approx(0.4)


def test_random_baseline():
    one = pd.DataFrame({"query": ["q", "q"], "gain": [1.0, 0.0], "relevant": [True, False],
                        "label": np.float32([1, 0])})
    # each random order gives 1 (relevant first) or 1/log2(3) = 0.630930
    value = metrics.random_baseline(one, seeds=20)
    assert 1 / L3 <= value <= 1.0
    assert value == metrics.random_baseline(one, seeds=20)  # seeded, repeatable
    flat = one.assign(gain=[1.0, 1.0])
    assert metrics.random_baseline(flat) == 1.0  # equal gains: every order is ideal


def test_ndcg_difference_is_paired_and_its_interval_brackets_the_mean():
    rng = np.random.default_rng(0)
    rows = [(f"q{q}", g) for q in range(60) for g in rng.integers(0, 3, size=6)]
    df = pd.DataFrame({"query": [q for q, _ in rows], "gain": [float(g) for _, g in rows]})
    gains = df["gain"].to_numpy()
    perfect, reverse = gains + 0.01 * rng.random(len(df)), -gains
    same = metrics.ndcg_difference(df, perfect, perfect)
    assert same["mean"] == same["low"] == same["high"] == 0.0
    d = metrics.ndcg_difference(df, reverse, perfect)
    per = metrics.per_query_ndcg(df, perfect) - metrics.per_query_ndcg(df, reverse)
    assert d["mean"] == pytest.approx(np.nanmean(per)) and d["queries"] == np.count_nonzero(~np.isnan(per))
    assert 0 < d["low"] < d["mean"] < d["high"]
    # Its mean is the difference of evaluate's NDCG means (same queries, same skip rules).
    df["label"], df["relevant"] = gains / 2, gains >= 2
    noisy = gains + rng.normal(0, 1.0, len(df))
    expected = metrics.evaluate(df, noisy)["ndcg@10"] - metrics.evaluate(df, reverse)["ndcg@10"]
    assert metrics.ndcg_difference(df, reverse, noisy)["mean"] == pytest.approx(expected)
