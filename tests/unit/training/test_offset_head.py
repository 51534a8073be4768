"""The personalization head's fit: a monotone calibration of the logit, then what the features add."""
from __future__ import annotations

import numpy as np
import pytest

from shoprank.serving.head import ScoringHead
from shoprank.training.head import L2_TOLERANCE, fit_offset_head


def _theta(head) -> np.ndarray:
    return np.array(list(head.meta["theta_per_unit"].values()))


def test_learns_the_feature_that_drives_clicks_and_keeps_the_logit_order():
    rng = np.random.default_rng(0)
    n = 6000
    logit = rng.normal(0, 2, n).astype(np.float32)
    liked = rng.integers(0, 2, n).astype(np.float32)
    noise = rng.normal(0, 1, n).astype(np.float32)
    p = 1 / (1 + np.exp(-(0.5 * logit + 1.5 * liked - 1.0)))
    y = (rng.random(n) < p).astype(np.float32)
    head = fit_offset_head(logit, np.stack([liked, noise], 1), y, ("liked", "noise"), epochs=300)
    theta = _theta(head)
    assert 0.3 < head.meta["logit_weight"] < 0.7          # calibrated to the clicks
    assert theta[0] > 1.0 and abs(theta[1]) < 0.2           # the driving feature, not the noise
    out = head.logits(np.array([1.0, 2.0]), np.array([[0.0, 0.0], [0.0, 0.0]]))
    assert out[1] > out[0]                                  # same features: the logit's order
    liked_first = head.logits(np.array([1.0, 1.0]), np.array([[1.0, 0.0], [0.0, 0.0]]))
    assert liked_first[0] > liked_first[1]


def test_calibration_is_monotone_and_bends_with_the_clicks(tmp_path):
    # click log-odds flat below 0 and steep above: a straight line cannot follow it
    rng = np.random.default_rng(2)
    n = 8000
    logit = rng.uniform(-3, 2, n).astype(np.float32)
    p = 1 / (1 + np.exp(-(-2.0 + 0.2 * logit + 2.5 * np.maximum(logit, 0.0))))
    y = (rng.random(n) < p).astype(np.float32)
    head = fit_offset_head(logit, np.zeros((n, 1), np.float32), y, ("f",), epochs=400)
    assert min(head.meta["logit_slopes"]) > 0
    g = head.logits(np.array([-2.5, -1.5, 0.5, 1.5], np.float32), np.zeros((4, 1), np.float32))
    assert g[3] - g[2] > 3 * (g[1] - g[0])                  # steep where the clicks are, flat below
    grid = np.linspace(-4, 3, 200, dtype=np.float32)
    out = head.logits(grid, np.zeros((200, 1), np.float32))
    assert np.all(np.diff(out) > 0)                          # no feature: exactly the logit's order
    # the served form (one ReLU layer, saved and loaded) is the fitted function
    loaded = ScoringHead.load(head.save(tmp_path / "head"))
    assert np.allclose(loaded.logits(grid, np.ones((200, 1), np.float32)),
                       out + head.meta["theta_per_unit"]["f"], atol=1e-4)


def test_non_negative_weights_where_the_sign_is_known():
    rng = np.random.default_rng(3)
    n = 4000
    logit = rng.normal(0, 1, n).astype(np.float32)
    x = rng.integers(0, 2, (n, 1)).astype(np.float32)
    y = (rng.random(n) < 1 / (1 + np.exp(-(logit - 1.0 * x[:, 0])))).astype(np.float32)   # clicks fall with x
    free = fit_offset_head(logit, x, y, ("x",), epochs=300)
    signed = fit_offset_head(logit, x, y, ("x",), epochs=300, nonneg=True)
    assert _theta(free)[0] < -0.5
    assert _theta(signed)[0] == 0.0


def test_shrinkage_is_chosen_on_the_held_out_rows():
    rng = np.random.default_rng(4)
    n = 3000
    logit = rng.normal(0, 1, n).astype(np.float32)
    noise = rng.normal(0, 1, (n, 8)).astype(np.float32)     # nothing to learn from the features
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    held = np.arange(n) % 4 == 0
    grid = (1e-4, 10.0)
    head = fit_offset_head(logit, noise, y, tuple(f"n{i}" for i in range(8)), epochs=200, l2=grid, holdout=held)
    assert set(head.meta["l2_heldout_bce"]) == {"0.0001", "10.0"}
    losses = head.meta["l2_heldout_bce"]
    best = min(losses.values())
    # the most shrinkage among the (near-)best: noise features should be shrunk away
    assert head.meta["l2"] == max(v for v in grid if losses[str(v)] <= best * (1 + L2_TOLERANCE) + 1e-6)
    assert head.meta["l2"] == 10.0
    with pytest.raises(ValueError, match="held-out rows"):
        fit_offset_head(logit, noise, y, tuple(f"n{i}" for i in range(8)), epochs=10, l2=grid)


def test_weights_count():
    rng = np.random.default_rng(1)
    logit = np.zeros(2000, np.float32)
    x = rng.integers(0, 2, (2000, 1)).astype(np.float32)
    y = x[:, 0].copy()          # the feature decides ...
    w = np.where(x[:, 0] == 1, 1.0, 1e-3).astype(np.float32)
    unweighted = fit_offset_head(logit, x, y, ("f",), epochs=200)
    weighted = fit_offset_head(logit, x, y, ("f",), w, epochs=200)
    # ... and rows with x = 0 barely count when weighted, so the prediction is pulled toward clicks
    middle = (np.zeros(1, np.float32), np.full((1, 1), 0.5, np.float32))
    assert weighted.logits(*middle)[0] > unweighted.logits(*middle)[0]
