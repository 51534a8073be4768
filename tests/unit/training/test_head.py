"""Training the scoring head: it learns what the features add, is chosen on training queries,
and out-of-fold logits come only from models that held the pair out."""
import numpy as np
import pandas as pd
import pytest

from shoprank.data.split import fold_of
from shoprank.errors import DataError
from shoprank.training.head import HeadFit, choose_and_fit, fit_head
from shoprank.training.oof import fold_dir, out_of_fold_logits


def _frame(queries=60, per_query=8, seed=0):
    """Labels depend on a weak logit and on one feature the logit does not see."""
    rng = np.random.default_rng(seed)
    rows = []
    for q in range(queries):
        for i in range(per_query):
            hidden = rng.random()
            match = float(rng.random() < 0.5)
            label = float(np.clip(0.2 + 0.3 * hidden + 0.4 * match + rng.normal(0, 0.05), 0, 1))
            rows.append((f"query {q}", f"text {q}-{i}", label, hidden, match))
    df = pd.DataFrame(rows, columns=["query", "text", "label", "hidden", "match"])
    df["gain"] = df["label"] * 2
    df["relevant"] = df["gain"] >= 1.5
    df.attrs.update({"max_gain": 2.0, "relevant_gain": 1.5})
    logits = (df["hidden"].to_numpy() * 2 - 1 + rng.normal(0, 0.3, len(df))).astype(np.float32)
    features = np.column_stack([df["match"], rng.normal(size=len(df))]).astype(np.float32)
    return df, logits, features


def test_the_head_learns_what_the_logit_misses():
    df, logits, features = _frame()
    labels = df["label"].to_numpy(np.float32)
    head = fit_head(logits, features, labels, ("match", "noise"), hidden=(), fit=HeadFit(epochs=200))
    pred = 1 / (1 + np.exp(-head.logits(logits, features)))
    alone = 1 / (1 + np.exp(-fit_head(logits, features[:, 1:], labels, ("noise",), (), HeadFit(epochs=200))
                            .logits(logits, features[:, 1:])))
    assert np.sqrt(np.mean((pred - labels) ** 2)) < 0.7 * np.sqrt(np.mean((alone - labels) ** 2))
    weights = head.weights[0][:, 0]
    assert weights[1] > 0 and abs(weights[1]) > 3 * abs(weights[2])  # the match feature, not the noise


def test_the_architecture_is_chosen_on_held_out_training_queries():
    df, logits, features = _frame()
    head, choice = choose_and_fit(df, logits, features, ("match", "noise"), HeadFit(epochs=100))
    assert choice["chosen"] in choice["table"] and head.meta["architecture"] == choice["chosen"]
    assert 0 < choice["inner_queries"] < df["query"].nunique()
    best = choice["table"][choice["chosen"]]["ndcg@10"]
    assert best >= choice["table"]["logit alone"]["ndcg@10"]


def test_folds_partition_the_queries_stably():
    queries = [f"q{i}" for i in range(400)]
    folds = [fold_of(q, 2, 13) for q in queries]
    assert set(folds) == {0, 1} and 150 < sum(folds) < 250
    assert folds == [fold_of(q.upper() + " ", 2, 13) for q in queries]  # case and outer spaces ignored


def test_out_of_fold_logits_refuse_a_missing_fold_model(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "shoprank.json").write_text('{"seed": 13, "data": "x.csv"}')
    assert fold_dir(model, 1, 2).name == "model.fold1of2"
    with pytest.raises(DataError, match="without fold 0 of 2"):
        out_of_fold_logits(model, pd.DataFrame({"query": ["a", "b"], "text": ["x", "y"]}), 2)
