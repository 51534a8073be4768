"""The feedback event store (append-only SQLite, a writer thread that never slows or breaks
ranking) and its HTTP collector."""
from __future__ import annotations

import json
import sqlite3
import threading
import time
import urllib.error
import urllib.request

import pytest

from shoprank.data.pseudonym import pseudonym
from shoprank.online import feedback as fb
from shoprank.online.collector import make_collector
from shoprank.online.feedback import EVENT_KINDS, FeedbackStore, connect, read_frames
from shoprank.serving.client import Shown


def store_pseudonym(store: FeedbackStore, user_id: str) -> str:
    return pseudonym(user_id, store._pseudonym_key)


def test_store_round_trip_schema_and_retention(tmp_path):
    db = tmp_path / "feedback.sqlite"
    with FeedbackStore(db) as store:
        shown = [Shown(3, "DEWALT drill", 0.9), Shown(0, "drill bits", 0.4), Shown(1, "paint", 0.1)]
        assert store.record_impression("r1", "cordless drill", shown, user_id="s-1", model_version=2,
                                       randomized=True, ts=1000.0)
        assert store.record_impression("r2", "paint", shown[:1], ts=time.time())
        assert store.record_event("r1", 0, "click", ts=1001.0)
        assert store.record_event("r1", 0, "purchase", ts=1002.0)
        assert store.record_event("r2", 0, "add_to_cart")
        with pytest.raises(ValueError, match="kind must be one of"):
            store.record_event("r1", 0, "hover")
        with pytest.raises(ValueError, match="position must be an int >= 0"):
            store.record_event("r1", -1, "click")
        assert store.flush()
        stats = store.stats()
        assert (stats["written"], stats["dropped"], stats["errors"]) == (5, 0, 0)
        imps, rows, events = store.frames()
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    columns = {t: [r[1] for r in conn.execute(f"PRAGMA table_info({t})")]
               for t in ("impressions", "shown", "events")}
    conn.close()
    assert columns["impressions"] == ["request_id", "ts", "user_id", "query", "model_version", "randomized",
                                      "n_shown"]
    assert columns["shown"] == ["request_id", "position", "candidate_index", "text", "score"]
    assert columns["events"] == ["id", "request_id", "ts", "position", "kind"]
    r1 = imps.set_index("request_id").loc["r1"]
    assert (r1["query"], r1["user_id"], r1["model_version"], r1["randomized"], r1["n_shown"]) == \
        ("cordless drill", store_pseudonym(store, "s-1"), "2", 1, 3)
    got = rows[rows["request_id"] == "r1"].sort_values("position")
    assert got[["position", "candidate_index", "text"]].values.tolist() == \
        [[0, 3, "DEWALT drill"], [1, 0, "drill bits"], [2, 1, "paint"]]
    assert sorted(events["kind"]) == sorted(["click", "purchase", "add_to_cart"])
    assert set(EVENT_KINDS) == {"click", "add_to_cart", "purchase"}
    # The schema refuses an unknown kind from any writer, not only from this API.
    with pytest.raises(sqlite3.IntegrityError), connect(db) as conn:
        conn.execute("INSERT INTO events (request_id, ts, position, kind) VALUES ('r1', 1, 0, 'hover')")
    # Retention: r1 and its events are older than a day, r2 is not.
    removed = FeedbackStore(db).purge(older_than_days=1)
    assert (removed["impressions"], removed["shown"], removed["events"]) == (1, 3, 2)
    imps, rows, events = read_frames(db)
    assert imps["request_id"].tolist() == ["r2"] and len(rows) == 1 and events["kind"].tolist() == ["add_to_cart"]


def test_a_full_queue_drops_and_counts_and_never_raises(tmp_path, monkeypatch):
    release = threading.Event()
    taken = threading.Event()

    def stuck_disk(conn, path, batch):  # the writer blocks as on a hung disk
        taken.set()
        release.wait(10)
        return conn, 0, "stuck"

    monkeypatch.setattr(fb, "_write_batch", stuck_disk)
    store = FeedbackStore(tmp_path / "f.sqlite", queue_size=5)
    assert store.record_impression("first", "q", [Shown(0, "t")])
    assert taken.wait(5)
    results = [store.record_impression(f"r{i}", "q", [Shown(0, "t")]) for i in range(50)]
    assert results.count(True) == 5 and results.count(False) == 45  # the queue holds 5
    assert store.stats()["dropped"] == 45
    release.set()
    assert store.flush()
    assert store.stats()["errors"] == 6  # counted, not raised
    store.close()
    assert store.record_event("r1", 0) is False  # closed: dropped, no exception


