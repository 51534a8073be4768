"""A burst far above capacity: are accepted requests still fast, and is the rest refused fast?

Closed-loop clients (half gRPC, half HTTP) each send rank requests back to back for a while.
Every answer is one of: ranked (accepted), refused as overloaded (Triton's UNAVAILABLE from a
full or timed-out queue: HTTP 503, gRPC UNAVAILABLE; retryable), or any other failure (a defect).
A refused client waits RETRY_AFTER_S before its next request, as a client told "retry" would;
without it the clients turn into a flood of instant retries that measures the flood instead.
"""
from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from ...data.requests import RequestPool
from ...serving.client import RankClient
from ...serving.server import Endpoints

RETRY_AFTER_S = 1.0
# Triton's bounded queues and the gateway's in-flight cap (shoprank/serving/templates/gateway.conf).
OVERLOADED_MARKS = ("Exceeds maximum queue size", "Request timeout expired", "overloaded:")


def is_overloaded(exc: Exception) -> bool:
    """A refusal of a request the server has no room for (retryable); any other error is not."""
    return any(mark in str(exc) for mark in OVERLOADED_MARKS)


@dataclass
class Outcomes:
    accepted: list[float] = field(default_factory=list)
    refused: list[float] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        def pct(values, q):
            return round(float(np.percentile(values, q)) * 1000, 1) if values else None
        total = len(self.accepted) + len(self.refused) + len(self.failed)
        return {"requests": total, "accepted": len(self.accepted), "refused_overloaded": len(self.refused),
                "other_failures": len(self.failed), "shed_share": round(len(self.refused) / total, 3) if total else 0,
                "accepted_p50_ms": pct(self.accepted, 50), "accepted_p99_ms": pct(self.accepted, 99),
                "refused_p50_ms": pct(self.refused, 50), "refused_p99_ms": pct(self.refused, 99),
                "failures": self.failed[:5]}


def burst(endpoints: Endpoints, pool: RequestPool, clients: int, seconds: float, size: int | tuple[int, int],
          top_k: int = 10, seed: int = 0) -> dict:
    """`clients` closed-loop clients for `seconds`; the outcome counts and latencies."""
    out, lock, stop = Outcomes(), threading.Lock(), threading.Event()

    def client(i: int) -> None:
        rng = random.Random(seed + i)
        protocol = "grpc" if i % 2 == 0 else "http"
        with RankClient(endpoints.grpc if protocol == "grpc" else endpoints.http, protocol) as rank:
            while not stop.is_set():
                n = size if isinstance(size, int) else rng.randint(size[0], size[1])
                query, texts = pool.draw(rng, n)
                started = time.perf_counter()
                try:
                    rank.infer_raw(query, texts, top_k)
                    kind, value = "accepted", time.perf_counter() - started
                except Exception as exc:  # every answer is classified, none may escape
                    kind, value = ("refused", time.perf_counter() - started) if is_overloaded(exc) \
                        else ("failed", f"{type(exc).__name__}: {str(exc)[:200]}")
                with lock:
                    getattr(out, kind).append(value)
                if kind == "refused":
                    stop.wait(RETRY_AFTER_S)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join(timeout=120)
    return {"clients": clients, "seconds": seconds, **out.summary()}
