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
        requests = []
        for g in rng.choice(len(self.groups), size=count, replace=False):
            query, own = self.groups[g]
            own = own[:size]
            chosen = set(own)
            while len(own) < size:
                for t in rng.choice(titles, size=size, replace=False):
                    if t not in chosen and len(own) < size:
                        chosen.add(t)
                        own.append(t)
            order = rng.permutation(size)
            requests.append(Request(query, tuple(own[i] for i in order)))
        return requests
