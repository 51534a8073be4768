"""Online learning: the feedback store, bias-corrected training pairs, publishing a new ranker
version, rollback, and a zero-downtime swap under load on a real tritonserver."""
from __future__ import annotations

import concurrent.futures as futures
import json
import shutil
import sqlite3
import threading
import time
import urllib.request

import numpy as np
import pandas as pd
import pytest

from shoprank import config, data, online, repository
from shoprank.feedback import EVENT_KINDS, FeedbackStore, Shown, connect, make_collector, read_frames

# Ports of this module's own server and collector (the online helper's range; the shared
# session server uses free ports).
HTTP_PORT, GRPC_PORT, METRICS_PORT, COLLECTOR_PORT = 8710, 8711, 8712, 8713


# --- event store ------------------------------------------------------------------------------------
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
    columns = {t: [r[1] for r in conn.execute(f"PRAGMA table_info({t})")] for t in ("impressions", "shown", "events")}
    conn.close()
    assert columns["impressions"] == ["request_id", "ts", "user_id", "query", "model_version", "randomized", "n_shown"]
    assert columns["shown"] == ["request_id", "position", "candidate_index", "text", "score"]
    assert columns["events"] == ["id", "request_id", "ts", "position", "kind"]
    r1 = imps.set_index("request_id").loc["r1"]
    assert (r1["query"], r1["user_id"], r1["model_version"], r1["randomized"], r1["n_shown"]) == \
        ("cordless drill", "s-1", "2", 1, 3)
    got = rows[rows["request_id"] == "r1"].sort_values("position")
    assert got[["position", "candidate_index", "text"]].values.tolist() == \
        [[0, 3, "DEWALT drill"], [1, 0, "drill bits"], [2, 1, "paint"]]
    assert sorted(events["kind"]) == sorted(["click", "purchase", "add_to_cart"])
    assert set(EVENT_KINDS) == {"click", "add_to_cart", "purchase"}
    # The schema refuses an unknown kind from any writer, not only from this API.
    with pytest.raises(sqlite3.IntegrityError):
        with connect(db) as conn:
            conn.execute("INSERT INTO events (request_id, ts, position, kind) VALUES ('r1', 1, 0, 'hover')")
    # Retention: r1 and its events are older than a day, r2 is not.
    removed = FeedbackStore(db).purge(older_than_days=1)
    assert (removed["impressions"], removed["shown"], removed["events"]) == (1, 3, 2)
    imps, rows, events = read_frames(db)
    assert imps["request_id"].tolist() == ["r2"] and len(rows) == 1 and events["kind"].tolist() == ["add_to_cart"]


