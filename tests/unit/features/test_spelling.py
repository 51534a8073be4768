"""Spelling correction learned from a word-frequency table."""
from __future__ import annotations

from shoprank.features import LexicalIndex
from shoprank.features.spelling import Speller, osa_distance


def test_osa_distance_counts_a_transposition_as_one_edit_and_stops_at_the_limit():
    assert osa_distance("toliet", "toilet", 2) == 1
    assert osa_distance("cemetn", "cement", 2) == 1
    assert osa_distance("vynal", "vinyl", 2) == 2
    assert osa_distance("vynal", "vinyl", 1) == 2          # limit + 1: "more than 1"
    assert osa_distance("abc", "abc", 0) == 0 and osa_distance("", "ab", 2) == 2
    assert osa_distance("kitten", "sitting", 5) == 3


def test_speller_prefers_one_edit_then_frequency_and_knows_splits():
    sp = Speller({"vinyl": 50, "final": 3, "cement": 20, "wire": 30, "mesh": 10, "toilet": 40, "nickel": 90})
    assert sp.correct("vinal") == ("vinyl",)               # both one edit away: the frequent one
    assert sp.correct("cemetn") == ("cement",)
    assert sp.correct("vynal") == ("vinyl",)               # two edits, long enough, same first letter
    assert sp.correct("wiremesh") == ("wire", "mesh")
    assert sp.correct("zzzzzz") is None
    assert sp.correct("nickle", min_count=100) is None      # a word many shoppers use is protected
    assert [w for w, _ in sp.neighbours("toliet")] == ["toilet"]


def test_index_corrects_unknown_query_words_from_the_catalog(index: LexicalIndex):
    assert index.correct("vynal fence") == "vinyl fence"
    assert index.correct("pvc cemetn") == "pvc cement"
    assert index.correct("toliet seat") == "toilet seat"
    assert index.correct("closet maid shelf") == "closetmaid shelf"   # joined
    assert index.correct("rustoleum spray paint") == "rust oleum spray paint"  # split
    assert index.correct("celing fan") == "ceiling fan"
    # Known words, their plurals, short words and codes stay as typed.
    assert index.correct("drills faucets sku t9") == "drills faucets sku t9"
    info = index.query("vynal fence")
    assert (info.n_oov, info.n_corrected) == (1, 1)
    # A corrected unit makes its number a quantity again.
    info = index.query("5 galon white paint")
    assert [(q.value, q.unit) for q in info.quantities] == [(5.0, "gal")] and info.n_corrected == 1


def test_query_only_words_need_a_much_more_frequent_neighbour():
    titles = ["Stamp Set", "Evaporative Cooler"]
    queries = ["swamp cooler", "swamp cooler pads", "swamp cooler pump", "swamp cooler motor"]
    assert LexicalIndex.fit(titles).correct("swamp cooler") == "stamp cooler"
    assert LexicalIndex.fit(titles, queries).correct("swamp cooler") == "swamp cooler"
