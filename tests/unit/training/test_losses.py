"""The pairwise (RankNet) training term and its whole-query batches; the pointwise loss choice."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from shoprank.data.split import query_groups
from shoprank.training.batches import query_batches
from shoprank.training.finetune import TrainConfig, finetune
from shoprank.training.losses import pairwise_loss
from shoprank.training.model import build_tiny_model
from tests.conftest import TEST_MAX_LENGTH


def test_query_batches_keep_queries_whole_and_cover_every_row_once():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 200, size=1500)  # 200 queries, ~7.5 rows each, rows interleaved
    groups = [idx for _, idx in query_groups(pd.DataFrame({"query": codes}))]
    batches = list(query_batches(groups, 32, np.random.default_rng(1)))
    assert sorted(np.concatenate(batches).tolist()) == list(range(1500))
    seen = set()
    for b in batches:
        queries = set(codes[b].tolist())
        assert not queries & seen  # a query never spans two batches
        seen |= queries
        assert all((codes[b] == q).sum() == (codes == q).sum() for q in queries)
    assert all(len(b) >= 32 for b in batches[:-1])
    assert [len(b) for b in batches] != [len(b) for b in query_batches(groups, 32, np.random.default_rng(2))]


def test_pairwise_loss_matches_ranknet_by_hand_and_ignores_other_queries():
    import torch

    logits = torch.tensor([2.0, 0.5, 1.0, 3.0])
    labels = torch.tensor([1.0, 0.5, 0.0, 1.0])
    codes = torch.tensor([0, 0, 0, 1])  # the last row is alone in its query: no pair
    # Pairs (better, worse, gap): (0,1,.5) (0,2,1) (1,2,.5)
    def sp(x):
        return math.log1p(math.exp(x))

    expected = (0.5 * sp(0.5 - 2.0) + 1.0 * sp(1.0 - 2.0) + 0.5 * sp(1.0 - 0.5)) / 2.0
    assert pairwise_loss(logits, labels, codes).item() == pytest.approx(expected, rel=1e-6)
    # Equal labels or single-row queries give no pair and a zero loss that still backpropagates.
    flat = torch.tensor([1.0, 2.0], requires_grad=True)
    loss = pairwise_loss(flat, torch.tensor([0.5, 0.5]), torch.tensor([0, 0]))
    loss.backward()
    assert loss.item() == 0.0 and flat.grad is not None
    # The gradient raises the better product's logit and lowers the worse one's.
    x = torch.tensor([0.0, 0.0], requires_grad=True)
    pairwise_loss(x, torch.tensor([1.0, 0.0]), torch.tensor([3, 3])).backward()
    assert x.grad[0] < 0 < x.grad[1]


def test_finetune_with_pairwise_term_trains_and_records_it(build_dir):
    base = build_tiny_model(build_dir / "tiny-base-pairwise")
    summary = finetune(TrainConfig(base_model=str(base), out_dir=str(build_dir / "pairwise"), max_steps=20,
                                   batch_size=32, lr=1e-3, max_length=TEST_MAX_LENGTH, evals_per_epoch=1,
                                   threads=2, pairwise_weight=1.0))
    assert summary["config"]["pairwise_weight"] == 1.0
    assert summary["best"]["ndcg@10"] is not None and (build_dir / "pairwise" / "model.safetensors").exists()


def test_mse_loss_option_trains_and_an_unknown_loss_is_refused(build_dir):
    base = build_tiny_model(build_dir / "tiny-base-mse")
    cfg = {"base_model": str(base), "max_steps": 10, "batch_size": 32, "lr": 1e-3, "max_length": TEST_MAX_LENGTH,
           "evals_per_epoch": 1, "threads": 2}
    summary = finetune(TrainConfig(out_dir=str(build_dir / "mse"), loss="mse", **cfg))
    assert summary["config"]["loss"] == "mse" and summary["best"]["rmse_label"] is not None
    with pytest.raises(ValueError, match="loss must be 'bce' or 'mse'"):
        finetune(TrainConfig(out_dir=str(build_dir / "bad-loss"), loss="hinge", **cfg))
    assert not (build_dir / "bad-loss").exists()
