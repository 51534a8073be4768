"""Requests for the monitoring demo and tests: real queries and product texts (RequestPool) of
varied sizes, and a share of invalid ones, one of each kind the models refuse in turn."""
from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from ... import config
from ...data.requests import RequestPool
from ...errors import RankError
from ...serving.client import RankClient
from ...serving.triton.metrics import FLUSH_S

SIZES = (5, 10, 20, 50, 100)  # candidates per good request, drawn uniformly

# shoprank.serving.triton.metrics.ERROR_KINDS kind -> (query, candidates, top_k) that the models refuse.
BAD_REQUESTS = {
    "empty_query": ("", ["cordless drill"], 0),
    "no_candidates": ("cordless drill", [], 0),
    "too_many_candidates": ("cordless drill", ["drill bit"] * (config.MAX_CANDIDATES + 1), 0),
    "invalid_utf8": ("cordless drill", [b"\xff\xfe drill"], 0),
    "negative_top_k": ("cordless drill", ["drill bit"], -1),
}


@dataclass
class TrafficCounts:
    ok: int = 0
    candidates: int = 0  # scored by the good requests
    refused: Counter = field(default_factory=Counter)  # kind -> invalid requests the server refused
    unexpected: list = field(default_factory=list)  # errors of good requests, or bad ones accepted

    def as_dict(self) -> dict:
        return {"ok": self.ok, "candidates": self.candidates, "refused": dict(self.refused),
                "unexpected": self.unexpected[:5]}


def send_traffic(url: str, pool: RequestPool, seconds: float, protocol: str = "grpc", bad_share: float = 0.1,
                 users: int = 2, sizes: tuple[int, ...] = SIZES, seed: int = config.SEED) -> TrafficCounts:
    """`users` clients send back to back for `seconds`; each request is invalid with probability
    `bad_share`. Ends with one good request FLUSH_S later, so the sorter hands over the last
    scores it holds (shoprank.serving.triton.metrics)."""
    counts, lock = TrafficCounts(), threading.Lock()
    sizes = tuple(s for s in sizes if s <= len(pool.texts)) or (len(pool.texts),)
    deadline = time.monotonic() + seconds

    def user(number: int) -> None:
        rng = random.Random(seed + number)
        kinds = list(BAD_REQUESTS)
        with RankClient(url, protocol) as client:
            while time.monotonic() < deadline:
                if rng.random() < bad_share:
                    kind = kinds[rng.randrange(len(kinds))]
                    _send_bad(client, kind, counts, lock)
                else:
                    _send_good(client, *pool.draw(rng, sizes[rng.randrange(len(sizes))]), counts, lock)

    threads = [threading.Thread(target=user, args=(n,), daemon=True) for n in range(users)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    time.sleep(FLUSH_S)
    with RankClient(url, protocol) as client:
        _send_good(client, *pool.draw(random.Random(seed), sizes[0]), counts, lock)
    return counts


def _send_good(client: RankClient, query: str, texts: list[str], counts: TrafficCounts, lock) -> None:
    try:
        client.infer_raw(query, texts, top_k=10)
    except RankError as exc:
        with lock:
            counts.unexpected.append(f"good request failed: {exc}")
        return
    with lock:
        counts.ok += 1
        counts.candidates += len(texts)


def _send_bad(client: RankClient, kind: str, counts: TrafficCounts, lock) -> None:
    query, texts, top_k = BAD_REQUESTS[kind]
    try:
        client.infer_raw(query, texts, top_k=top_k)
    except RankError:
        with lock:
            counts.refused[kind] += 1
        return
    with lock:
        counts.unexpected.append(f"{kind} request was accepted")
