"""Test requests from real judgments: what benchmarks, load tests, evaluation latency, the demo's
timing and the GPU check send to a ranker.

A request is a real query with its own judged products first, topped up with other product
texts of the same data until it holds the wanted number of candidates, then shuffled so the
ranker has to find the relevant ones rather than read them off the top.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import config
from .load import load_default_or_shared, load_pairs, resolve_data
from .split import query_groups


@dataclass(frozen=True)
class Request:
    query: str
    texts: tuple[str, ...]


class RequestPool:
    """Draws requests from a judgments frame (see module doc)."""

    def __init__(self, pairs: pd.DataFrame):
        texts = pairs["text"].to_numpy()
        self.groups = [(q, list(dict.fromkeys(texts[idx].tolist()))) for q, idx in query_groups(pairs)]
        self.texts = list(dict.fromkeys(texts.tolist()))
        self.source = pairs.attrs.get("source", "?")
        if not self.groups:
            raise ValueError(f"{self.source}: no queries to build requests from")

    @classmethod
    def from_spec(cls, spec: str | None = "auto") -> RequestPool:
        """"auto": the Home Depot judgments when present, else the default data; otherwise
        "default", "shared" or a path."""
        if spec in (None, "", "auto"):
            return cls(load_default_or_shared())
        return cls(load_pairs(resolve_data(spec)))

    def check_size(self, size: int) -> None:
        if not 1 <= size <= len(self.texts):
            raise ValueError(f"{self.source}: {len(self.texts)} distinct product texts; a request of "
                             f"{size} candidates needs 1..{len(self.texts)}")

    def draw(self, rng: random.Random, size: int) -> tuple[str, list[str]]:
        """One request of `size` candidates for a query drawn at random (load tests: queries repeat)."""
        self.check_size(size)
        query, own = self.groups[rng.randrange(len(self.groups))]
        chosen = own[:size]
        seen = set(chosen)
        while len(chosen) < size:
            text = self.texts[rng.randrange(len(self.texts))]
            if text not in seen:
                seen.add(text)
                chosen.append(text)
        rng.shuffle(chosen)
        return query, chosen

    def distinct(self, size: int, count: int, seed: int = config.SEED) -> list[Request]:
        """`count` requests of `size` candidates, each for another query (the same requests for
        every system and every run with the same seed): benchmarks and latency timings."""
        self.check_size(size)
        if len(self.groups) < count:
            raise ValueError(f"{self.source} has {len(self.groups)} queries; {count} distinct requests wanted")
        rng = np.random.default_rng(seed + size)
        titles = np.array(self.texts, dtype=object)
        return [self._request(g, size, rng, titles) for g in rng.choice(len(self.groups), size=count, replace=False)]

    def _request(self, group: int, size: int, rng: np.random.Generator, titles: np.ndarray) -> Request:
        query, own = self.groups[group]
        own = own[:size]
        chosen = set(own)
        while len(own) < size:
            for t in rng.choice(titles, size=size, replace=False):
                if t not in chosen and len(own) < size:
                    chosen.add(t)
                    own.append(t)
        order = rng.permutation(size)
        return Request(query, tuple(own[i] for i in order))

    def head_heavy(self, size: int, count: int, exponent: float = config.ZIPF_EXPONENT,
                   seed: int = config.SEED) -> HeadHeavy:
        """`count` requests as head-heavy shop traffic sends them: the r-th most popular query
        (a fixed random order of the pool's queries) is drawn with probability proportional to
        1 / r**exponent (Zipf), and a query always comes with the same candidates (retrieval
        answers a repeated query alike), so popular requests repeat exactly."""
        self.check_size(size)
        if exponent <= 0:
            raise ValueError(f"the Zipf exponent must be > 0, got {exponent}")
        rng = np.random.default_rng(seed + size)
        n = len(self.groups)
        popularity = rng.permutation(n)           # popularity[r]: the query of rank r + 1
        weights = 1.0 / np.arange(1, n + 1) ** exponent
        weights /= weights.sum()
        ranks = rng.choice(n, size=count, p=weights)
        titles = np.array(self.texts, dtype=object)
        built: dict[int, Request] = {}
        for r in dict.fromkeys(ranks.tolist()):  # one fixed request per query, built once
            group = int(popularity[r])
            built[r] = self._request(group, size, np.random.default_rng([seed, group]), titles)
        top = max(1, n // 100)
        return HeadHeavy([built[r] for r in ranks.tolist()], exponent, n, float(weights[:top].sum()),
                         float(np.mean(ranks < top)), len(built))


@dataclass(frozen=True)
class HeadHeavy:
    """A head-heavy request stream and what characterises it."""
    requests: list[Request]
    exponent: float          # Zipf exponent of query popularity
    queries: int             # queries in the pool
    top1_share: float        # share of traffic the top 1% of queries get, by the distribution
    sampled_top1_share: float  # the same share in this sample
    distinct: int            # distinct requests in this sample

    def facts(self) -> dict:
        return {"zipf_exponent": self.exponent, "queries": self.queries, "requests": len(self.requests),
                "distinct_requests": self.distinct, "top1pct_share": round(self.top1_share, 4),
                "top1pct_share_sampled": round(self.sampled_top1_share, 4)}
