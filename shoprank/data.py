"""Loading (query, product text, judgment) pairs from CSV, JSONL or Parquet files.

Every loader result has exactly these columns, whatever the source:

    query     str      the shopper's query, whitespace stripped
    text      str      the product text the model reads
    label     float32  the BCE training target in [0, 1] (= gain / max_gain)
    gain      float    graded relevance, the NDCG gain; 0 = irrelevant
    relevant  bool     gain >= the mapping's threshold (for MRR, precision, AUC)

and `df.attrs` holds "mapping", "max_gain", "relevant_gain" and "source".

Ready mappings (MAPPINGS), chosen by name or detected from the columns ("auto"):

    homedepot  Home Depot Product Search Relevance (config.SHARED_DATA): search_term,
               product_title, relevance 1..3 (mean of human ratings).
               gain = relevance - 1 in [0, 2], label = (relevance - 1) / 2,
               relevant when relevance >= 2.5 (gain >= 1.5).
    esci       Amazon Shopping Queries (ESCI): query, product_title, esci_label.
               E(xact) / S(ubstitute) / C(omplement) / I(rrelevant) -> gain 3 / 2 / 1 / 0,
               label = gain / 3, relevant when E.
    wands      Wayfair WANDS: query, product_name, label.
               Exact / Partial / Irrelevant -> gain 2 / 1 / 0, label = gain / 2, relevant when Exact.
    clicks     click logs, the project's synthetic default data among them: query, text, click.
               gain = label = click (0/1), relevant when clicked.

Splits are by query, never by row: a query's products are near duplicates of each other's
judgments, so a row split would leak the answer into validation.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd

from . import config, synthetic

COLUMNS = ["query", "text", "label", "gain", "relevant"]


@dataclass(frozen=True)
class Mapping:
    """How one source's columns and labels become query/text/label/gain/relevant."""

    name: str
    query: str
    text: str | tuple[str, ...]  # several columns are joined with " " (e.g. title + brand)
    label: str
    gain: Callable[[object], float]  # raw label value -> gain in [0, max_gain]
    max_gain: float
    relevant_gain: float  # a row is relevant when gain >= this
    doc: str = ""

    @property
    def text_columns(self) -> tuple[str, ...]:
        return (self.text,) if isinstance(self.text, str) else tuple(self.text)

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.query, *self.text_columns, self.label)


def _grade_table(table: dict[str, float]) -> Callable[[object], float]:
    """A gain function for named grades; accepts any case and the first letter alone."""
    lookup = {}
    for name, gain in table.items():
        lookup[name.lower()] = gain
        lookup[name[0].lower()] = gain

    def gain(raw: object) -> float:
        return lookup[str(raw).strip().lower()]  # KeyError -> reported by load_pairs

    return gain


MAPPINGS: dict[str, Mapping] = {
    "homedepot": Mapping(
        "homedepot", "search_term", "product_title", "relevance",
        gain=lambda r: float(r) - 1.0, max_gain=2.0, relevant_gain=1.5,
        doc="Home Depot relevance 1..3 -> gain relevance-1, relevant when relevance >= 2.5"),
    "esci": Mapping(
        "esci", "query", "product_title", "esci_label",
        gain=_grade_table({"Exact": 3.0, "Substitute": 2.0, "Complement": 1.0, "Irrelevant": 0.0}),
        max_gain=3.0, relevant_gain=3.0,
        doc="Amazon ESCI E/S/C/I -> gain 3/2/1/0, relevant when E"),
    "wands": Mapping(
        "wands", "query", "product_name", "label",
        gain=_grade_table({"Exact": 2.0, "Partial": 1.0, "Irrelevant": 0.0}),
        max_gain=2.0, relevant_gain=2.0,
        doc="Wayfair WANDS Exact/Partial/Irrelevant -> gain 2/1/0, relevant when Exact"),
    "clicks": Mapping(
        "clicks", "query", "text", "click",
        gain=lambda c: float(c), max_gain=1.0, relevant_gain=1.0,
        doc="click logs: gain = label = click 0/1, relevant when clicked"),
}


def _read_table(path: Path) -> pd.DataFrame:
    suffixes = [s.lower() for s in path.suffixes if s.lower() not in (".gz", ".bz2", ".xz", ".zip")]
    kind = suffixes[-1] if suffixes else ""
    if kind in (".csv", ".tsv"):
        # Every column as str, and "NA"/"null"/"none" stay text: they are real queries.
        # WANDS ships tab-separated files named .csv, so the header line decides the separator.
        sep = "\t" if kind == ".tsv" else ","
        if kind == ".csv" and not path.name.endswith((".gz", ".bz2", ".xz", ".zip")):
            with open(path, encoding="utf-8") as f:
                header = f.readline()
            if "\t" in header and "," not in header:
                sep = "\t"
        return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    if kind in (".jsonl", ".ndjson", ".json"):
        return pd.read_json(path, lines=kind != ".json", dtype=False)
    if kind in (".parquet", ".pq"):
        return pd.read_parquet(path)
    raise ValueError(f"{path}: unknown file type {kind or '(none)'!r}; use .csv, .tsv, .jsonl or .parquet")


