"""Splits by query, never by row, and the one loader of "the model's data, split as it was trained".

A query's products are near duplicates of each other's judgments, so a row split would leak the
answer into validation. The side of a query depends only on (seed, lower-cased query).
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from .. import config
from ..errors import DataError
from ..model_card import read_model_card
from .load import load_pairs, resolve_data


def is_valid_query(query: str, seed: int = config.SEED, valid_fraction: float = config.VALID_FRACTION) -> bool:
    """Whether `query` falls on the validation side of the split."""
    # blake2b, not hash(): Python's str hash changes between runs, this one never does.
    digest = hashlib.blake2b(f"{seed}:{query.lower().strip()}".encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < valid_fraction


def fold_of(query: str, folds: int, seed: int = config.SEED) -> int:
    """Which of `folds` folds `query` falls in (0..folds-1): stable, by query, independent of
    the train/validation side (another salt), so every fold draws from the training queries."""
    digest = hashlib.blake2b(f"fold:{seed}:{query.lower().strip()}".encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % folds


def split_by_query(df: pd.DataFrame, valid_fraction: float = config.VALID_FRACTION,
                   seed: int = config.SEED) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, valid): each query (case and outer spaces ignored) wholly on one side.

    The side depends only on (seed, query), so it is stable across runs, files and row
    order; the valid share of queries is close to valid_fraction, not exact.
    """
    side = {q: is_valid_query(q, seed, valid_fraction) for q in pd.unique(df["query"])}
    is_valid = df["query"].map(side).to_numpy(dtype=bool)
    train = df[~is_valid].reset_index(drop=True)
    valid = df[is_valid].reset_index(drop=True)
    train.attrs, valid.attrs = dict(df.attrs), dict(df.attrs)
    return train, valid


def query_groups(df: pd.DataFrame) -> Iterator[tuple[str, np.ndarray]]:
    """(query, positions of its rows) for each query, in order of first appearance.

    Positions are 0-based row positions (for .iloc and score arrays), ascending within a group.
    """
    codes, uniques = pd.factorize(df["query"], sort=False)
    order = np.argsort(codes, kind="stable")
    bounds = np.cumsum(np.bincount(codes, minlength=len(uniques)))[:-1]
    for q, idx in zip(uniques, np.split(order, bounds)):
        yield q, idx


PARTS = ("train", "valid", "all")


def model_pairs(model_dir: str | Path, part: str = "valid", data: str | None = None,
                limit_queries: int = 0, mapping: str | None = None) -> pd.DataFrame:
    """The judgments a fine-tuned model was trained and validated on, split as it was.

    The model card names the data file, mapping (a ready mapping's name, "auto" or a COLUMNS
    spec) and split seed. part: "valid" (quality gates, evaluation, probes), "train"
    (calibration, replay) or "all". data: another judgments file ("shared", "default" or a path)
    instead of the card's, split with the card's seed; read with `mapping` (a name, "auto" or a
    COLUMNS spec; default: detected), which for the card's own file replaces the card's.
    limit_queries: the first N queries only. attrs["split"] names the part.
    """
    if part not in PARTS:
        raise ValueError(f"part must be one of {', '.join(PARTS)}, got {part!r}")
    card = read_model_card(model_dir)
    spec = data or card.get("data")
    pairs = load_pairs(resolve_data(spec), mapping or ("auto" if data else card.get("mapping", "auto")))
    if part != "all":
        train, valid = split_by_query(pairs, seed=card.get("seed", config.SEED))
        pairs = valid if part == "valid" else train
    if limit_queries:
        attrs = dict(pairs.attrs)
        keep = set(pairs["query"].drop_duplicates().iloc[:limit_queries])
        pairs = pairs[pairs["query"].isin(keep)].reset_index(drop=True)
        pairs.attrs = attrs
    pairs.attrs["split"] = part
    if len(pairs) == 0:
        raise DataError(f"no {part} rows in {spec or 'the default data'!r} for {model_dir}")
    return pairs
