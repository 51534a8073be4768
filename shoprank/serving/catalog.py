"""The product catalog the serving path resolves CANDIDATE_IDS against: id -> the text ranked
and the attributes business rules read (price, margin, in stock, rating, conversion, brand,
category).

One SQLite file, written whole and swapped in by rename (`load_catalog`), never changed in
place; `Catalog.lookup` notices a swap (one stat per call) and reads the new file before it
answers, so reloading while serving loses no request (the request that sees the swap waits for
the read). Opened read-only and `immutable` (no locks: nothing writes it in place).
"""
from __future__ import annotations

import hashlib
import os
import sqlite3
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .. import config
from ..errors import DataError, RequestError

DEFAULT_DB = config.ARTIFACTS_DIR / "catalog" / "catalog.sqlite"
NUMERIC = ("price", "margin", "in_stock", "rating", "conversion")
TEXTUAL = ("brand", "category")
# Columns of the ATTRIBUTES tensor (tokenizer -> sorter, FP64 [N, len]): brand, category and the
# id itself travel as codes (code(), id_code(): exact in FP64), enough for the sorter's equality
# tests, so the sorter never decodes the candidates' id strings.
STORED = (*NUMERIC, "brand_code", "category_code")
ATTRIBUTES = (*STORED, "id_code")
COLUMN = {name: i for i, name in enumerate(ATTRIBUTES)}
DEFAULTS = {"price": np.nan, "margin": np.nan, "in_stock": 1.0, "rating": np.nan, "conversion": np.nan,
            "brand": "", "category": ""}
SCHEMA = ("CREATE TABLE products (id TEXT PRIMARY KEY, text TEXT NOT NULL, price REAL, margin REAL, "
          "in_stock REAL, rating REAL, conversion REAL, brand_code REAL, category_code REAL, brand TEXT, "
          "category TEXT) WITHOUT ROWID")


def code(value: str) -> float:
    """A brand's or category's code: CRC-32 of its lower-cased, stripped name (0 = none)."""
    value = str(value).strip().lower()
    return float(zlib.crc32(value.encode("utf-8"))) if value else 0.0


def id_code(product_id: str) -> float:
    """A product id's code: 52 bits of its BLAKE2b hash (exact in FP64; a collision among the
    rules' few ids and a request's candidates is a 1 in 10^12 event)."""
    digest = hashlib.blake2b(str(product_id).encode("utf-8"), digest_size=7).digest()
    return float(int.from_bytes(digest, "big") >> 4)


def read_table(path: str | Path):
    """A catalog file (CSV or Parquet) as a DataFrame with id, text and every attribute column
    (missing ones filled with their defaults). DataError names what is wrong."""
    import pandas as pd

    path = Path(path)
    if not path.exists():
        raise DataError(f"catalog file {path} not found")
    if path.suffix.lower() == ".parquet":
        frame = pd.read_parquet(path)
    elif path.suffix.lower() in (".csv", ".tsv"):
        frame = pd.read_csv(path, sep="\t" if path.suffix.lower() == ".tsv" else ",", dtype={"id": str})
    else:
        raise DataError(f"catalog file {path}: unknown type {path.suffix!r}; use .csv, .tsv or .parquet")
    missing = [c for c in ("id", "text") if c not in frame.columns]
    if missing:
        raise DataError(f"catalog file {path} has no column {missing[0]!r} (needs id, text; optional: "
                        f"{', '.join((*NUMERIC, *TEXTUAL))})")
    frame = frame.copy()
    frame["id"] = frame["id"].astype(str)
    duplicated = frame["id"][frame["id"].duplicated()]
    if len(duplicated):
        raise DataError(f"catalog file {path}: id {duplicated.iloc[0]!r} appears more than once")
    for name, default in DEFAULTS.items():
        if name not in frame.columns:
            frame[name] = default
    for name in NUMERIC:
        frame[name] = pd.to_numeric(frame[name], errors="coerce").astype(float)
    for name in TEXTUAL:
        frame[name] = frame[name].fillna("").astype(str)
    frame["in_stock"] = frame["in_stock"].fillna(1.0)
    return frame


