"""A user's own columns (COLUMNS= / --columns): the spec parser, loading through it, every kind of
label, clear DataErrors, and the round trip through the model card (no model, no training)."""
import json

import numpy as np
import pandas as pd
import pytest

from shoprank.data.load import COLUMNS, load_pairs
from shoprank.data.mappings import MAPPINGS, get_mapping, guess_columns, parse_columns
from shoprank.data.split import model_pairs, split_by_query
from shoprank.errors import DataError, DataFileMissing
from shoprank.model_card import write_model_card

CLICKS = "query:search_query,text:item_name,label:clicked"


@pytest.mark.parametrize("spec, name, text, max_gain, relevant_gain", [
    (CLICKS, CLICKS + ",kind:binary", "item_name", 1.0, 1.0),
    (" query: q , text: title + brand ,label:y, kind:BINARY,", "query:q,text:title+brand,label:y,kind:binary",
     ("title", "brand"), 1.0, 1.0),
    ("query:q,text:t,label:r,kind:graded:1:3", "query:q,text:t,label:r,kind:graded:1:3,relevant:2.5", "t", 2.0, 1.5),
    ("query:q,text:t,label:r,kind:graded:1:5,relevant:3", "query:q,text:t,label:r,kind:graded:1:5,relevant:3",
     "t", 4.0, 2.0),
    ("query:q,text:t,label:r,kind:graded:0:1", "query:q,text:t,label:r,kind:graded:0:1,relevant:0.75", "t", 1.0, 0.75),
    ("query:q,text:t,label:g,kind:classes:Irrelevant<Partial<Exact",
     "query:q,text:t,label:g,kind:classes:Irrelevant<Partial<Exact,relevant:Exact", "t", 2.0, 2.0),
    ("query:q,text:t,label:g,kind:classes:I<C<S<E,relevant:s", "query:q,text:t,label:g,kind:classes:I<C<S<E,relevant:S",
     "t", 3.0, 2.0),
    ("label:y,query:my:query,text:t", "query:my:query,text:t,label:y,kind:binary", "t", 1.0, 1.0),  # key: first colon
])
def test_good_specs(spec, name, text, max_gain, relevant_gain):
    m = parse_columns(spec)
    assert (m.name, m.text, m.max_gain, m.relevant_gain) == (name, text, max_gain, relevant_gain)
    again = parse_columns(m.name)  # the canonical name is itself a spec: the same mapping
    assert (again.name, again.columns, again.max_gain, again.relevant_gain) == (m.name, m.columns, max_gain,
                                                                                 relevant_gain)


@pytest.mark.parametrize("spec, problem", [
    ("query:q,text:t", "no label column"),
    ("text:t", "no query or label column"),
    ("query:q,text:t,label", "part 'label' is not key:value"),
    ("query:q,text:t,label:y,colour:red", "unknown key 'colour' in 'colour:red'"),
    ("query:q,query:r,text:t,label:y", "'query' given twice"),
    ("query:q,text: ,label:y", "'text:' names nothing after the colon"),
    ("query:q,text:a++b,label:y", "text:a++b has an empty column name"),
    ("query:q,text:t,label:y,kind:stars", "unknown kind:stars"),
    ("query:q,text:t,label:y,kind:graded:5", "kind:graded:5 needs a range, as kind:graded:LOW:HIGH"),
    ("query:q,text:t,label:y,kind:graded:1:x", "kind:graded:1:x: bound 'x' is not a number"),
    ("query:q,text:t,label:y,kind:graded:3:1", "kind:graded:3:1: LOW must be below HIGH"),
    ("query:q,text:t,label:y,kind:graded:1:3,relevant:4", "relevant:4 is outside the range 1..3"),
    ("query:q,text:t,label:y,kind:graded:1:3,relevant:high", "relevant 'high' is not a number"),
    ("query:q,text:t,label:y,kind:classes:Exact", "kind:classes:Exact needs two or more class names"),
    ("query:q,text:t,label:y,kind:classes:A<<B", "kind:classes:A<<B needs two or more class names"),
    ("query:q,text:t,label:y,kind:classes:Bad<bad", "names a class twice"),
    ("query:q,text:t,label:y,kind:classes:A<B,relevant:C", "relevant:C is not one of the classes A<B"),
    ("query:q,text:t,label:y,relevant:0", "relevant:0 for kind:binary"),
])
def test_bad_specs_name_the_bad_part(spec, problem):
    with pytest.raises(DataError) as err:
        parse_columns(spec)
    message = str(err.value)
    assert problem in message and f"bad COLUMNS {spec!r}" in message and "\n" not in message


