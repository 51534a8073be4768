"""The one loader of "the model's data, split as it was trained" (its model card names the
data file, mapping and split seed)."""
from __future__ import annotations

import pytest

from shoprank.data.load import load_pairs, resolve_data
from shoprank.data.split import model_pairs, split_by_query
from shoprank.model_card import read_model_card


def test_parts_are_the_split_the_model_was_trained_on(tiny_model):
    card = read_model_card(tiny_model)
    train, valid = split_by_query(load_pairs(resolve_data(card["data"]), card["mapping"]), seed=card["seed"])
    got_train, got_valid = model_pairs(tiny_model, "train"), model_pairs(tiny_model, "valid")
    assert got_train[["query", "text"]].equals(train[["query", "text"]])
    assert got_valid[["query", "text"]].equals(valid[["query", "text"]])
    assert set(got_train["query"]).isdisjoint(got_valid["query"])
    assert len(model_pairs(tiny_model, "all")) == len(train) + len(valid)
    assert (got_train.attrs["split"], got_valid.attrs["split"]) == ("train", "valid")
    assert got_valid.attrs["mapping"] == "clicks" and got_valid.attrs["source"] == str(resolve_data(card["data"]))


def test_limit_keeps_the_first_queries_whole(tiny_model):
    valid = model_pairs(tiny_model, "valid")
    first = valid["query"].drop_duplicates().iloc[:5].tolist()
    limited = model_pairs(tiny_model, "valid", limit_queries=5)
    assert limited["query"].drop_duplicates().tolist() == first
    assert len(limited) == valid["query"].isin(first).sum() and limited.attrs["split"] == "valid"


def test_another_file_and_a_bad_part_are_handled(tiny_model, tmp_path):
    other = tmp_path / "judged.csv"
    other.write_text("search_term,product_title,relevance\nangle bracket,Simpson angle,3\nangle bracket,hinge,1\n")
    rows = model_pairs(tiny_model, "all", data=str(other))
    assert rows.attrs["mapping"] == "homedepot" and len(rows) == 2
    with pytest.raises(ValueError, match="part must be one of"):
        model_pairs(tiny_model, "test")
    with pytest.raises(ValueError, match="no valid rows"):
        model_pairs(tiny_model, "valid", data=str(other))  # its one query falls on the training side