def test_a_failing_disk_is_counted_not_raised(tmp_path):
    path = tmp_path / "f.sqlite"
    store = FeedbackStore(path)
    path.unlink()
    path.mkdir()  # the database file is now a directory: every write fails
    assert store.record_impression("r1", "q", [Shown(0, "t")])
    assert store.flush()
    stats = store.stats()
    assert (stats["written"], stats["errors"]) == (0, 1) and "OperationalError" in store.last_error
    assert store._thread.is_alive()
    store.close()


def test_http_collector_round_trip(tmp_path):
    store = FeedbackStore(tmp_path / "c.sqlite")
    httpd = make_collector(store, "127.0.0.1", 0)  # a free port
    port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()

    def post(path, body):
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", json.dumps(body).encode(),
                                         {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=5) as reply:
                return reply.status, json.loads(reply.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    try:
        assert post("/v1/impressions", {"request_id": "a", "query": "drill", "user_id": "s9",
                                        "shown": [{"candidate_index": 1, "text": "drill", "score": 0.7}]})[0] == 202
        assert post("/v1/events", {"request_id": "a", "position": 0, "kind": "purchase"})[0] == 202
        code, body = post("/v1/events", {"request_id": "a", "position": 0, "kind": "hover"})
        assert code == 400 and "kind must be one of" in body["error"]
        assert post("/v1/impressions", {"query": "no id"})[0] == 400
        store.flush()
        imps, rows, events = store.frames()
        assert imps["user_id"].tolist() == [store_pseudonym(store, "s9")] and rows["text"].tolist() == ["drill"]
        assert events["kind"].tolist() == ["purchase"]
    finally:
        httpd.shutdown()
        httpd.server_close()
        store.close()


def test_user_ids_are_stored_as_keyed_pseudonyms_and_files_are_owner_only(tmp_path):
    import os
    import stat

    email = "jane.doe@example.com"
    key_a, key_b = tmp_path / "keys" / "a.key", tmp_path / "keys" / "b.key"
    shown = [Shown(0, "drill", 0.5)]
    with FeedbackStore(tmp_path / "a.sqlite", pseudonym_key_file=key_a) as a, \
            FeedbackStore(tmp_path / "b.sqlite", pseudonym_key_file=key_b) as b:
        for store in (a, b):
            store.record_impression("r1", "drill", shown, user_id=email)
            store.record_impression("r2", "drill", shown, user_id=email)
            store.record_impression("r3", "drill", shown, user_id=None)
            store.flush()
        ids_a = a.frames()[0].set_index("request_id")["user_id"]
        ids_b = b.frames()[0].set_index("request_id")["user_id"]
    assert ids_a["r1"] == ids_a["r2"] != ids_b["r1"]  # stable per key, different across keys
    assert ids_a["r1"].startswith("u_") and "jane" not in ids_a["r1"] and ids_a["r3"] is None
    raw = (tmp_path / "a.sqlite").read_bytes() + (tmp_path / "a.sqlite-wal").read_bytes() \
        if (tmp_path / "a.sqlite-wal").exists() else (tmp_path / "a.sqlite").read_bytes()
    assert email.encode() not in raw
    for path in (key_a, tmp_path / "a.sqlite"):
        assert stat.S_IMODE(os.stat(path).st_mode) & 0o077 == 0, f"{path} is readable by others"


def test_experiment_log_keeps_every_record_or_says_how_many_it_lost(tmp_path):
    shown = [Shown(0, "DEWALT drill", 0.9)]
    with fb.experiment_log(tmp_path / "ok.sqlite", tmp_path / "key") as store:
        for i in range(2000):
            store.record_impression(f"r{i}", "drill", shown, ts=1000.0)
    assert len(read_frames(tmp_path / "ok.sqlite")[0]) == 2000
    with pytest.raises(RuntimeError, match=r"lost 1 records"), \
            fb.experiment_log(tmp_path / "dup.sqlite", tmp_path / "key") as store:
        store.record_impression("same", "drill", shown, ts=1000.0)
        store.record_impression("same", "drill", shown, ts=1000.0)  # a duplicate id fails its write