def _pick_mapping(raw: pd.DataFrame, mapping: str | Mapping, path: Path) -> Mapping:
    if isinstance(mapping, Mapping):
        chosen = mapping
    elif mapping == "auto":
        fits = [m for m in MAPPINGS.values() if all(c in raw.columns for c in m.columns)]
        if not fits:
            wanted = "; ".join(f"{m.name}: {', '.join(m.columns)}" for m in MAPPINGS.values())
            raise ValueError(f"{path}: no mapping fits columns {list(raw.columns)}; "
                             f"known mappings need ({wanted})")
        chosen = fits[0]  # the ready mappings' column sets are disjoint, so at most one fits
    elif mapping in MAPPINGS:
        chosen = MAPPINGS[mapping]
    else:
        raise ValueError(f"unknown mapping {mapping!r}; known: {', '.join(MAPPINGS)} or 'auto'")
    missing = [c for c in chosen.columns if c not in raw.columns]
    if missing:
        raise ValueError(f"{path}: mapping {chosen.name!r} needs columns {missing} "
                         f"missing from {list(raw.columns)}")
    return chosen


def _clean_text(col: pd.Series) -> pd.Series:
    return col.fillna("").astype(str).str.strip()


def load_pairs(path: str | Path, mapping: str | Mapping = "auto") -> pd.DataFrame:
    """Read a judgments file into the query/text/label/gain/relevant frame (see module doc).

    `mapping` is "auto" (detected from the columns), a name in MAPPINGS or a Mapping.
    Rows with an empty query or text are dropped; an unmappable label raises ValueError.
    The index is 0..n-1, so positions in score arrays match rows.
    """
    path = Path(path)
    raw = _read_table(path)
    m = _pick_mapping(raw, mapping, path)

    query = _clean_text(raw[m.query])
    parts = [_clean_text(raw[c]) for c in m.text_columns]
    text = parts[0]
    for part in parts[1:]:
        # Join without doubled spaces when one of the columns is empty.
        text = (text + " " + part).str.strip()
    keep = (query != "") & (text != "")
    raw_label = raw.loc[keep, m.label]

    # Map each distinct raw label once: few distinct values, many rows.
    table = {}
    for value in pd.unique(raw_label):
        try:
            g = float(m.gain(value))
        except (KeyError, ValueError, TypeError):
            g = math.nan
        if not (0.0 <= g <= m.max_gain):  # also catches NaN
            raise ValueError(f"{path}: mapping {m.name!r} cannot turn {m.label}={value!r} "
                             f"into a gain in [0, {m.max_gain}]")
        table[value] = g
    gain = np.array([table[v] for v in raw_label], dtype=np.float64)

    df = pd.DataFrame({
        "query": query[keep].to_numpy(dtype=object),
        "text": text[keep].to_numpy(dtype=object),
        "label": (gain / m.max_gain).astype(np.float32),
        "gain": gain,
        "relevant": gain >= m.relevant_gain,
    })
    df.attrs.update(mapping=m.name, max_gain=m.max_gain, relevant_gain=m.relevant_gain, source=str(path))
    return df


def _in_valid(query: str, seed: int, valid_fraction: float) -> bool:
    # blake2b, not hash(): Python's str hash changes between runs, this one never does.
    digest = hashlib.blake2b(f"{seed}:{query.lower().strip()}".encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < valid_fraction


def split_by_query(df: pd.DataFrame, valid_fraction: float = config.VALID_FRACTION,
                   seed: int = config.SEED) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, valid): each query (case and outer spaces ignored) wholly on one side.

    The side depends only on (seed, query), so it is stable across runs, files and row
    order; the valid share of queries is close to valid_fraction, not exact.
    """
    side = {q: _in_valid(q, seed, valid_fraction) for q in pd.unique(df["query"])}
    is_valid = df["query"].map(side).to_numpy(dtype=bool)
    train = df[~is_valid].reset_index(drop=True)
    valid = df[is_valid].reset_index(drop=True)
    train.attrs, valid.attrs = dict(df.attrs), dict(df.attrs)
    return train, valid


def query_groups(df: pd.DataFrame) -> Iterator[tuple[str, np.ndarray]]:
    """(query, positions of its rows) for each query, in order of first appearance.

    Positions are 0-based row positions (for .iloc and score arrays), ascending within a group.
    """
    codes, uniques = pd.factorize(df["query"], sort=False)
    order = np.argsort(codes, kind="stable")
    bounds = np.cumsum(np.bincount(codes, minlength=len(uniques)))[:-1]
    for q, idx in zip(uniques, np.split(order, bounds)):
        yield q, idx


def resolve_data(spec: str | None) -> Path:
    """Turn a data argument into a file: None/""/"default" -> synthetic default data
    (generated if missing), "shared"/"homedepot" -> config.SHARED_DATA, else a path."""
    if spec in (None, "", "default"):
        return synthetic.ensure_default_data()
    if spec in ("shared", "homedepot"):
        if not config.SHARED_DATA.exists():
            raise FileNotFoundError(f"shared Home Depot data not found at {config.SHARED_DATA} "
                                    "(it exists on developer machines only); use 'default' or a path")
        return config.SHARED_DATA
    path = Path(spec).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"data file {path} not found; give a path, 'default' or 'shared'")
    return path


def load_default_or_shared(prefer_shared: bool = True) -> pd.DataFrame:
    """Real Home Depot judgments when present (and preferred), else the synthetic default data."""
    if prefer_shared and config.SHARED_DATA.exists():
        return load_pairs(config.SHARED_DATA)
    return load_pairs(synthetic.ensure_default_data())
