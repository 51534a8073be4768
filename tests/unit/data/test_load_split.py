"""Loading, mappings, query splits and the synthetic default data (no network, no model)."""
import json

import numpy as np
import pandas as pd
import pytest

from shoprank import config
from shoprank.data import synthetic
from shoprank.data.load import COLUMNS, load_default_or_shared, load_pairs, resolve_data
from shoprank.data.mappings import MAPPINGS, Mapping
from shoprank.data.split import query_groups, split_by_query

# One small source table per ready mapping, in its own column names and label values.
SOURCES = {
    "homedepot": (pd.DataFrame({
        "id": [1, 2, 3, 4],
        "product_uid": [10, 11, 10, 12],
        "product_title": ["Simpson Strong-Tie Angle", " Everbilt hinge ", "Simpson Strong-Tie Angle", ""],
        "search_term": ["angle bracket", "angle bracket", "l bracket", "l bracket"],
        "relevance": [3.0, 1.0, 2.33, 2.5],
    }), {"gain": [2.0, 0.0, 1.33], "label": [1.0, 0.0, 0.665], "relevant": [True, False, False]}),
    "esci": (pd.DataFrame({
        "query": ["usb cable", "usb cable", "usb cable", "usb cable"],
        "product_title": ["USB-C cable 2m", "Lightning cable", "USB charger", "Garden hose"],
        "esci_label": ["E", "S", "C", "I"],
    }), {"gain": [3.0, 2.0, 1.0, 0.0], "label": [1.0, 2 / 3, 1 / 3, 0.0],
         "relevant": [True, False, False, False]}),
    "wands": (pd.DataFrame({
        "query": ["accent chair", "accent chair", "   "],
        "product_name": ["Velvet accent chair", "Oak side table", "Lamp"],
        "label": ["Exact", "Partial", "Irrelevant"],
    }), {"gain": [2.0, 1.0], "label": [1.0, 0.5], "relevant": [True, False]}),
    "clicks": (pd.DataFrame({
        "query": ["drill", "drill", "NA"],
        "text": ["DEWALT 20V MAX cordless drill driver kit", "BEHR 1 gal. primer", "null"],
        "click": [1, 0, 0],
    }), {"gain": [1.0, 0.0, 0.0], "label": [1.0, 0.0, 0.0], "relevant": [True, False, False]}),
}


def _write(df: pd.DataFrame, path):
    if path.suffix == ".csv":
        df.to_csv(path, index=False)
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in df.to_dict(orient="records")))
    else:
        df.to_parquet(path, index=False)
    return path


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
@pytest.mark.parametrize("name", list(SOURCES))
@pytest.mark.parametrize("how", ["auto", "name", "object"])
def test_load_each_format_and_mapping(tmp_path, fmt, name, how):
    source, want = SOURCES[name]
    path = _write(source, tmp_path / f"pairs.{fmt}")
    mapping = {"auto": "auto", "name": name, "object": MAPPINGS[name]}[how]
    df = load_pairs(path, mapping)
    assert list(df.columns) == COLUMNS
    assert df.attrs["mapping"] == name
    assert df["label"].dtype == np.float32 and df["relevant"].dtype == bool
    np.testing.assert_allclose(df["gain"], want["gain"], atol=1e-9)
    np.testing.assert_allclose(df["label"], want["label"], atol=1e-6)
    assert df["relevant"].tolist() == want["relevant"]
    assert list(df.index) == list(range(len(df)))
    # Stripped, and rows with an empty query or text are gone.
    assert all(s == s.strip() and s for s in df["query"]) and all(s == s.strip() and s for s in df["text"])


def test_text_from_several_columns(tmp_path):
    src = pd.DataFrame({"q": ["drill"], "title": ["Cordless drill"], "brand": ["DEWALT"], "y": [1]})
    m = Mapping("custom", "q", ("brand", "title"), "y", gain=float, max_gain=1.0, relevant_gain=1.0)
    df = load_pairs(_write(src, tmp_path / "x.csv"), m)
    assert df["text"].tolist() == ["DEWALT Cordless drill"]


def test_queries_that_look_like_missing_values_stay_text(tmp_path):
    df = load_pairs(_write(SOURCES["clicks"][0], tmp_path / "c.csv"))
    assert "NA" in df["query"].tolist()


def test_clear_errors(tmp_path):
    path = _write(pd.DataFrame({"query": ["a"], "title": ["b"], "y": [1]}), tmp_path / "odd.csv")
    with pytest.raises(ValueError, match="no mapping fits"):
        load_pairs(path)
    with pytest.raises(ValueError, match=r"needs columns \['product_title', 'esci_label'\]"):
        load_pairs(path, "esci")
    with pytest.raises(ValueError, match="unknown mapping 'nope'"):
        load_pairs(path, "nope")
    bad = _write(pd.DataFrame({"query": ["a"], "product_title": ["b"], "esci_label": ["X"]}), tmp_path / "b.csv")
    with pytest.raises(ValueError, match="esci_label='X'"):
        load_pairs(bad)
    with pytest.raises(ValueError, match="unknown file type"):
        load_pairs(_write(pd.DataFrame({"a": [1]}), tmp_path / "x.csv").rename(tmp_path / "x.txt"))


