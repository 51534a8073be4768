"""Feedback capture: an append-only event store of what shoppers were shown and what they did.

Embedded default: one SQLite file in WAL mode (readers never block the writer, a crash never
corrupts it). The schema is the contract for every language: a client that is not Python
inserts the same rows (see SCHEMA, or `shoprank feedback serve`, a small HTTP collector that
does it for them: shoprank.online.collector).

    impressions  one row per rank response shown to a shopper
      request_id     TEXT PRIMARY KEY  the KServe v2 request `id` sent with the rank request
      ts             REAL              unix seconds
      user_id        TEXT              a keyed pseudonym of the user/session id the caller sent
                                       (shoprank.data.pseudonym; never the id itself); NULL
                                       when unknown
      query          TEXT              the query as sent
      model_version  TEXT              ranker version that served it (best effort, may be NULL)
      randomized     INTEGER 0/1       1 = shown in a random order (exploration traffic, used to
                                       estimate position bias)
      n_shown        INTEGER           number of shown candidates
    shown        one row per shown candidate
      request_id, position (0 = top of the page), candidate_index (position in the request's
      CANDIDATES), text (product text), score (served click probability)
    events       what the shopper did
      request_id, ts, position (shown position, 0-based), kind: click | add_to_cart | purchase

Append-only: rows are only ever inserted; the one deletion is retention (`purge`, default
RETENTION_DAYS), which drops whole impressions and events older than the cut-off.

Writes never slow or break ranking: `record_*` put a tuple on a bounded queue and return
(microseconds); a background thread writes batches in one transaction each. When the queue is
full the record is DROPPED and counted (`stats()["dropped"]`), and a failing write is counted
(`stats()["errors"]`), never raised to the caller.
"""
from __future__ import annotations

import contextlib
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from .. import config
from ..data.pseudonym import DEFAULT_KEY_FILE, load_or_create_key, pseudonym
from ..serving.client import Shown, new_request_id

EVENT_KINDS = ("click", "add_to_cart", "purchase")
RETENTION_DAYS = 90
QUEUE_SIZE = 10_000          # records waiting for the writer; beyond this, records are dropped
WRITE_BATCH = 500            # records per transaction
DEFAULT_DB = config.ARTIFACTS_DIR / "feedback" / "feedback.sqlite"

SCHEMA = """
CREATE TABLE IF NOT EXISTS impressions (
    request_id    TEXT PRIMARY KEY,
    ts            REAL NOT NULL,
    user_id       TEXT,
    query         TEXT NOT NULL,
    model_version TEXT,
    randomized    INTEGER NOT NULL DEFAULT 0 CHECK (randomized IN (0, 1)),
    n_shown       INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS shown (
    request_id      TEXT NOT NULL,
    position        INTEGER NOT NULL CHECK (position >= 0),
    candidate_index INTEGER NOT NULL,
    text            TEXT NOT NULL,
    score           REAL,
    PRIMARY KEY (request_id, position)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id  TEXT NOT NULL,
    ts          REAL NOT NULL,
    position    INTEGER NOT NULL CHECK (position >= 0),
    kind        TEXT NOT NULL CHECK (kind IN ('click', 'add_to_cart', 'purchase'))
);
CREATE INDEX IF NOT EXISTS impressions_ts ON impressions (ts);
CREATE INDEX IF NOT EXISTS events_request ON events (request_id);
CREATE INDEX IF NOT EXISTS events_ts ON events (ts);
"""


