"""The online profile store: a shopper's recent behaviour, read in the serving path.

One interface, two backends:
    SqliteProfiles  embedded default: one SQLite file, no server to start
    RedisProfiles   production: one Redis sorted set per shopper, by time, trimmed on write
`open_profiles(url)` picks one: a path or ``sqlite:///path`` -> SQLite, ``redis://host:port/db``
-> Redis.

A profile is a list of Behaviour events, NEWEST FIRST, at most MAX_EVENTS per shopper (older
ones are dropped on write). Shoppers are keyed by the same keyed pseudonym the feedback store
uses (shoprank.data.pseudonym), never by the id the caller sent, so the two stores can be
joined and erased together (`forget`).

A backend that cannot answer raises ProfileUnavailable; the serving path turns that into a cold
start (today's ranking) and counts it, it never fails the request.
"""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

BEHAVIOUR_KINDS = ("query", "click", "add_to_cart", "purchase")
MAX_EVENTS = 50          # kept per shopper, newest first
MAX_TEXT_CHARS = 256     # a behaviour's text is cut to this (a profile is a summary, not a log)
REDIS_TIMEOUT_S = 0.05   # a slow store must not hold a rank request: cold start instead
REDIS_PREFIX = "shoprank:profile:"


class ProfileUnavailable(RuntimeError):
    """The profile store did not answer (down, timed out, corrupt)."""


@dataclass(frozen=True)
class Behaviour:
    ts: float    # unix seconds
    kind: str    # one of BEHAVIOUR_KINDS
    text: str    # the query typed, or the product text clicked / carted / bought

    def __post_init__(self):
        if self.kind not in BEHAVIOUR_KINDS:
            raise ValueError(f"behaviour kind must be one of {', '.join(BEHAVIOUR_KINDS)}, got {self.kind!r}")

    def encode(self) -> str:
        return json.dumps([self.ts, self.kind, self.text[:MAX_TEXT_CHARS]], ensure_ascii=False)

    @classmethod
    def decode(cls, raw: str | bytes) -> Behaviour:
        ts, kind, text = json.loads(raw)
        return cls(float(ts), str(kind), str(text))


class ProfileStore(Protocol):
    def recent(self, user: str, limit: int = MAX_EVENTS) -> list[Behaviour]:
        """The shopper's newest `limit` events, newest first; [] for an unknown shopper."""

    def add(self, user: str, events: list[Behaviour]) -> None:
        """Append events (any order); the profile keeps the newest MAX_EVENTS."""

    def forget(self, user: str) -> int:
        """Erase the shopper's profile; returns how many events were erased."""

    def users(self) -> int:
        """How many shoppers have a profile."""

    def close(self) -> None: ...