def test_a_full_queue_drops_and_counts_and_never_raises(tmp_path, monkeypatch):
    import shoprank.feedback as fb

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
    httpd = make_collector(store, "127.0.0.1", COLLECTOR_PORT)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()

    def post(path, body):
        request = urllib.request.Request(f"http://127.0.0.1:{COLLECTOR_PORT}{path}", json.dumps(body).encode(),
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
        assert imps["user_id"].tolist() == ["s9"] and rows["text"].tolist() == ["drill"]
        assert events["kind"].tolist() == ["purchase"]
    finally:
        httpd.shutdown()
        httpd.server_close()
        store.close()


# --- position bias --------------------------------------------------------------------------------
def _frames(impressions, clicks):
    """impressions: [(request_id, query, [texts in shown order], randomized)], clicks: [(request_id, position)]."""
    imps = pd.DataFrame([(r, q, int(rand)) for r, q, _, rand in impressions], columns=["request_id", "query", "randomized"])
    shown = pd.DataFrame([(r, p, t) for r, _, texts, _ in impressions for p, t in enumerate(texts)],
                         columns=["request_id", "position", "text"])
    events = pd.DataFrame([(r, p, "click") for r, p in clicks], columns=["request_id", "position", "kind"])
    return imps, shown, events


def test_ips_labels_on_a_hand_computed_example():
    imps, shown, events = _frames(
        [("r1", "drill", ["A", "B", "C"], False), ("r2", "drill", ["B", "C", "A"], False),
         ("r3", "drill", ["C", "A", "B"], False)],
        [("r1", 0), ("r3", 2), ("r2", 1), ("r3", 0)])  # A@0, B@2, C@1, C@0
    theta = np.array([1.0, 0.5, 0.25])
    ips = online.log_pairs(imps, shown, events, theta).set_index("text")
    naive = online.log_pairs(imps, shown, events, None).set_index("text")
    # Every product is shown once at each position: E = 1 + 0.5 + 0.25 = 1.75 expected examinations.
    # A: clicked at 0 only      -> 1 click  -> label 1 / 1.75, weight 1.75
    # B: clicked at 2 only      -> 1 click  -> label 1 / 1.75, weight 1.75 (the same: a click low
    #    on the page is worth as much as one at the top once examination is accounted for)
    # C: clicked at 1 and 0     -> 2 clicks > E -> label 1, weight 2
    assert ips.loc["A", "label"] == pytest.approx(1 / 1.75) and ips.loc["A", "weight"] == pytest.approx(1.75)
    assert ips.loc["B", "label"] == pytest.approx(1 / 1.75) and ips.loc["B", "weight"] == pytest.approx(1.75)
    assert ips.loc["C", "label"] == pytest.approx(1.0) and ips.loc["C", "weight"] == pytest.approx(2.0)
    assert ips["clicks"].to_dict() == {"A": 1, "B": 1, "C": 2}
    # Naive: click rates with weight = impressions.
    assert naive["label"].to_dict() == pytest.approx({"A": 1 / 3, "B": 1 / 3, "C": 2 / 3})
    assert naive["weight"].tolist() == [3.0, 3.0, 3.0]
    # One unclicked impression low on the page is weak negative evidence (weight theta), and
    # positions beyond the curve use its last value; the floor bounds every weight.
    imps, shown, events = _frames([("r1", "q", ["A", "B", "C", "D"], False)], [("r1", 1)])
    pairs = online.log_pairs(imps, shown, events, np.array([1.0, 0.8, 0.01]), floor=0.05).set_index("text")
    assert pairs["weight"].to_dict() == pytest.approx({"A": 1.0, "B": 1.0, "C": 0.05, "D": 0.05})
    assert pairs["label"].to_dict() == pytest.approx({"A": 0.0, "B": 1.0, "C": 0.0, "D": 0.0})


def test_propensities_from_randomized_traffic():
    rng = np.random.default_rng(0)
    theta_true = (np.arange(6) + 1.0) ** -0.8
    impressions, clicks = [], []
    for i in range(3000):
        texts = [f"p{j}" for j in rng.permutation(10)[:6]]
        randomized = i % 3 == 0
        impressions.append((f"r{i}", "q", texts, randomized))
        for pos in range(6):
            # The non-randomized traffic clicks only the top: it must not leak into the estimate.
            p = 0.4 * theta_true[pos] if randomized else (0.9 if pos == 0 else 0.0)
            if rng.random() < p:
                clicks.append((f"r{i}", pos))
    imps, shown, events = _frames(impressions, clicks)
    theta = online.estimate_propensities(imps, shown, events)
    np.testing.assert_allclose(theta, theta_true, atol=0.04)
    assert theta[0] == 1.0 and np.all(np.diff(theta) < 0)
    assert online.fit_power_law([0, 1, 2, 3], [1000] * 4, [400, 200, 133, 100]) == pytest.approx(1.0, abs=0.02)
    with pytest.raises(ValueError, match="not enough exploration traffic"):
        online.estimate_propensities(imps[imps["randomized"] == 0], shown, events)


def test_training_set_drops_validation_queries_and_replays(tiny_model):
    valid_q = next(q for q in (f"query {i}" for i in range(1000)) if data._in_valid(q, config.SEED, config.VALID_FRACTION))
    train_q = next(q for q in (f"query {i}" for i in range(1000)) if not data._in_valid(q, config.SEED, config.VALID_FRACTION))
    pairs = pd.DataFrame({"query": [valid_q, train_q, train_q], "text": ["a", "b", "c"], "label": [1.0, 0.5, 0.0],
                          "weight": [4.0, 2.0, 6.0], "impressions": [4, 2, 6], "clicks": [4, 1, 0]})
    out = online.training_set(pairs, tiny_model, replay_ratio=2.0)
    logs = out[out["source"] == "log"]
    assert logs["query"].tolist() == [train_q, train_q]
    assert logs["weight"].tolist() == pytest.approx([0.5, 1.5])  # scaled to mean 1
    replay = out[out["source"] == "replay"]
    assert len(replay) == 4 and (replay["weight"] == 1.0).all()
    _, valid = data.split_by_query(data.load_pairs(data.resolve_data("default")))
    assert not set(replay["query"]) & set(valid["query"])


# --- versions, swap under load, rollback -----------------------------------------------------------
@pytest.fixture(scope="module")
def own_server(tiny_model, onnx_int8, tmp_path_factory):
    """This module's own tritonserver (explicit model control) over its own repository."""
    from shoprank import server as srv
    from shoprank.repository import build_repository

    work = tmp_path_factory.mktemp("online")
    repo = build_repository(tiny_model, onnx_int8, work / "model_repository", target="python")
    endpoints = srv.Endpoints("127.0.0.1", HTTP_PORT, GRPC_PORT, METRICS_PORT)
    proc = srv.start(repo, endpoints, log_path=work / "tritonserver.log", run_dir=work / "run")
    yield repo, endpoints
    srv.stop_process(proc)


def _reference(model_dir, engine_path):
    from shoprank.engine import OrtEngine, sigmoid
    from shoprank.modeling import model_max_length
    from shoprank.tokenize import PairEncoder

    encoder = PairEncoder.from_dir(model_dir, max_length=model_max_length(model_dir))
    engine = OrtEngine(engine_path)
    return lambda query, texts: sigmoid(engine.logits(encoder.encode(query, texts)))


def test_publish_swaps_under_load_with_zero_failures_then_rollback(own_server, tiny_model, onnx_fp32, onnx_int8,
                                                                   valid_pairs, tmp_path):
    """Clients hammer the server while version 2 (the FP32 engine; version 1 serves INT8) is
    published and loaded: no request fails, and every request sent after the load returned is
    answered by version 2, as its scores (FP32, bit-stable) prove."""
    from shoprank.client import RankClient, RankedList

    repo, endpoints = own_server
    groups = [(q, valid_pairs["text"].to_numpy()[idx].tolist()) for q, idx in data.query_groups(valid_pairs)
              if len(idx) >= 4]
    fp32, int8 = _reference(tiny_model, onnx_fp32), _reference(tiny_model, onnx_int8)
    # The request whose FP32 and INT8 scores differ most identifies the version that answered.
    query, texts = max(groups[:20], key=lambda g: np.abs(fp32(*g) - int8(*g)).max())
    expected_v2 = fp32(query, texts)
    assert np.abs(expected_v2 - int8(query, texts)).max() > 1e-4, "engines too similar to tell apart"

    def answered_by_v2(indices, scores):
        served = np.zeros(len(texts), np.float32)
        served[indices] = scores
        return bool(np.abs(served - expected_v2).max() <= 1e-5)

    with RankClient(endpoints.grpc, "grpc") as client:
        assert client.ranker_version() == 1
        assert not answered_by_v2(*client.infer_raw(query, texts, 0))

    stop = threading.Event()
    results = []  # (started, finished, ok, v2)

    def worker(protocol):
        url = endpoints.grpc if protocol == "grpc" else endpoints.http
        with RankClient(url, protocol) as c:
            while not stop.is_set():
                started = time.time()
                try:
                    indices, scores = c.infer_raw(query, texts, 0)
                    results.append((started, time.time(), True, answered_by_v2(indices, scores)))
                except Exception as exc:  # any failure at all is what this test is about
                    results.append((started, time.time(), False, repr(exc)))

    with futures.ThreadPoolExecutor(6) as pool:
        running = [pool.submit(worker, p) for p in ["grpc", "http"] * 3]
        time.sleep(1.0)
        published_at = time.time()
        version = repository.publish_version(repo, onnx_fp32, tiny_model, {"note": "swap test"})
        assert version == 2 and (repo / config.RANKER_MODEL / "2" / "model.py").exists()
        activation = online.activate(endpoints.grpc, version, [(query, texts)])
        loaded_at = time.time()
        time.sleep(1.5)
        stop.set()
        for f in running:
            f.result()
    failures = [r for r in results if not r[2]]
    assert not failures, f"{len(failures)} of {len(results)} requests failed during the swap: {failures[:3]}"
    before = [r for r in results if r[1] < published_at]
    after = [r for r in results if r[0] > loaded_at]
    assert len(before) > 5 and len(after) > 5
    assert not any(r[3] for r in before), "version 2 answered before it was published"
    assert all(r[3] for r in after), "a request sent after the swap was answered by version 1"
    assert activation["ranker_ready"] == [2] and activation["probe_requests_on_new_version"] >= 1

    # The feedback hook records the served version with the request id the server echoed.
    with FeedbackStore(tmp_path / "f.sqlite") as store, RankClient(endpoints.http, "http", feedback=store) as client:
        hits = client.rank(query, texts, 3, user_id="session-1", request_id="req-42")
        assert isinstance(hits, RankedList) and hits.request_id == "req-42" and len(hits) == 3
        assert client.record_event(hits.request_id, 1, "click")
        store.flush()
        imps, rows, events = store.frames()
    assert imps["model_version"].tolist() == ["2"] and imps["request_id"].tolist() == ["req-42"]
    assert rows.sort_values("position")["candidate_index"].tolist() == [h.index for h in hits]
    assert events[["position", "kind"]].values.tolist() == [[1, "click"]]

    # Rollback: version 2 is retired, version 1 (INT8) serves again, version numbers are not reused.
    report = online.rollback(repo, endpoints.grpc, tiny_model)
    assert (report["retired"], report["serving_version"]) == (2, 1)
    assert repository.versions(repo) == [1] and repository.rolled_back_versions(repo) == [2]
    with RankClient(endpoints.grpc, "grpc") as client:
        assert client.ranker_version() == 1
        assert not answered_by_v2(*client.infer_raw(query, texts, 0))
    assert repository.publish_version(repo, onnx_int8, tiny_model) == 3
    with pytest.raises(ValueError, match="tokenizer truncates"):
        other = tmp_path / "other-length"
        shutil.copytree(tiny_model, other)
        from shoprank.modeling import write_model_card
        write_model_card(other, max_length=16)
        repository.publish_version(repo, onnx_int8, other)


def test_update_fine_tunes_gates_and_publishes(own_server, tiny_model, valid_pairs, tmp_path):
    """make update end to end on logged traffic (tiny model; the gate's margin is wide because the
    tiny model's NDCG is noise -- the gate itself is checked by refusing an impossible margin)."""
    from shoprank.client import RankClient

    repo, endpoints = own_server
    db = tmp_path / "f.sqlite"
    train, _ = data.split_by_query(data.load_pairs(data.resolve_data("default")))
    rng = np.random.default_rng(1)
    groups = [(q, train["text"].to_numpy()[idx].tolist()) for q, idx in list(data.query_groups(train))[:15]]
    with FeedbackStore(db) as store, RankClient(endpoints.grpc, "grpc", feedback=store, explore_share=0.5,
                                                seed=3) as client:
        for i in range(120):
            query, texts = groups[i % len(groups)]
            hits = client.rank(query, texts, 8)
            for position in range(len(hits)):
                if rng.random() < 0.5 / (position + 1):
                    client.record_event(hits.request_id, position, "click")
    serving = repository.versions(repo)[-1]
    cfg = online.UpdateConfig(repo=str(repo), feedback_db=str(db), url=endpoints.grpc, steps=3, batch_size=16,
                              margin=-1.0, base_model=str(tiny_model), work_dir=str(tmp_path / "u1"), threads=2,
                              int8_max_drop=1.0)
    with pytest.raises(online.GateFailed, match="stays"):
        online.update(cfg)  # a negative margin demands an improvement of 1.0 NDCG: impossible
    assert repository.versions(repo)[-1] == serving
    cfg.margin, cfg.work_dir = 0.5, str(tmp_path / "u2")
    report = online.update(cfg)
    assert report["published_version"] == serving + 1 and report["gate"]["passed"]
    assert report["log_pairs"] > 0 and report["replay_pairs"] == round(online.REPLAY_RATIO * report["log_pairs"])
    assert len(report["propensities"]) == 8 and report["propensities"][0] == 1.0
    assert report["activation"]["ranker_ready"] == [serving + 1]
    meta = repository.read_meta(repo, serving + 1)
    assert meta["logs_until"] == report["logs_until"] and meta["previous"] == serving
    assert (repo / config.RANKER_MODEL / str(serving + 1) / repository.SOURCE_MODEL_DIR / "config.json").exists()
    with pytest.raises(ValueError, match="pairs in the logs since version"):
        cfg.work_dir = str(tmp_path / "u3")
        online.update(cfg)  # nothing new since the version just published


def test_simulated_world_keeps_evaluation_queries_out_of_traffic():
    from shoprank import synthetic
    from shoprank.simulator import SimConfig, build_world

    cfg = SimConfig(traffic_queries=30, eval_queries=10, candidates=12)
    traffic, evaluation = build_world(cfg)
    assert (len(traffic), len(evaluation)) == (30, 10)
    in_valid = lambda q: data._in_valid(q.query, config.SEED, config.VALID_FRACTION)  # noqa: E731
    assert not any(map(in_valid, traffic)) and all(map(in_valid, evaluation))
    assert all(len(q.texts) == 12 and ((0 <= q.relevance) & (q.relevance <= 1)).all() for q in traffic)
    assert all(q.relevance.max() >= 0.99 for q in traffic + evaluation)  # every query has a true match
    again, _ = build_world(cfg)
    assert [q.texts for q in again] == [q.texts for q in traffic]  # deterministic in the seed
    # The products are the default data's catalogue.
    catalogue = {p.text for p in synthetic._build_catalogue(__import__("random").Random(0),
                                                             2000 // len(synthetic.CATALOGUE) + 1)}
    assert {t for q in traffic for t in q.texts} <= catalogue


def test_activate_without_a_server_says_so():
    report = online.activate(f"127.0.0.1:{COLLECTOR_PORT + 1}", 7)
    assert report["live"] is False and "serves from its next start" in report["note"]


def test_simulate_one_command_runs_rounds_for_both_variants_and_writes_plot(tiny_model, onnx_fp32, tmp_path):
    """The simulator end to end, small: a real server per variant, shoppers, an update per round."""
    from shoprank.server import free_ports
    from shoprank.simulator import SimConfig, simulate

    cfg = SimConfig(model_dir=str(tiny_model), engine=str(onnx_fp32), work_dir=str(tmp_path / "sim"),
                    report_dir=str(tmp_path / "reports"), rounds=1, sessions=40, traffic_queries=8,
                    eval_queries=8, candidates=10, steps=2, batch_size=8, ports=tuple(free_ports(3)))
    summary = simulate(cfg, seeds=(7, 8))
    assert summary["seeds"] == [7, 8]
    for name in ("mean", "seed7", "seed8"):
        curves = summary["true_ndcg@10"][name]
        assert set(curves) == {"ips", "naive"} and all(len(v) == 2 for v in curves.values())
        assert all(0 < x <= 1 for v in curves.values() for x in v)
    for rows in summary["rounds"]["seed7"].values():
        update = rows[0]["update"]  # published or refused by a gate: either is recorded
        assert "published_version" in update or "refused" in update
    assert (tmp_path / "reports" / "online_learning.png").stat().st_size > 10_000
    report = json.loads((tmp_path / "reports" / "online_learning.json").read_text())
    assert report["seeds"] == [7, 8] and set(report["feedback_hook_overhead"]) == {"seed7", "seed8"}
