"""Training batches: shuffled rows (optionally grouped by length) or whole queries."""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def shuffled_batches(n: int, batch_size: int, rng: np.random.Generator, lengths: np.ndarray | None = None,
                     group: int = 50) -> Iterator[np.ndarray]:
    """Shuffled batches of row indices. With `lengths`: each run of `group` batches' worth of
    shuffled rows is sorted by length before it is cut into batches, and the batches are
    shuffled again, so a batch pads to nearly its own length yet the order stays random."""
    order = rng.permutation(n)
    if lengths is None:
        for start in range(0, n, batch_size):
            yield order[start:start + batch_size]
        return
    batches = []
    for start in range(0, n, batch_size * group):
        block = order[start:start + batch_size * group]
        block = block[np.argsort(lengths[block], kind="stable")]
        batches += [block[i:i + batch_size] for i in range(0, len(block), batch_size)]
    for i in rng.permutation(len(batches)):
        yield batches[i]


def query_batches(groups: list[np.ndarray], batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Shuffled batches of whole queries (`groups`: each query's row positions, as from
    data.query_groups): queries in random order, each batch filled with whole queries until it
    holds at least batch_size rows (a larger query is one batch)."""
    batch, rows = [], 0
    for g in rng.permutation(len(groups)):
        batch.append(groups[g])
        rows += len(groups[g])
        if rows >= batch_size:
            yield np.concatenate(batch)
            batch, rows = [], 0
    if batch:
        yield np.concatenate(batch)
