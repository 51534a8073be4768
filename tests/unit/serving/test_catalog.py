"""The SQLite product catalog: loading CSV/Parquet, lookups in request order, unknown ids, swaps."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shoprank import config
from shoprank.errors import DataError, RequestError
from shoprank.serving.catalog import ATTRIBUTES, COLUMN, Catalog, code, load_catalog, lookup_benchmark


def write(path, rows):
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


ROWS = [{"id": "a1", "text": "DEWALT 20V drill", "price": 99.0, "margin": 20.0, "in_stock": 1, "brand": "DEWALT",
         "category": "power tools", "rating": 4.5},
        {"id": "b2", "text": "white interior paint", "price": 30.0, "in_stock": 0, "brand": "BEHR",
         "category": "paint"},
        {"id": "c3", "text": "drill bit set"}]


def test_lookup_returns_texts_and_attributes_in_request_order(tmp_path):
    db = load_catalog(write(tmp_path / "c.csv", ROWS), tmp_path / "c.sqlite")["catalog"]
    texts, attrs = Catalog(db).lookup(["c3", "a1", "b2", "a1"])
    assert texts == ["drill bit set", "DEWALT 20V drill", "white interior paint", "DEWALT 20V drill"]
    assert attrs.shape == (4, len(ATTRIBUTES)) and attrs.dtype == np.float64
    assert attrs[1, COLUMN["price"]] == 99.0 and attrs[2, COLUMN["in_stock"]] == 0
    assert attrs[1, COLUMN["brand_code"]] == code("dewalt ") and attrs[2, COLUMN["category_code"]] == code("paint")
    assert np.isnan(attrs[0, COLUMN["price"]]) and attrs[0, COLUMN["in_stock"]] == 1  # defaults


def test_parquet_loads_the_same(tmp_path):
    pd.DataFrame(ROWS).to_parquet(tmp_path / "c.parquet")
    db = load_catalog(tmp_path / "c.parquet", tmp_path / "c.sqlite")["catalog"]
    assert Catalog(db).lookup(["b2"])[0] == ["white interior paint"]


def test_unknown_id_names_the_first_one(tmp_path):
    db = load_catalog(write(tmp_path / "c.csv", ROWS), tmp_path / "c.sqlite")["catalog"]
    with pytest.raises(RequestError, match=rf"{config.CANDIDATE_IDS}\[1\] = 'zz'"):
        Catalog(db).lookup(["a1", "zz", "yy"])


def test_no_catalog_is_a_request_error(tmp_path):
    with pytest.raises(RequestError, match="no product catalog"):
        Catalog(tmp_path / "none.sqlite").lookup(["a1"])


@pytest.mark.parametrize("rows,suffix,message", [
    ([{"text": "x"}], ".csv", "no column 'id'"),
    ([{"id": "a", "text": "x"}, {"id": "a", "text": "y"}], ".csv", "'a' appears more than once"),
    ([{"id": "a", "text": "x"}], ".xlsx", "unknown type"),
])
def test_bad_catalog_files_are_data_errors(tmp_path, rows, suffix, message):
    path = tmp_path / f"c{suffix}"
    pd.DataFrame(rows).to_csv(path, index=False)
    with pytest.raises(DataError, match=message):
        load_catalog(path, tmp_path / "c.sqlite")


def test_a_reload_is_seen_by_an_open_catalog(tmp_path):
    db = load_catalog(write(tmp_path / "c.csv", ROWS), tmp_path / "c.sqlite")["catalog"]
    catalog = Catalog(db)
    assert catalog.lookup(["a1"])[0] == ["DEWALT 20V drill"]
    load_catalog(write(tmp_path / "d.csv", [{"id": "a1", "text": "Makita drill"}]), db)
    assert catalog.lookup(["a1"])[0] == ["Makita drill"]
    with pytest.raises(RequestError, match="b2"):
        catalog.lookup(["b2"])


def test_lookup_benchmark_reports_percentiles(tmp_path):
    rows = [{"id": f"p{i}", "text": f"product {i}"} for i in range(2000)]
    db = load_catalog(write(tmp_path / "c.csv", rows), tmp_path / "c.sqlite")["catalog"]
    out = lookup_benchmark(Catalog(db), [r["id"] for r in rows], requests=20)
    assert out["ids_per_lookup"] == 1000 and 0 < out["p50_ms"] <= out["p99_ms"]