class SqliteProfiles:
    """Embedded backend. WAL mode: the serving path reads while the feeder writes."""

    SCHEMA = """
    CREATE TABLE IF NOT EXISTS behaviour (
        user_id TEXT NOT NULL,
        ts      REAL NOT NULL,
        kind    TEXT NOT NULL,
        text    TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS behaviour_user_ts ON behaviour (user_id, ts DESC);
    """

    def __init__(self, path: str | Path, max_events: int = MAX_EVENTS):
        self.path = Path(path)
        self.max_events = max_events
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()   # one connection, shared by the model instance's threads
        try:
            self._conn = sqlite3.connect(str(self.path), timeout=1.0, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(self.SCHEMA)
        except sqlite3.Error as exc:
            raise ProfileUnavailable(f"profile store {self.path}: {exc}") from exc

    def recent(self, user: str, limit: int = MAX_EVENTS) -> list[Behaviour]:
        try:
            with self._lock:
                rows = self._conn.execute(
                    "SELECT ts, kind, text FROM behaviour WHERE user_id = ? ORDER BY ts DESC LIMIT ?",
                    (user, min(limit, self.max_events))).fetchall()
        except sqlite3.Error as exc:
            raise ProfileUnavailable(f"profile store {self.path}: {exc}") from exc
        return [Behaviour(ts, kind, text) for ts, kind, text in rows]

    def add(self, user: str, events: list[Behaviour]) -> None:
        rows = [(user, e.ts, e.kind, e.text[:MAX_TEXT_CHARS]) for e in events]
        try:
            with self._lock, self._conn:
                self._conn.executemany("INSERT INTO behaviour VALUES (?, ?, ?, ?)", rows)
                self._conn.execute(
                    "DELETE FROM behaviour WHERE user_id = ? AND rowid NOT IN (SELECT rowid FROM behaviour "
                    "WHERE user_id = ? ORDER BY ts DESC LIMIT ?)", (user, user, self.max_events))
        except sqlite3.Error as exc:
            raise ProfileUnavailable(f"profile store {self.path}: {exc}") from exc

    def forget(self, user: str) -> int:
        with self._lock, self._conn:
            return self._conn.execute("DELETE FROM behaviour WHERE user_id = ?", (user,)).rowcount

    def users(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT COUNT(DISTINCT user_id) FROM behaviour").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class RedisProfiles:
    """Production backend: one sorted set `shoprank:profile:<pseudonym>` per shopper, scored by
    time (an event that arrives late still lands in its place; trimming keeps the newest).
    Timeouts are short: a slow Redis becomes a cold start, not a slow rank request."""

    def __init__(self, url: str, max_events: int = MAX_EVENTS, timeout_s: float = REDIS_TIMEOUT_S):
        import redis  # the production dependency; the embedded default does not need it

        self.url = url
        self.max_events = max_events
        self._errors = (redis.RedisError, OSError)
        self._client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)

    def _key(self, user: str) -> str:
        return REDIS_PREFIX + user

    def recent(self, user: str, limit: int = MAX_EVENTS) -> list[Behaviour]:
        try:
            raw = self._client.zrevrange(self._key(user), 0, min(limit, self.max_events) - 1)
        except self._errors as exc:
            raise ProfileUnavailable(f"profile store {self.url}: {exc}") from exc
        return [Behaviour.decode(r) for r in raw]

    def add(self, user: str, events: list[Behaviour]) -> None:
        if not events:
            return
        try:
            with self._client.pipeline(transaction=True) as pipe:
                pipe.zadd(self._key(user), {e.encode(): e.ts for e in events})
                pipe.zremrangebyrank(self._key(user), 0, -self.max_events - 1)  # all but the newest
                pipe.execute()
        except self._errors as exc:
            raise ProfileUnavailable(f"profile store {self.url}: {exc}") from exc

    def forget(self, user: str) -> int:
        key = self._key(user)
        with self._client.pipeline(transaction=True) as pipe:
            pipe.zcard(key)
            pipe.delete(key)
            erased, _ = pipe.execute()
        return int(erased)

    def users(self) -> int:
        return sum(1 for _ in self._client.scan_iter(match=REDIS_PREFIX + "*", count=1000))

    def close(self) -> None:
        self._client.close()


def open_profiles(url: str | Path, max_events: int = MAX_EVENTS) -> ProfileStore:
    """A path or sqlite:///path -> SqliteProfiles; redis://... -> RedisProfiles."""
    text = str(url)
    if text.startswith(("redis://", "rediss://", "unix://")):
        return RedisProfiles(text, max_events)
    if text.startswith("sqlite:///"):
        text = text[len("sqlite://"):]
    elif "://" in text:
        raise ValueError(f"profile store URL must be a path, sqlite:///path or redis://host:port/db, got {text!r}")
    return SqliteProfiles(text, max_events)


def lookup_cost(store: ProfileStore, users: list[str], repeats: int = 2000) -> dict:
    """p50/p99 of `recent()` in microseconds over existing shoppers (the serving path's cost):
    wall clock, and this thread's CPU time (on a busy machine the wall clock mostly measures the
    wait for a core; for Redis the CPU time leaves out the server's part)."""
    wall, cpu = [], []
    for i in range(repeats):
        started, started_cpu = time.perf_counter(), time.thread_time()
        store.recent(users[i % len(users)])
        wall.append(time.perf_counter() - started)
        cpu.append(time.thread_time() - started_cpu)
    wall.sort()
    cpu.sort()
    return {"lookups": repeats, "p50_us": 1e6 * wall[len(wall) // 2], "p99_us": 1e6 * wall[int(len(wall) * 0.99)],
            "cpu_p50_us": 1e6 * cpu[len(cpu) // 2], "cpu_p99_us": 1e6 * cpu[int(len(cpu) * 0.99)]}
