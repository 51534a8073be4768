"""Position bias from randomized traffic and the inverse-propensity labels, on hand-computed examples."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shoprank.online.propensities import estimate_propensities, fit_power_law, log_pairs


def _frames(impressions, clicks):
    """impressions: [(request_id, query, [texts in shown order], randomized)];
    clicks: [(request_id, position)]."""
    imps = pd.DataFrame([(r, q, int(rand)) for r, q, _, rand in impressions],
                        columns=["request_id", "query", "randomized"])
    shown = pd.DataFrame([(r, p, t) for r, _, texts, _ in impressions for p, t in enumerate(texts)],
                         columns=["request_id", "position", "text"])
    events = pd.DataFrame([(r, p, "click") for r, p in clicks], columns=["request_id", "position", "kind"])
    return imps, shown, events


def test_ips_labels_on_a_hand_computed_example():
    imps, shown, events = _frames(
        [("r1", "drill", ["A", "B", "C"], False), ("r2", "drill", ["B", "C", "A"], False),
         ("r3", "drill", ["C", "A", "B"], False)],
        [("r1", 0), ("r3", 2), ("r2", 1), ("r3", 0)])  # A@0, B@2, C@1, C@0
    theta = np.array([1.0, 0.5, 0.25])
    ips = log_pairs(imps, shown, events, theta).set_index("text")
    naive = log_pairs(imps, shown, events, None).set_index("text")
    # Every product is shown once at each position: E = 1 + 0.5 + 0.25 = 1.75 expected examinations.
    # A: clicked at 0 only      -> 1 click  -> label 1 / 1.75, weight 1.75
    # B: clicked at 2 only      -> 1 click  -> label 1 / 1.75, weight 1.75 (the same: a click low
    #    on the page is worth as much as one at the top once examination is accounted for)
    # C: clicked at 1 and 0     -> 2 clicks > E -> label 1, weight 2
    assert ips.loc["A", "label"] == pytest.approx(1 / 1.75) and ips.loc["A", "weight"] == pytest.approx(1.75)
    assert ips.loc["B", "label"] == pytest.approx(1 / 1.75) and ips.loc["B", "weight"] == pytest.approx(1.75)
    assert ips.loc["C", "label"] == pytest.approx(1.0) and ips.loc["C", "weight"] == pytest.approx(2.0)
    assert ips["clicks"].to_dict() == {"A": 1, "B": 1, "C": 2}
    # Naive: click rates with weight = impressions.
    assert naive["label"].to_dict() == pytest.approx({"A": 1 / 3, "B": 1 / 3, "C": 2 / 3})
    assert naive["weight"].tolist() == [3.0, 3.0, 3.0]
    # One unclicked impression low on the page is weak negative evidence (weight theta), and
    # positions beyond the curve use its last value; the floor bounds every weight.
    imps, shown, events = _frames([("r1", "q", ["A", "B", "C", "D"], False)], [("r1", 1)])
    pairs = log_pairs(imps, shown, events, np.array([1.0, 0.8, 0.01]), floor=0.05).set_index("text")
    assert pairs["weight"].to_dict() == pytest.approx({"A": 1.0, "B": 1.0, "C": 0.05, "D": 0.05})
    assert pairs["label"].to_dict() == pytest.approx({"A": 0.0, "B": 1.0, "C": 0.0, "D": 0.0})


def test_propensities_from_randomized_traffic():
    rng = np.random.default_rng(0)
    theta_true = (np.arange(6) + 1.0) ** -0.8
    impressions, clicks = [], []
    for i in range(3000):
        texts = [f"p{j}" for j in rng.permutation(10)[:6]]
        randomized = i % 3 == 0
        impressions.append((f"r{i}", "q", texts, randomized))
        for pos in range(6):
            # The non-randomized traffic clicks only the top: it must not leak into the estimate.
            p = 0.4 * theta_true[pos] if randomized else (0.9 if pos == 0 else 0.0)
            if rng.random() < p:
                clicks.append((f"r{i}", pos))
    imps, shown, events = _frames(impressions, clicks)
    theta = estimate_propensities(imps, shown, events)
    np.testing.assert_allclose(theta, theta_true, atol=0.04)
    assert theta[0] == 1.0 and np.all(np.diff(theta) < 0)
    assert fit_power_law([0, 1, 2, 3], [1000] * 4, [400, 200, 133, 100]) == pytest.approx(1.0, abs=0.02)
    with pytest.raises(ValueError, match="not enough exploration traffic"):
        estimate_propensities(imps[imps["randomized"] == 0], shown, events)
