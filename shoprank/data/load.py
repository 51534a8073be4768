"""Loading (query, product text, judgment) pairs from CSV, JSONL or Parquet files.

Every loader result has exactly these columns, whatever the source:

    query     str      the shopper's query, whitespace stripped
    text      str      the product text the model reads
    label     float32  the BCE training target in [0, 1] (= gain / max_gain)
    gain      float    graded relevance, the NDCG gain; 0 = irrelevant
    relevant  bool     gain >= the mapping's threshold (for MRR, precision, AUC)

and `df.attrs` holds "mapping", "max_gain", "relevant_gain" and "source". The mappings from
each source's columns are in shoprank.data.mappings, a user's own columns (a COLUMNS spec) too.
Every problem with the file itself (missing, unreadable, unknown type, empty, columns not found,
a label that does not fit) raises errors.DataError: one line naming the file and what to fix.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from .. import config
from ..errors import DataError, DataFileMissing
from . import synthetic
from .mappings import KINDS, MAPPINGS, Mapping, get_mapping, guess_columns, is_spec

COLUMNS = ["query", "text", "label", "gain", "relevant"]
_COMPRESSED = (".gz", ".bz2", ".xz", ".zip")


def _file_kind(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes if s.lower() not in _COMPRESSED]
    return suffixes[-1] if suffixes else ""


def _read_table(path: Path) -> pd.DataFrame:
    kind = _file_kind(path)
    if kind not in (".csv", ".tsv", ".jsonl", ".ndjson", ".json", ".parquet", ".pq"):
        raise DataError(f"{path}: unknown file type {kind or '(none)'!r}; use .csv, .tsv, .jsonl or .parquet")
    if not path.is_file():
        raise DataFileMissing(f"data file {path} not found")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty")
    try:
        if kind in (".csv", ".tsv"):
            # Every column as str, and "NA"/"null"/"none" stay text: they are real queries.
            # WANDS ships tab-separated files named .csv, so the header line decides the separator.
            sep = "\t" if kind == ".tsv" else ","
            if kind == ".csv" and not path.name.endswith(_COMPRESSED):
                with open(path, encoding="utf-8") as f:
                    header = f.readline()
                if "\t" in header and "," not in header:
                    sep = "\t"
            return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
        if kind in (".jsonl", ".ndjson", ".json"):
            return pd.read_json(path, lines=kind != ".json", dtype=False)
        return pd.read_parquet(path)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty (no header line)") from None
    except ValueError as exc:  # pandas' parser, JSON, Parquet (ArrowInvalid) and UTF-8 decoding errors
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: cannot read it as {kind[1:]}: {first}") from None


def _columns_hint(raw: pd.DataFrame) -> str:
    return (f"the file's columns: {', '.join(map(str, raw.columns))}; name yours with "
            f"COLUMNS=\"{guess_columns(list(raw.columns))}\" (--columns; docs/data.md)")


def _pick_mapping(raw: pd.DataFrame, mapping: str | Mapping, path: Path) -> Mapping:
    chosen = get_mapping(mapping)
    if chosen is None:  # "auto"
        fits = [m for m in MAPPINGS.values() if all(c in raw.columns for c in m.columns)]
        if not fits:
            raise DataError(f"{path}: no mapping fits its columns (ready: {', '.join(MAPPINGS)}); "
                            + _columns_hint(raw))
        chosen = fits[0]  # the ready mappings' column sets are disjoint, so at most one fits
    missing = [c for c in chosen.columns if c not in raw.columns]
    if missing:
        which = "COLUMNS names" if is_spec(chosen.name) else f"mapping {chosen.name!r} needs columns"
        raise DataError(f"{path}: {which} {missing} not in the file; " + _columns_hint(raw))
    return chosen


def _where(path: Path, raw_label: pd.Series, value: object) -> str:
    """'line N' (CSV, JSON lines) or 'row N' of the first row whose label is `value`."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        hits = raw_label.index[raw_label.isna().to_numpy()]
    else:
        try:
            hits = raw_label.index[(raw_label == value).to_numpy(dtype=bool)]
        except (TypeError, ValueError):
            hits = []
    if len(hits) == 0:
        return "a row"
    i = int(hits[0])  # the position in the file: the raw frame's index is 0..n-1
    kind = _file_kind(path)
    if kind in (".csv", ".tsv"):
        return f"line {i + 2}"  # the header is line 1
    if kind in (".jsonl", ".ndjson"):
        return f"line {i + 1}"
    return f"row {i + 1}"


def _clean_text(col: pd.Series) -> pd.Series:
    return col.fillna("").astype(str).str.strip()


def load_pairs(path: str | Path, mapping: str | Mapping = "auto") -> pd.DataFrame:
    """Read a judgments file into the query/text/label/gain/relevant frame (see module doc).

    `mapping` is "auto" (detected from the columns), a name in MAPPINGS, a COLUMNS spec
    (mappings.parse_columns) or a Mapping. Rows with an empty query or text are dropped; a
    label that does not fit, like every other problem with the file, raises errors.DataError.
    The index is 0..n-1, so positions in score arrays match rows.
    """
    path = Path(path)
    raw = _read_table(path)
    m = _pick_mapping(raw, mapping, path)
    if len(raw) == 0:
        raise DataError(f"{path}: no rows" + (", only the header" if _file_kind(path) in (".csv", ".tsv") else ""))

    query = _clean_text(raw[m.query])
    parts = [_clean_text(raw[c]) for c in m.text_columns]
    text = parts[0]
    for part in parts[1:]:
        # Join without doubled spaces when one of the columns is empty.
        text = (text + " " + part).str.strip()
    keep = (query != "") & (text != "")
    if not keep.any():
        raise DataError(f"{path}: no row has both a query ({m.query}) and a product text "
                        f"({'+'.join(m.text_columns)})")
    raw_label = raw.loc[keep, m.label]

    # Map each distinct raw label once: few distinct values, many rows.
    distinct = pd.unique(raw_label)
    table = {}
    for value in distinct:
        try:
            g = float(m.gain(value))
        except (KeyError, ValueError, TypeError):
            g = math.nan
        if not (0.0 <= g <= m.max_gain):  # also catches NaN
            seen = ", ".join(repr(v) for v in distinct[:8]) + (", ..." if len(distinct) > 8 else "")
            source = "COLUMNS" if is_spec(m.name) else f"mapping {m.name!r}"
            raise DataError(f"{path}: {_where(path, raw_label, value)}: {m.label}={value!r} does not fit "
                            f"{source} ({m.doc}); values seen: {seen}; say what the labels are with "
                            f"{KINDS} in COLUMNS (docs/data.md)")
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
            raise DataFileMissing(f"shared Home Depot data not found at {config.SHARED_DATA} "
                                  "(it exists on developer machines only); use 'default' or a path")
        return config.SHARED_DATA
    path = Path(spec).expanduser()
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "not found"
        raise DataFileMissing(f"data file {path} {what}; give a path, 'default' or 'shared'")
    return path


def load_default_or_shared(prefer_shared: bool = True) -> pd.DataFrame:
    """Real Home Depot judgments when present (and preferred), else the synthetic default data."""
    if prefer_shared and config.SHARED_DATA.exists():
        return load_pairs(config.SHARED_DATA)
    return load_pairs(synthetic.ensure_default_data())