def test_wands_tab_separated_csv(tmp_path):
    path = tmp_path / "wands.csv"
    path.write_text("query\tproduct_name\tlabel\nsofa\tgrey sofa, 3 seats\tExact\n")
    df = load_pairs(path)
    assert df.attrs["mapping"] == "wands" and df["text"].tolist() == ["grey sofa, 3 seats"]


def _many_queries(n=2000):
    queries = [f"Query {i}" for i in range(n)]
    return pd.DataFrame({"query": np.repeat(queries, 3), "text": "t", "label": np.float32(0),
                         "gain": 0.0, "relevant": False})


def test_split_by_query_is_disjoint_deterministic_and_near_fraction():
    df = _many_queries()
    train, valid = split_by_query(df, valid_fraction=0.2, seed=5)
    assert len(train) + len(valid) == len(df)
    assert set(train["query"]).isdisjoint(valid["query"])
    share = valid["query"].nunique() / df["query"].nunique()
    assert 0.17 < share < 0.23
    train2, valid2 = split_by_query(df.sample(frac=1.0, random_state=1), valid_fraction=0.2, seed=5)
    assert set(valid2["query"]) == set(valid["query"])  # row order does not matter
    _, valid3 = split_by_query(df, valid_fraction=0.2, seed=6)
    assert set(valid3["query"]) != set(valid["query"])  # the seed does


def test_split_ignores_case_and_outer_spaces():
    df = pd.DataFrame({"query": ["Drill", "drill", " DRILL "] * 50 + [f"q{i}" for i in range(300)]})
    for seed in range(20):
        _, valid = split_by_query(df, 0.5, seed)
        sides = {q in set(valid["query"]) for q in ["Drill", "drill", " DRILL "]}
        assert len(sides) == 1


def test_query_groups_order_and_positions():
    df = pd.DataFrame({"query": ["b", "a", "b", "c", "a"]})
    groups = [(q, idx.tolist()) for q, idx in query_groups(df)]
    assert groups == [("b", [0, 2]), ("a", [1, 4]), ("c", [3])]
    assert list(query_groups(df.iloc[:0])) == []


def test_synthetic_generation_is_deterministic(tmp_path):
    a = synthetic.generate(tmp_path / "a.csv")
    b = synthetic.generate(tmp_path / "b.csv")
    assert a.read_bytes() == b.read_bytes()
    assert synthetic.generate(tmp_path / "c.csv", seed=1).read_bytes() != a.read_bytes()
    df = load_pairs(a)
    assert df.attrs["mapping"] == "clicks"
    assert 9000 <= len(df) <= 11000
    assert df["query"].nunique() == 1000
    assert set(df["gain"].unique()) == {0.0, 1.0}
    assert 0.05 < df["relevant"].mean() < 0.5


def test_resolve_data(tmp_path):
    assert resolve_data(None) == synthetic.DEFAULT_FILE == resolve_data("default")
    assert synthetic.DEFAULT_FILE.exists()
    with pytest.raises(FileNotFoundError, match="not found"):
        resolve_data(str(tmp_path / "missing.csv"))
    f = _write(SOURCES["clicks"][0], tmp_path / "c.csv")
    assert resolve_data(str(f)) == f


def test_without_shared_data(tmp_path, monkeypatch):
    # A user's machine: no ../shared. "shared" fails clearly; the helper falls back to default data.
    monkeypatch.setattr(config, "SHARED_DATA", tmp_path / "absent.csv")
    with pytest.raises(FileNotFoundError, match="shared Home Depot data not found"):
        resolve_data("shared")
    assert load_default_or_shared().attrs["mapping"] == "clicks"


@pytest.mark.skipif(not config.SHARED_DATA.exists(),
                    reason=f"shared Home Depot data absent: {config.SHARED_DATA} does not exist on this machine")
def test_homedepot_shared_file_loads_and_splits():
    df = load_default_or_shared()
    assert df.attrs["mapping"] == "homedepot"
    assert len(df) == 59167 and df["query"].nunique() == 9423
    assert df["gain"].between(0, 2).all() and df["label"].between(0, 1).all()
    train, valid = split_by_query(df)
    assert set(train["query"]).isdisjoint(valid["query"])
    assert 0.08 < valid["query"].nunique() / df["query"].nunique() < 0.12