def connect(path: str | Path) -> sqlite3.Connection:
    """A connection with the schema in place (WAL, NORMAL sync: a power cut may lose the last
    transactions, never corrupt the file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():  # owner-only; SQLite gives its -wal and -shm files the same mode
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    conn = sqlite3.connect(str(path), timeout=10, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(SCHEMA)
    return conn


def check_event(position: int, kind: str) -> None:
    if kind not in EVENT_KINDS:
        raise ValueError(f"event kind must be one of {', '.join(EVENT_KINDS)}, got {kind!r}")
    if isinstance(position, bool) or not isinstance(position, int) or position < 0:
        raise ValueError(f"event position must be an int >= 0 (0 = top of the page), got {position!r}")


class FeedbackStore:
    """Append-only store with a background writer (see module doc)."""

    def __init__(self, path: str | Path = DEFAULT_DB, queue_size: int = QUEUE_SIZE,
                 retention_days: float = RETENTION_DAYS, pseudonym_key_file: str | Path = DEFAULT_KEY_FILE):
        self.path = Path(path)
        self._pseudonym_key = load_or_create_key(pseudonym_key_file)
        self.retention_days = retention_days
        connect(self.path).close()  # schema errors surface here, not in the writer thread
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._lock = threading.Lock()
        self._counts = {"enqueued": 0, "dropped": 0, "written": 0, "errors": 0, "write_seconds": 0.0}
        self.last_error: str | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._writer, name="feedback-writer", daemon=True)
        self._thread.start()

    # --- recording (any thread; never raises for a full queue or a failing disk) -------------
    def record_impression(self, request_id: str, query: str, shown: Sequence[Shown], *,
                          user_id: str | None = None, model_version: str | int | None = None,
                          randomized: bool = False, ts: float | None = None) -> bool:
        """Queue one impression; False when it was dropped (queue full or store closed)."""
        row = (str(request_id), ts if ts is not None else time.time(), pseudonym(user_id, self._pseudonym_key),
               str(query),
               None if model_version is None else str(model_version), int(bool(randomized)), len(shown))
        items = [(str(request_id), pos, int(s.candidate_index), str(s.text),
                  None if s.score is None else float(s.score)) for pos, s in enumerate(shown)]
        return self._put(("impression", row, items))

    def record_event(self, request_id: str, position: int, kind: str = "click", ts: float | None = None) -> bool:
        """Queue one event; raises ValueError for an unknown kind or bad position (a caller bug),
        returns False when dropped."""
        check_event(position, kind)
        return self._put(("event", (str(request_id), ts if ts is not None else time.time(), position, kind), None))

    def _put(self, record) -> bool:
        if self._closed:
            with self._lock:
                self._counts["dropped"] += 1
            return False
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            with self._lock:
                self._counts["dropped"] += 1
            return False
        with self._lock:
            self._counts["enqueued"] += 1
        return True

    # --- the writer thread ----------------------------------------------------------------------
    def _writer(self) -> None:
        conn = None
        while True:
            record = self._queue.get()
            if record is None:
                self._queue.task_done()
                break
            batch = [record]
            while len(batch) < WRITE_BATCH:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)  # seen after this batch is written
                    self._queue.task_done()
                    break
                batch.append(nxt)
            started = time.perf_counter()
            conn, ok, error = _write_batch(conn, self.path, batch)
            with self._lock:
                self._counts["written"] += ok
                self._counts["errors"] += len(batch) - ok
                self._counts["write_seconds"] += time.perf_counter() - started
                if error:
                    self.last_error = error
            for _ in batch:
                self._queue.task_done()
        if conn is not None:
            conn.close()

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every queued record is written (or failed); False on timeout."""
        deadline = time.time() + timeout
        while self._queue.unfinished_tasks:
            if time.time() > deadline or not self._thread.is_alive():
                return False
            time.sleep(0.005)
        return True

    def close(self, timeout: float = 30.0) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)  # blocks only while the queue is full, i.e. until the writer drains it
        self._thread.join(timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def stats(self) -> dict:
        with self._lock:
            out = dict(self._counts)
        out["queued"] = self._queue.qsize()
        written = out["written"] + out["errors"]
        out["write_us_per_record"] = 1e6 * out["write_seconds"] / written if written else None
        return out

    # --- reading and retention (own connection: WAL lets readers run beside the writer) ---------
    def frames(self, since: float | None = None, until: float | None = None):
        """(impressions, shown, events) as pandas frames, impressions with since <= ts < until;
        shown rows and events of those impressions."""
        return read_frames(self.path, since, until)

    def purge(self, older_than_days: float | None = None, now: float | None = None) -> dict:
        """Retention: delete impressions (with their shown rows) and events older than the cut-off."""
        return purge(self.path, self.retention_days if older_than_days is None else older_than_days, now)


@contextlib.contextmanager
def experiment_log(path: str | Path, pseudonym_key_file: str | Path):
    """A FeedbackStore for an experiment's simulated log, which must keep every record: its queue
    is unbounded (the serving path's store drops records when its writer lags on a busy machine,
    which would silently thin the log), and a record dropped, failed or still unwritten when it
    has closed is a RuntimeError naming the count."""
    with FeedbackStore(path, queue_size=0, pseudonym_key_file=pseudonym_key_file) as store:
        yield store
    stats = store.stats()
    lost = stats["dropped"] + stats["errors"] + stats["queued"]
    if lost:
        raise RuntimeError(f"the feedback log {path} lost {lost} records")


def _write_batch(conn, path, batch) -> tuple:
    """Write a batch in one transaction; if that fails, record by record, so one bad record
    (a duplicate request id, say) costs only itself. (connection or None, written, last error)."""
    try:
        conn = conn or connect(path)
        with conn:
            _write(conn, batch)
        return conn, len(batch), None
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    ok = 0
    for record in batch:
        try:
            conn = conn or connect(path)
            with conn:
                _write(conn, [record])
            ok += 1
        except Exception as exc:  # counted by the caller, never raised into ranking
            error = f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, sqlite3.IntegrityError) and conn is not None:
                conn.close()
                conn = None
    return conn, ok, error


