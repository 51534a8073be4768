"""The index (brands, BM25, file) and the feature matrix."""
from __future__ import annotations

import json
import pickle
import random

import numpy as np
import pytest

from shoprank.features import FEATURE_NAMES, LexicalIndex, pair_features
from shoprank.features.index import FILE_NAME

from .conftest import QUERIES, TITLES


def feats(index, query, texts) -> list[dict]:
    x = pair_features(index, query, texts)
    return [dict(zip(FEATURE_NAMES, row.tolist())) for row in x]


def test_brands_are_the_phrases_titles_start_with(index: LexicalIndex):
    for brand in ("delta", "moen", "hampton bay", "hampton", "sharkbite"):
        assert tuple(brand.split()) in index.brands, brand
    for word in ("white", "in", "brushed", "vinyl", "shower", "behr"):  # behr: 2 titles, fewer than 3
        assert (word,) not in index.brands, word
    two = LexicalIndex.fit(TITLES, brand_min_titles=2).brands
    assert ("behr", "premium") in two and ("veranda",) in two and ("vinyl",) not in two
    assert index.title("Delta Vero 1-Handle Shower Faucet").brand[0] == "delta"
    assert index.title("30 in. x 60 in. Acrylic Bathtub").brand == ()  # a size first: no brand


def test_brand_match_and_mismatch(index: LexicalIndex):
    delta, moen, unbranded = feats(index, "delta shower faucet", [
        "Delta Vero 1-Handle Shower Only Faucet Trim Kit in Chrome", "MOEN Brantford 1-Handle Shower Faucet",
        "30 in. x 60 in. Acrylic Bathtub in White"])
    assert (delta["query_brand"], delta["brand_match"], delta["brand_mismatch"]) == (1, 1, 0)
    assert (moen["brand_match"], moen["brand_mismatch"]) == (0, 1)
    assert (unbranded["brand_match"], unbranded["brand_mismatch"]) == (0, 0)
    (plain,) = feats(index, "shower faucet", ["Delta Vero Shower Faucet"])
    assert plain["query_brand"] == plain["brand_match"] == plain["brand_mismatch"] == 0


def test_bm25_rises_with_the_query_terms_a_title_holds(index: LexicalIndex):
    none, one, both = feats(index, "pvc cement", ["Everbilt Door Hinge", "Charlotte Pipe PVC Pipe",
                                                   "Oatey 8 oz. PVC Cement"])
    assert none["bm25"] == 0 < one["bm25"] < both["bm25"]
    assert none["tfidf_cosine"] < one["tfidf_cosine"] < both["tfidf_cosine"]
    assert both["exact_share"] == 1.0 and one["exact_share"] == 0.5 and both["phrase_match"] == 1.0
    # The rarer term weighs more: "cement" (2 titles) over "pvc" (3).
    (cement,) = feats(index, "pvc cement", ["Oatey Cement"])
    assert cement["bm25"] > one["bm25"]
    # Longer titles are discounted (b > 0).
    short, long_ = feats(index, "cement", ["Oatey Cement", "Oatey Cement and Primer for Pipe and Fittings"])
    assert short["bm25"] > long_["bm25"] > 0


def test_overlap_levels_numbers_and_codes(index: LexicalIndex):
    (row,) = feats(index, "drill bits", ["DEWALT 1/2 in. Drill Bit Set (14-Piece)"])
    assert row["exact_share"] == 0.5 and row["stem_share"] == 1.0 and row["fuzzy_share"] == 1.0
    (row,) = feats(index, "galv hinges", ["Galvanized Door Hinge"])
    assert row["fuzzy_share"] == 1.0 > row["stem_share"]   # prefix "galv" of a catalog word
    (row,) = feats(index, "cordless drill", ["Ryobi 18-Volt ONE+ Cordless Drill"])
    assert row["last_term_match"] == row["last_term_in_head"] == row["head_in_query"] == 1.0
    right, wrong, bare = feats(index, "3/4 inch coupling", [
        "SharkBite 3/4 in. Brass Push-to-Connect Coupling", "SharkBite 1/2 in. Brass Push-to-Connect Coupling",
        "Oatey PVC Cement"])
    assert (right["number_share"], right["number_mismatch"]) == (1.0, 0.0)
    assert (wrong["number_share"], wrong["number_mismatch"]) == (0.0, 1.0)
    assert (bare["number_share"], bare["number_mismatch"]) == (0.0, 0.0)
    assert right["query_numbers"] == 1
    hit, miss = feats(index, "behr sc-141", ["BEHR Premium 1-gal. #SC-141 Tugboat Coating", "BEHR Premium White"])
    assert (hit["query_codes"], hit["code_share"], miss["code_share"]) == (1, 1.0, 0.0)


