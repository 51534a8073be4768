"""Both explanation methods on known scorers and on the tiny model: attributions that add up,
land on the right words and order deletion curves as they should."""
from __future__ import annotations

import numpy as np
import pytest

from shoprank.explain.agreement import agreement, spearman
from shoprank.explain.faithfulness import deletion_curves
from shoprank.explain.occlusion import occlusion
from shoprank.explain.words import EMPTY_QUERY, PairAttribution, split_words

WEIGHTS = {"drill": 2.0, "cordless": 1.0, "paint": -1.5, "20v": 0.5}


def additive_group(query, texts):
    """logit = sum of the known weights of the pair's words: every word's true effect is its weight."""
    q = sum(WEIGHTS.get(w.lower(), 0.0) for w in split_words(query))
    return np.array([q + sum(WEIGHTS.get(w.lower(), 0.0) for w in split_words(t)) for t in texts])


def overlap_group(query, texts):
    """logit = how many product words appear in the query: a lexical matcher."""
    qs = {w.lower() for w in split_words(query)}
    return np.array([float(sum(w.lower() in qs for w in split_words(t))) for t in texts])


def test_occlusion_recovers_an_additive_scorers_weights():
    calls = []

    def scorer(query, texts):
        calls.append(query)
        return additive_group(query, texts)

    query, texts = "cordless drill", ["DEWALT 20V drill kit", "white paint", "x"]
    out = occlusion(query, texts, scorer)
    assert [a.text for a in out] == texts
    assert len(calls) == 1 + 2  # the base group with every product variant, then one per query word
    np.testing.assert_allclose(out[0].text_scores, [0.0, 0.5, 2.0, 0.0])
    np.testing.assert_allclose(out[1].text_scores, [0.0, -1.5])
    for a in out:
        np.testing.assert_allclose(a.query_scores, [1.0, 2.0])
        assert a.logit == pytest.approx(additive_group(query, [a.text])[0])


def test_a_word_shared_by_query_and_product_ranks_first():
    out = occlusion("cordless hammer drill", ["Milwaukee M18 brushless drill driver"], overlap_group)[0]
    assert sorted(field for field, word, _ in out.top_words(2) if word == "drill") == ["query", "text"]
    assert out.text_scores[split_words(out.text).index("drill")] == 1.0
    assert np.count_nonzero(out.scores()) == 2  # only the shared word, on either side, matters


def test_a_one_word_query_is_occluded_to_the_placeholder_not_to_nothing():
    seen = []
    occlusion("drill", ["drill"], lambda q, ts: seen.append(q) or additive_group(q, ts))
    assert seen == ["drill", EMPTY_QUERY]


def test_deletion_curves_rank_exact_attributions_above_random_and_reversed_below():
    pairs = [("cordless drill 20v", "DEWALT 20V cordless drill white paint kit"),
             ("drill paint", "drill bit set paint roller"), ("20v drill", "RYOBI drill 20v paint")]
    exact = [occlusion(q, [t], additive_group)[0] for q, t in pairs]
    score_pairs = lambda qs, ts: np.array([additive_group(q, [t])[0] for q, t in zip(qs, ts)])  # noqa: E731
    good = deletion_curves(exact, score_pairs, seed=1, random_repeats=8)
    assert good["pairs"] == 3
    assert good["auc"]["top_first"] < good["auc"]["random"] < good["auc"]["least_first"]
    reversed_ = [PairAttribution(a.query, a.text, -a.query_scores, -a.text_scores, a.logit, "reversed") for a in exact]
    bad = deletion_curves(reversed_, score_pairs, seed=1, random_repeats=8)
    assert bad["auc"]["top_first"] > bad["auc"]["random"] > bad["auc"]["least_first"]
    assert bad["curve"]["top_first"][0] == 0.0  # nothing removed yet: no change


def test_spearman_and_agreement():
    a = np.array([0.1, 0.5, -0.2, 0.9])
    assert spearman(a, 2 * a + 1) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)
    assert np.isnan(spearman(a, np.zeros(4)))
    x = PairAttribution("a b", "c d", a[:2], a[2:], 0.0, "x")
    y = PairAttribution("a b", "c d", -a[:2], -a[2:], 0.0, "y")
    assert agreement([x, x], [x, y]) | {} == agreement([x, x], [x, y])
    summary = agreement([x, x], [x, y])
    assert summary["pairs"] == 2 and summary["mean"] == pytest.approx(0.0) and summary["share_positive"] == 0.5


@pytest.fixture(scope="module")
def ig(tiny_model):
    from shoprank.explain.integrated_gradients import IGSettings, IntegratedGradients

    return IntegratedGradients(tiny_model, settings=IGSettings(steps=16, max_steps=128))


def test_integrated_gradients_are_complete_on_the_tiny_model(ig):
    for query, text in [("cordless drill", "DEWALT 20V MAX cordless drill kit"), ("paint", "white interior paint")]:
        a = ig.explain(query, text)
        assert a.extra["converged"], a.extra
        # Special tokens are the same in pair and baseline, so the words carry the whole difference.
        gap = a.logit - a.extra["baseline_logit"]
        assert abs(a.scores().sum() - gap) <= a.extra["tolerance"]
        assert len(a.query_scores) == len(split_words(query)) and len(a.text_scores) == len(split_words(text))
        assert np.all(a.scores() != 0.0)


def test_integrated_gradients_give_truncated_words_nothing(ig):
    text = "drill " + " ".join(f"word{i}" for i in range(200))  # far beyond the tiny model's 48 tokens
    a = ig.explain("drill", text)
    assert a.text_scores[0] != 0.0
    assert np.all(a.text_scores[60:] == 0.0)


def test_occlusion_on_the_tiny_models_engine_matches_rescoring_each_variant(tiny_model, onnx_int8):
    from shoprank.serving.engine import OrtEngine
    from shoprank.serving.tokenizer import PairEncoder

    encoder, engine = PairEncoder.from_dir(tiny_model, max_length=48), OrtEngine(onnx_int8)
    group = lambda q, ts: engine.logits(encoder.encode(q, list(ts)))  # noqa: E731
    out = occlusion("cordless drill", ["DEWALT 20V drill", "white paint"], group)
    one = float(group("cordless drill", ["DEWALT 20V drill"])[0])
    assert out[0].logit == pytest.approx(one, abs=1e-5)
    assert out[0].text_scores[1] == pytest.approx(one - float(group("cordless drill", ["DEWALT drill"])[0]), abs=1e-5)
    assert out[1].query_scores[0] == pytest.approx(
        out[1].logit - float(group("drill", ["white paint"])[0]), abs=1e-5)