def _write(conn: sqlite3.Connection, batch: Iterable) -> None:
    impressions, shown, events = [], [], []
    for kind, row, items in batch:
        if kind == "impression":
            impressions.append(row)
            shown.extend(items)
        else:
            events.append(row)
    if impressions:
        conn.executemany("INSERT INTO impressions (request_id, ts, user_id, query, model_version, randomized, "
                         "n_shown) VALUES (?, ?, ?, ?, ?, ?, ?)", impressions)
        conn.executemany("INSERT INTO shown (request_id, position, candidate_index, text, score) "
                         "VALUES (?, ?, ?, ?, ?)", shown)
    if events:
        conn.executemany("INSERT INTO events (request_id, ts, position, kind) VALUES (?, ?, ?, ?)", events)


def read_frames(path: str | Path, since: float | None = None, until: float | None = None):
    import pandas as pd

    conn = connect(path)
    try:
        where, args = [], []
        if since is not None:
            where.append("i.ts >= ?")
            args.append(since)
        if until is not None:
            where.append("i.ts < ?")
            args.append(until)
        cond = (" WHERE " + " AND ".join(where)) if where else ""
        imps = pd.read_sql_query(f"SELECT * FROM impressions i{cond} ORDER BY i.ts", conn, params=args)
        shown = pd.read_sql_query(f"SELECT s.* FROM shown s JOIN impressions i USING (request_id){cond}",
                                  conn, params=args)
        events = pd.read_sql_query(f"SELECT e.request_id, e.ts, e.position, e.kind FROM events e "
                                   f"JOIN impressions i USING (request_id){cond}", conn, params=args)
    finally:
        conn.close()
    return imps, shown, events


def purge(path: str | Path, older_than_days: float, now: float | None = None) -> dict:
    cutoff = (now if now is not None else time.time()) - older_than_days * 86400.0
    conn = connect(path)
    try:
        with conn:
            old = "SELECT request_id FROM impressions WHERE ts < ?"
            shown = conn.execute(f"DELETE FROM shown WHERE request_id IN ({old})", (cutoff,)).rowcount
            events = conn.execute(f"DELETE FROM events WHERE ts < ? OR request_id IN ({old})",
                                  (cutoff, cutoff)).rowcount
            imps = conn.execute("DELETE FROM impressions WHERE ts < ?", (cutoff,)).rowcount
    finally:
        conn.close()
    return {"cutoff": cutoff, "impressions": imps, "shown": shown, "events": events}


def benchmark(path: str | Path, requests: int = 2000, shown: int = 10) -> dict:
    """Write cost of feedback capture: caller-side cost of record_impression (what a rank call
    pays) and the writer thread's cost per impression (off the request path)."""
    store = FeedbackStore(path)
    items = [Shown(i, f"product text number {i} with a few words", 0.5) for i in range(shown)]
    caller = []
    started = time.perf_counter()
    for _ in range(requests):
        t = time.perf_counter()
        store.record_impression(new_request_id(), "cordless drill 20v", items, user_id="session-token")
        caller.append(time.perf_counter() - t)
    store.flush()
    wall = time.perf_counter() - started
    stats = store.stats()
    store.close()
    caller.sort()
    return {"requests": requests, "shown_per_request": shown,
            "caller_us_p50": 1e6 * caller[len(caller) // 2], "caller_us_p99": 1e6 * caller[int(len(caller) * 0.99)],
            "writer_us_per_impression": stats["write_us_per_record"], "dropped": stats["dropped"],
            "errors": stats["errors"], "wall_s": wall}


def erase_user(path: str | Path, user_pseudonym: str) -> dict:
    """Right to erasure: delete every impression of one shopper (by stored pseudonym), with its
    shown rows and events. Returns the counts deleted."""
    conn = connect(path)
    try:
        with conn:
            theirs = "SELECT request_id FROM impressions WHERE user_id = ?"
            shown = conn.execute(f"DELETE FROM shown WHERE request_id IN ({theirs})", (user_pseudonym,)).rowcount
            events = conn.execute(f"DELETE FROM events WHERE request_id IN ({theirs})", (user_pseudonym,)).rowcount
            imps = conn.execute("DELETE FROM impressions WHERE user_id = ?", (user_pseudonym,)).rowcount
    finally:
        conn.close()
    return {"impressions": imps, "shown": shown, "events": events}