def test_joined_and_split_words_match(index: LexicalIndex):
    (row,) = feats(index, "wiremesh roll", ["Wire Mesh Roll 36 in. x 50 ft."])
    assert row["exact_share"] == 1.0
    (row,) = feats(index, "closet maid shelf", ["Closetmaid 36 in. White Wire Shelf"])
    assert row["exact_share"] == 1.0


ODD = ["", " ", "🙂🙂🙂", "\x00\t\n", "ÅÄÖ ∑ 漢字", "1/0 in. x 0/0 ft.", "x" * 50_000,
       " ".join(random.Random(0).choices(TITLES, k=300)), "3/4", "#", "-" * 100]


@pytest.mark.parametrize("query", ["", "🙂", "pvc cement", "3/4", "a " * 2000, ODD[5]])
def test_matrix_shape_dtype_and_finite_for_odd_input(index: LexicalIndex, query):
    x = pair_features(index, query, ODD)
    assert x.shape == (len(ODD), len(FEATURE_NAMES)) and x.dtype == np.float32
    assert np.isfinite(x).all()
    assert pair_features(index, query, []).shape == (0, len(FEATURE_NAMES))


def test_a_thousand_candidates(index: LexicalIndex):
    texts = random.Random(1).choices(TITLES + ODD, k=1000)
    x = pair_features(index, "hampton bay 52 in ceiling fan", texts)
    assert x.shape == (1000, len(FEATURE_NAMES)) and np.isfinite(x).all()
    # Each row depends on its own text only.
    assert np.array_equal(x[5], pair_features(index, "hampton bay 52 in ceiling fan", [texts[5]])[0])


def test_feature_names_are_unique():
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)


def test_fit_is_deterministic_and_order_free(tmp_path):
    a = LexicalIndex.fit(TITLES, QUERIES)
    b = LexicalIndex.fit(list(reversed(TITLES)) + TITLES[:3], list(reversed(QUERIES)))
    pa, pb = a.save(tmp_path / "a"), b.save(tmp_path / "b")
    assert pa.name == FILE_NAME and pa.read_bytes() == pb.read_bytes()


def test_save_load_round_trip_gives_the_same_features(index: LexicalIndex, tmp_path):
    path = index.save(tmp_path / "idx")
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["format"] == "shoprank-lexical-index" and data["version"] == 1
    loaded = LexicalIndex.load(tmp_path / "idx")
    texts = TITLES + ODD
    for query in QUERIES + ["vynal fence 6 ft", "delta faucet", "behr sc-141 1 gal"]:
        assert np.array_equal(pair_features(index, query, texts), pair_features(loaded, query, texts)), query
    # The same features whatever the cache holds: cold and warm agree.
    loaded.title.cache_clear()
    assert np.array_equal(pair_features(loaded, "pvc cement", texts), pair_features(loaded, "pvc cement", texts))


def test_pickles_for_worker_processes(index: LexicalIndex):
    copy = pickle.loads(pickle.dumps(index))
    texts, query = TITLES + ODD, "vynal fence 6 ft"
    assert np.array_equal(pair_features(index, query, texts), pair_features(copy, query, texts))


def test_load_refuses_other_files(tmp_path):
    (tmp_path / FILE_NAME).write_text(json.dumps({"format": "other", "version": 1}), encoding="utf-8")
    with pytest.raises(ValueError, match="not a shoprank-lexical-index"):
        LexicalIndex.load(tmp_path)
    with pytest.raises(ValueError, match="at least one"):
        LexicalIndex.fit(["", "  "])