def load_catalog(source: str | Path, db: str | Path = DEFAULT_DB) -> dict:
    """Write `source` (CSV/Parquet) into the SQLite catalog `db`, swapped in atomically."""
    frame = read_table(source)
    db = Path(db)
    db.parent.mkdir(parents=True, exist_ok=True)
    partial = db.with_name(db.name + f".{os.getpid()}.partial")
    partial.unlink(missing_ok=True)
    conn = sqlite3.connect(str(partial))
    try:
        conn.execute(SCHEMA)
        def number(v):
            return None if v != v else float(v)  # NaN -> NULL

        rows = [(i, t, *map(number, nums), code(b), code(c), b, c) for i, t, *nums, b, c in zip(
            frame["id"], frame["text"].astype(str), *(frame[n] for n in NUMERIC), frame["brand"], frame["category"])]
        conn.executemany("INSERT INTO products VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        conn.commit()
    finally:
        conn.close()
    partial.replace(db)
    return {"catalog": str(db), "products": len(frame), "source": str(source)}


class Catalog:
    """Lookups of ids in the SQLite catalog, served from memory: the file is read whole when
    first used and again after a swap (module doc), so a lookup is a dict probe per id and one
    array gather, not a query (measured in docs/conversion.md: SQLite's own lookup of 1,000 ids
    took several ms)."""

    def __init__(self, path: str | Path = DEFAULT_DB):
        self.path = Path(path)
        self._stamp = None
        self._row: dict[str, int] = {}
        self._texts: list[str] = []
        self._values = np.empty((0, len(ATTRIBUTES)))

    def _refresh(self) -> None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise RequestError(f"no product catalog at {self.path}: load one (make catalog) to send "
                               f"{config.CANDIDATE_IDS}") from None
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        conn = sqlite3.connect(f"file:{self.path}?mode=ro&immutable=1", uri=True)
        try:
            rows = conn.execute(f"SELECT id, text, {', '.join(STORED)} FROM products").fetchall()
        finally:
            conn.close()
        # Swapped in one assignment each, after the read: a failed read keeps the old catalog.
        self._row = {row[0]: i for i, row in enumerate(rows)}
        self._texts = [row[1] for row in rows]
        self._values = np.array([[*(np.nan if v is None else v for v in row[2:]), id_code(row[0])] for row in rows],
                                dtype=np.float64).reshape(len(rows), len(ATTRIBUTES))
        self._stamp = stamp

    def lookup(self, ids: Sequence[str]) -> tuple[list[str], np.ndarray]:
        """(texts, ATTRIBUTES FP64 [N, len(ATTRIBUTES)]) in the order of `ids`; RequestError
        naming the first unknown id."""
        self._refresh()
        row = self._row
        try:
            rows = [row[i] for i in ids]
        except KeyError:
            first = next(k for k, i in enumerate(ids) if i not in row)
            raise RequestError(f"unknown product id {config.CANDIDATE_IDS}[{first}] = {ids[first]!r}: "
                               "not in the catalog") from None
        texts = self._texts
        return [texts[r] for r in rows], self._values[rows]

    def __len__(self) -> int:
        self._refresh()
        return len(self._texts)

    def frame(self):
        """The whole catalog as a DataFrame (for tools, not the request path)."""
        import pandas as pd

        self._refresh()
        conn = sqlite3.connect(f"file:{self.path}?mode=ro&immutable=1", uri=True)
        try:
            return pd.read_sql_query("SELECT * FROM products", conn)
        finally:
            conn.close()

    def close(self) -> None:
        self._stamp = None


def lookup_benchmark(catalog: Catalog, ids: Sequence[str], requests: int = 300, size: int = 1000,
                     seed: int = 0) -> dict:
    """Time `requests` lookups of `size` random ids: wall and this thread's CPU time, p50/p99 in
    ms, with the machine's load average (on a shared machine the wall p99 is mostly waiting)."""
    import time

    rng = np.random.default_rng(seed)
    ids = np.asarray(list(ids), dtype=object)
    catalog.lookup(list(ids[:1]))  # the first lookup reads the file
    wall, cpu = [], []
    for _ in range(requests):
        batch = list(ids[rng.integers(0, len(ids), size)])
        started, started_cpu = time.perf_counter(), time.thread_time()
        catalog.lookup(batch)
        wall.append(1e3 * (time.perf_counter() - started))
        cpu.append(1e3 * (time.thread_time() - started_cpu))
    wall.sort()
    cpu.sort()
    return {"requests": requests, "ids_per_lookup": size, "catalog_products": len(ids),
            "p50_ms": wall[len(wall) // 2], "p99_ms": wall[int(0.99 * len(wall))],
            "cpu_p50_ms": cpu[len(cpu) // 2], "cpu_p99_ms": cpu[int(0.99 * len(cpu))],
            "load_average_1m": os.getloadavg()[0], "cpus": os.cpu_count()}
