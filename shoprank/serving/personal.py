"""The shopper in the serving path: optional USER_ID / USER_CONTEXT -> recent behaviour -> the
personalization features the sorter's personal head reads.

    USER_ID       BYTES [1], an opaque id: looked up in the profile store under its keyed pseudonym
    USER_CONTEXT  BYTES [-1], recent behaviour the caller sends, most recent first; an item is a
                  product text the shopper acted on, or "kind:text" with kind one of query,
                  click, add_to_cart, purchase ("query:cordless drill", "purchase:DEWALT 20V ...")

Both are optional; a request with neither (or an unknown shopper, or a profile store that does
not answer) is a cold start: no behaviour, and the sorter scores it exactly as without
personalization. The caller's context comes first (it is the newest), then the stored profile;
together at most MAX_EVENTS items, each cut to MAX_TEXT_CHARS characters: an over-long context
is truncated, not rejected. Invalid UTF-8 is an error naming the tensor.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import config
from ..errors import RequestError
from .profiles import BEHAVIOUR_KINDS, MAX_EVENTS, MAX_TEXT_CHARS, ProfileStore, ProfileUnavailable
from .request import decode_text

DEFAULT_CONTEXT_KIND = "click"   # an item without a "kind:" prefix is a product the shopper acted on
MAX_USER_ID_CHARS = 256


def decode_user_id(values: Sequence | None) -> str | None:
    """The USER_ID input: None when absent or empty."""
    if values is None or len(values) == 0:
        return None
    if len(values) != 1:
        raise RequestError(f"{config.USER_ID} must hold exactly one string, got {len(values)}")
    user = decode_text(values[0], config.USER_ID).strip()
    if len(user) > MAX_USER_ID_CHARS:
        raise RequestError(f"{config.USER_ID} is too long: {len(user)} > {MAX_USER_ID_CHARS} characters")
    return user or None


def decode_context(values: Sequence | None) -> list[tuple[str, str]]:
    """The USER_CONTEXT input as (kind, text), newest first, truncated to MAX_EVENTS items."""
    if values is None:
        return []
    out = []
    for i, value in enumerate(list(values)[:MAX_EVENTS]):
        item = decode_text(value, f"{config.USER_CONTEXT}[{i}]").strip()
        kind, sep, rest = item.partition(":")
        if sep and kind.strip().lower() in BEHAVIOUR_KINDS:
            kind, item = kind.strip().lower(), rest.strip()
        else:
            kind = DEFAULT_CONTEXT_KIND
        if item:
            out.append((kind, item[:MAX_TEXT_CHARS]))
    return out


@dataclass
class Lookup:
    behaviour: list[tuple[str, str]]   # newest first, at most MAX_EVENTS
    source: str                        # "anonymous" | "unknown" | "profile" | "context" | "outage"


def shopper_behaviour(user: str | None, context: list[tuple[str, str]], store: ProfileStore | None,
                      pseudonym_of) -> Lookup:
    """The request's behaviour: the caller's context, then the stored profile (newest first).
    A store that fails is an outage: the context alone (or a cold start), never an error."""
    stored: list[tuple[str, str]] = []
    source = "context" if context else "anonymous"
    if user is not None and store is not None:
        try:
            stored = [(e.kind, e.text) for e in store.recent(pseudonym_of(user), MAX_EVENTS)]
            source = "profile" if stored else ("context" if context else "unknown")
        except ProfileUnavailable:
            source = "outage"
    return Lookup((context + stored)[:MAX_EVENTS], source)


PERSONAL_FOLDER = "personal"    # the personal head, in a model folder and in the served sorter


def personal_dir(model_dir) -> Path:
    """Where a model's personal head lives (written by `shoprank personalize --install`)."""
    return Path(model_dir) / PERSONAL_FOLDER


class ShopperStep:
    """The tokenizer's part: the request's shopper inputs -> BEHAVIOUR [N, B] and where it came
    from. The store is opened on first use and again after a failure (an outage at start-up is
    one more cold start, not a model that fails to load)."""

    def __init__(self, store_url: str, key_file: str | Path):
        from ..data.pseudonym import load_or_create_key, pseudonym

        key = load_or_create_key(key_file)
        self._pseudonym = lambda user: pseudonym(user, key)
        self.store_url = store_url
        self._store: ProfileStore | None = None

    def _open(self) -> ProfileStore | None:
        from .profiles import open_profiles

        if self._store is None:
            try:
                self._store = open_profiles(self.store_url)
            except ProfileUnavailable:
                return None
        return self._store

    def behaviour(self, user_values, context_values, texts) -> tuple[np.ndarray | None, str]:
        """(BEHAVIOUR features or None for an anonymous request, where they came from)."""
        from ..features.behaviour import behaviour_features

        if user_values is None and context_values is None:  # most traffic: nothing to look up
            return None, "anonymous"
        user, context = decode_user_id(user_values), decode_context(context_values)
        store = self._open() if user is not None else None
        lookup = shopper_behaviour(user, context, store, self._pseudonym)
        if user is not None and store is None:
            lookup.source = "outage"
        if lookup.source == "outage":
            self._store = None   # reopen next time
        return behaviour_features(lookup.behaviour, texts), lookup.source


def personal_logits(head, logits: np.ndarray, behaviour: np.ndarray) -> np.ndarray:
    """The sorter's part: the personal head over the shopper's features; a cold start (all-zero
    features) keeps the logits exactly as without personalization."""
    if head is None or not np.any(behaviour):
        return logits
    return head.logits(logits, behaviour)
