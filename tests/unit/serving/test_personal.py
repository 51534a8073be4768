"""The shopper inputs of a rank request: decoding, truncation, errors, the profile lookup's
outage path and the sorter's cold-start rule."""
from __future__ import annotations

import numpy as np
import pytest

from shoprank.errors import RequestError
from shoprank.serving.personal import ShopperStep, decode_context, decode_user_id, personal_logits, shopper_behaviour
from shoprank.serving.profiles import MAX_EVENTS, MAX_TEXT_CHARS, Behaviour, ProfileUnavailable, open_profiles


def test_user_id_absent_empty_or_one_string():
    assert decode_user_id(None) is None and decode_user_id([]) is None and decode_user_id([b"  "]) is None
    assert decode_user_id([b"alice"]) == "alice"
    with pytest.raises(RequestError, match="USER_ID must hold exactly one"):
        decode_user_id([b"a", b"b"])
    with pytest.raises(RequestError, match="USER_ID is not valid UTF-8"):
        decode_user_id([b"\xff\xfe"])


def test_context_kinds_truncation_and_bad_utf8():
    got = decode_context([b"query: cordless drill", b"DEWALT drill", b"purchase:RYOBI saw", b"wish: x", b""])
    assert got == [("query", "cordless drill"), ("click", "DEWALT drill"), ("purchase", "RYOBI saw"),
                   ("click", "wish: x")]
    long = decode_context([b"x" * 10_000] * (MAX_EVENTS + 30))
    assert len(long) == MAX_EVENTS and all(len(t) == MAX_TEXT_CHARS for _, t in long)   # cut, not refused
    with pytest.raises(RequestError, match=r"USER_CONTEXT\[1\] is not valid UTF-8"):
        decode_context([b"fine", b"\xc3\x28"])


class DownStore:
    def recent(self, user, limit=MAX_EVENTS):
        raise ProfileUnavailable("profile store redis://gone: connection refused")


def test_lookup_sources_and_outage_is_cold_start(tmp_path):
    store = open_profiles(tmp_path / "p.sqlite")
    store.add("pid-alice", [Behaviour(1.0, "purchase", "DEWALT drill")])
    ident = "pid-{}".format
    assert shopper_behaviour(None, [], store, ident).source == "anonymous"
    assert shopper_behaviour("bob", [], store, ident).source == "unknown"
    found = shopper_behaviour("alice", [("click", "RYOBI saw")], store, ident)
    assert found.source == "profile" and found.behaviour == [("click", "RYOBI saw"), ("purchase", "DEWALT drill")]
    down = shopper_behaviour("alice", [("click", "RYOBI saw")], DownStore(), ident)
    assert down.source == "outage" and down.behaviour == [("click", "RYOBI saw")]


def test_shopper_step_reads_the_store_by_pseudonym(tmp_path):
    from shoprank.data.pseudonym import load_or_create_key, pseudonym

    key_file = tmp_path / "key"
    store = open_profiles(tmp_path / "p.sqlite")
    store.add(pseudonym("alice", load_or_create_key(key_file)),
              [Behaviour(float(i), "purchase", f"DEWALT tool {i}") for i in range(4)])
    step = ShopperStep(str(tmp_path / "p.sqlite"), key_file)
    texts = ["DEWALT drill", "Milwaukee drill"]
    x, source = step.behaviour([b"alice"], None, texts)
    assert source == "profile" and x[0, 0] > x[1, 0] and x.shape[0] == 2
    x, source = step.behaviour(None, None, texts)
    assert source == "anonymous" and x is None  # nothing to send: the sorter keeps the logits
    x, source = step.behaviour(None, [b"query:drill"], texts)
    assert source == "context" and not x.any()  # too little behaviour: a cold start
    broken = ShopperStep("redis://127.0.0.1:9/0", key_file)   # nothing listens on port 9
    x, source = broken.behaviour([b"alice"], None, texts)
    assert source == "outage" and not x.any()


def test_cold_start_keeps_logits_exactly():
    logits = np.array([0.3, -1.2, 2.0], np.float32)
    assert personal_logits(object(), logits, np.zeros((3, 6), np.float32)) is logits
    assert personal_logits(None, logits, np.ones((3, 6), np.float32)) is logits
