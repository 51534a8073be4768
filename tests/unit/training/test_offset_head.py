"""The personalization head's fit: a calibrated logit offset, then what the features add."""
from __future__ import annotations

import numpy as np

from shoprank.training.head import fit_offset_head


def test_learns_the_feature_that_drives_clicks_and_keeps_the_logit_order():
    rng = np.random.default_rng(0)
    n = 6000
    logit = rng.normal(0, 2, n).astype(np.float32)
    liked = rng.integers(0, 2, n).astype(np.float32)
    noise = rng.normal(0, 1, n).astype(np.float32)
    p = 1 / (1 + np.exp(-(0.5 * logit + 1.5 * liked - 1.0)))
    y = (rng.random(n) < p).astype(np.float32)
    head = fit_offset_head(logit, np.stack([liked, noise], 1), y, ("liked", "noise"), epochs=300)
    theta = head.weights[0][1:, 0] / head.scale[1:]
    assert 0.3 < head.meta["logit_weight"] < 0.7          # calibrated to the clicks
    assert theta[0] > 1.0 and abs(theta[1]) < 0.2           # the driving feature, not the noise
    out = head.logits(np.array([1.0, 2.0]), np.array([[0.0, 0.0], [0.0, 0.0]]))
    assert out[1] > out[0]                                  # same features: the logit's order
    liked_first = head.logits(np.array([1.0, 1.0]), np.array([[1.0, 0.0], [0.0, 0.0]]))
    assert liked_first[0] > liked_first[1]


def test_weights_count():
    rng = np.random.default_rng(1)
    logit = np.zeros(2000, np.float32)
    x = rng.integers(0, 2, (2000, 1)).astype(np.float32)
    y = x[:, 0].copy()          # the feature decides ...
    w = np.where(x[:, 0] == 1, 1.0, 1e-3).astype(np.float32)
    unweighted = fit_offset_head(logit, x, y, ("f",), epochs=200)
    weighted = fit_offset_head(logit, x, y, ("f",), w, epochs=200)
    # ... and rows with x = 0 barely count when weighted, so the bias is pulled toward clicks
    assert weighted.biases[0][0] > unweighted.biases[0][0]
