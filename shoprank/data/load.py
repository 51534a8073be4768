"""Loading (query, product text, judgment) pairs from CSV, JSONL or Parquet files.

Every loader result has exactly these columns, whatever the source:

    query     str      the shopper's query, whitespace stripped
    text      str      the product text the model reads
    label     float32  the BCE training target in [0, 1] (= gain / max_gain)
    gain      float    graded relevance, the NDCG gain; 0 = irrelevant
    relevant  bool     gain >= the mapping's threshold (for MRR, precision, AUC)

and `df.attrs` holds "mapping", "max_gain", "relevant_gain" and "source". The mappings from
each source's columns are in shoprank.data.mappings.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from .. import config
from . import synthetic
from .mappings import MAPPINGS, Mapping

COLUMNS = ["query", "text", "label", "gain", "relevant"]


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