def test_get_mapping_takes_auto_a_name_or_a_spec():
    assert get_mapping("auto") is None and get_mapping("") is None
    assert get_mapping("esci") is MAPPINGS["esci"] and get_mapping(MAPPINGS["wands"]) is MAPPINGS["wands"]
    assert get_mapping(CLICKS).label == "clicked"
    with pytest.raises(DataError, match="unknown mapping 'nope'.*query:COL,text:COL,label:COL"):
        get_mapping("nope")


def test_guess_columns_suggests_the_files_own_names():
    assert guess_columns(["search_query", "item_name", "clicked"]) == CLICKS
    assert guess_columns(["id", "rating", "keyword", "description"]) == "query:keyword,text:description,label:rating"
    assert guess_columns(["a", "b"]) == "query:QUERY_COLUMN,text:a,label:LABEL_COLUMN"


def _csv(tmp_path, text, name="judged.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_load_a_click_log_with_its_own_column_names(tmp_path):
    path = _csv(tmp_path, "search_query,item_name,clicked\ndrill, DEWALT drill ,1\ndrill,paint,0\n"
                          "hammer,claw hammer,1\nhammer,,1\n")
    with pytest.raises(DataError, match="no mapping fits"):
        load_pairs(path)  # the ready mappings do not know these names
    df = load_pairs(path, CLICKS)
    assert list(df.columns) == COLUMNS and df["text"].tolist() == ["DEWALT drill", "paint", "claw hammer"]
    assert df["gain"].tolist() == [1.0, 0.0, 1.0] and df["relevant"].tolist() == [True, False, True]
    assert df["label"].dtype == np.float32 and df.attrs["mapping"] == CLICKS + ",kind:binary"
    assert df.attrs["max_gain"] == 1.0 and df.attrs["relevant_gain"] == 1.0


def test_binary_booleans_and_several_text_columns(tmp_path):
    path = tmp_path / "log.jsonl"
    rows = [{"q": "sofa", "brand": "Acme", "title": "grey sofa", "bought": True},
            {"q": "sofa", "brand": "", "title": "oak table", "bought": False}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    df = load_pairs(path, "query:q,text:brand+title,label:bought")
    assert df["text"].tolist() == ["Acme grey sofa", "oak table"] and df["gain"].tolist() == [1.0, 0.0]


def test_graded_scale_matches_the_homedepot_mapping(tmp_path):
    path = _csv(tmp_path, "search_term,product_title,relevance\nangle bracket,Simpson angle,3\n"
                          "angle bracket,hinge,1\nl bracket,Simpson angle,2.33\nl bracket,bracket,2.5\n")
    ready = load_pairs(path, "homedepot")
    mine = load_pairs(path, "query:search_term,text:product_title,label:relevance,kind:graded:1:3")
    for col in ("gain", "label", "relevant"):
        np.testing.assert_array_equal(mine[col], ready[col])
    stricter = load_pairs(path, "query:search_term,text:product_title,label:relevance,kind:graded:1:3,relevant:3")
    assert stricter["relevant"].tolist() == [True, False, False, False]
    assert mine.attrs["relevant_gain"] == 1.5 and mine.attrs["max_gain"] == 2.0


def test_ordered_classes(tmp_path):
    path = _csv(tmp_path, "q,name,grade\nchair,velvet chair,Exact\nchair,side table, partial \nchair,lamp,IRRELEVANT\n")
    spec = "query:q,text:name,label:grade,kind:classes:Irrelevant<Partial<Exact"
    df = load_pairs(path, spec)
    assert df["gain"].tolist() == [2.0, 1.0, 0.0] and df["label"].tolist() == [1.0, 0.5, 0.0]
    assert df["relevant"].tolist() == [True, False, False]
    assert load_pairs(path, spec + ",relevant:partial")["relevant"].tolist() == [True, True, False]


@pytest.mark.parametrize("spec, body, where, value", [
    (CLICKS, "search_query,item_name,clicked\ndrill,drill,1\ndrill,paint,yes\n", "line 3", "clicked='yes'"),
    (CLICKS, "search_query,item_name,clicked\ndrill,drill,1\nsaw,saw,2\n", "line 3", "clicked='2'"),
    (CLICKS.replace("clicked", "stars") + ",kind:graded:1:5", "search_query,item_name,stars\na,b,4\na,c,0\n",
     "line 3", "stars='0'"),
    (CLICKS.replace("clicked", "grade") + ",kind:classes:Bad<Good", "search_query,item_name,grade\na,b,Good\n"
     "a,c,\n", "line 3", "grade=''"),
])
def test_a_label_that_does_not_fit_names_its_line_and_value(tmp_path, spec, body, where, value):
    with pytest.raises(DataError) as err:
        load_pairs(_csv(tmp_path, body), spec)
    message = str(err.value)
    assert f"{where}: {value} does not fit COLUMNS" in message and "values seen" in message
    assert "kind:graded:LOW:HIGH" in message and "\n" not in message


def test_mistakes_in_the_file_are_data_errors(tmp_path):
    header = _csv(tmp_path, "search_query,item_name,clicked\n", "header.csv")
    with pytest.raises(DataError, match="no rows, only the header"):
        load_pairs(header, CLICKS)
    with pytest.raises(DataError, match="the file is empty"):
        load_pairs(_csv(tmp_path, "", "empty.csv"))
    with pytest.raises(DataError, match=r"COLUMNS names \['click'\] not in the file; the file's columns: "
                                        r"search_query, item_name, clicked; name yours with COLUMNS=\"" + CLICKS):
        load_pairs(header, CLICKS.replace("clicked", "click"))
    with pytest.raises(DataError, match="no row has both a query"):
        load_pairs(_csv(tmp_path, "search_query,item_name,clicked\n,x,1\ny,,0\n", "blank.csv"), CLICKS)
    with pytest.raises(DataError, match="cannot read it as jsonl"):
        load_pairs(_csv(tmp_path, "{not json\n", "broken.jsonl"))
    with pytest.raises(DataError, match="unknown file type '.txt'"):
        load_pairs(_csv(tmp_path, "a,b\n", "notes.txt"))


def test_a_missing_file_is_still_a_file_not_found_error(tmp_path):
    from shoprank.data.load import resolve_data

    with pytest.raises(DataFileMissing) as err:
        resolve_data(str(tmp_path / "gone.csv"))
    assert isinstance(err.value, FileNotFoundError) and isinstance(err.value, DataError)
    with pytest.raises(DataFileMissing, match="is a folder, not a file"):
        resolve_data(str(tmp_path))


def test_the_model_card_reloads_the_same_rows_the_same_way(tmp_path):
    # What finetune writes (data=, mapping= as given, seed=), then what eval, int8 and the gates read.
    rows = "".join(f"query {i},item {i} {j},{int(j == 0)}\n" for i in range(60) for j in range(3))
    path = _csv(tmp_path, "search_query,item_name,clicked\n" + rows)
    spec = "query:search_query, text:item_name, label:clicked"  # as the user typed it
    model = tmp_path / "model"
    model.mkdir()
    write_model_card(model, data=str(path), mapping=spec, seed=7)
    train, valid = split_by_query(load_pairs(path, spec), seed=7)
    got_train, got_valid = model_pairs(model, "train"), model_pairs(model, "valid")
    assert got_train[["query", "text", "gain"]].equals(train[["query", "text", "gain"]])
    assert got_valid[["query", "text", "gain"]].equals(valid[["query", "text", "gain"]])
    assert len(got_valid) and got_valid.attrs["mapping"] == CLICKS + ",kind:binary"
    # The frame's own attrs reload it too (eval's mean-label baseline does).
    assert load_pairs(got_valid.attrs["source"], got_valid.attrs["mapping"]).equals(load_pairs(path, spec))
    # Another file in the same layout: its mapping given (COLUMNS= with DATA=), else detected and refused.
    other = _csv(tmp_path, "search_query,item_name,clicked\n" + rows, "withheld.csv")
    assert len(model_pairs(model, "all", data=str(other), mapping=CLICKS)) == 180
    with pytest.raises(DataError, match="no mapping fits"):
        model_pairs(model, "all", data=str(other))


def test_a_card_whose_data_is_gone_says_so(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    write_model_card(model, data=str(tmp_path / "moved.csv"), mapping=CLICKS, seed=7)
    with pytest.raises(DataFileMissing, match="moved.csv not found"):
        model_pairs(model, "valid")


def test_parquet_with_its_own_columns(tmp_path):
    path = tmp_path / "j.parquet"
    pd.DataFrame({"kw": ["a", "a"], "title": ["x", "y"], "score": [3, 1]}).to_parquet(path, index=False)
    df = load_pairs(path, "query:kw,text:title,label:score,kind:graded:1:3")
    assert df["gain"].tolist() == [2.0, 0.0] and df["relevant"].tolist() == [True, False]
