"""Online learning on a real tritonserver: publishing a new ranker version and a zero-downtime
swap under load, rollback, `make update` end to end, and the simulator end to end."""
from __future__ import annotations

import concurrent.futures as futures
import json
import shutil
import threading
import time

import numpy as np
import pytest

from shoprank import config
from shoprank.data.load import load_pairs, resolve_data
from shoprank.data.split import query_groups, split_by_query
from shoprank.errors import GateRefused
from shoprank.model_card import write_model_card
from shoprank.online.activate import activate
from shoprank.online.feedback import FeedbackStore
from shoprank.online.simulator import SimConfig, simulate
from shoprank.online.update import REPLAY_RATIO, UpdateConfig, rollback, update
from shoprank.serving.client import RankClient, RankedList
from shoprank.serving.triton.versions import (
    SOURCE_MODEL_DIR,
    publish_version,
    read_meta,
    rolled_back_versions,
    versions,
)


def test_publish_swaps_under_load_with_zero_failures_then_rollback(own_server, tiny_model, onnx_fp32, onnx_int8,
                                                                   engine_probe, tmp_path):
    """Clients hammer the server while version 2 (the FP32 engine; version 1 serves INT8) is
    published and loaded: no request fails, and every request sent after the load returned is
    answered by version 2, as its scores (FP32, bit-stable) prove."""
    repo, running_server = own_server
    endpoints, key = running_server.endpoints, running_server.admin_key
    query, texts = engine_probe.query, engine_probe.texts

    def answered_by_v2(indices, scores):
        return engine_probe.engine_of(indices, scores) == "fp32"

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
        try:
            time.sleep(1.0)
            published_at = time.time()
            version = publish_version(repo, onnx_fp32, tiny_model, {"note": "swap test"})
            assert version == 2 and (repo / config.RANKER_MODEL / "2" / "model.py").exists()
            activation = activate(endpoints.grpc, version, [(query, texts)], admin_key=key)
            loaded_at = time.time()
            time.sleep(1.5)
        finally:  # the workers stop however the swap ends
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
    with FeedbackStore(tmp_path / "f.sqlite") as store, \
            RankClient(endpoints.http, "http", feedback=store) as client:
        hits = client.rank(query, texts, 3, user_id="session-1", request_id="req-42")
        assert isinstance(hits, RankedList) and hits.request_id == "req-42" and len(hits) == 3
        assert client.record_event(hits.request_id, 1, "click")
        store.flush()
        imps, rows, events = store.frames()
    assert imps["model_version"].tolist() == ["2"] and imps["request_id"].tolist() == ["req-42"]
    assert rows.sort_values("position")["candidate_index"].tolist() == [h.index for h in hits]
    assert events[["position", "kind"]].values.tolist() == [[1, "click"]]

    # Rollback: version 2 is retired, version 1 (INT8) serves again, version numbers are not reused.
    report = rollback(repo, endpoints.grpc, tiny_model, admin_key=key)
    assert (report["retired"], report["serving_version"]) == (2, 1)
    assert versions(repo) == [1] and rolled_back_versions(repo) == [2]
    with RankClient(endpoints.grpc, "grpc") as client:
        assert client.ranker_version() == 1
        assert not answered_by_v2(*client.infer_raw(query, texts, 0))
    assert publish_version(repo, onnx_int8, tiny_model) == 3
    other = tmp_path / "other-length"
    shutil.copytree(tiny_model, other)
    write_model_card(other, max_length=16)
    with pytest.raises(ValueError, match="tokenizer truncates"):
        publish_version(repo, onnx_int8, other)


def test_update_fine_tunes_gates_and_publishes(own_server, tiny_model, valid_pairs, tmp_path):
    """make update end to end on logged traffic (tiny model; the gate's margin is wide because the
    tiny model's NDCG is noise -- the gate itself is checked by refusing an impossible margin)."""
    repo, running_server = own_server
    endpoints, key = running_server.endpoints, running_server.admin_key
    db = tmp_path / "f.sqlite"
    train, _ = split_by_query(load_pairs(resolve_data("default")))
    rng = np.random.default_rng(1)
    groups = [(q, train["text"].to_numpy()[idx].tolist()) for q, idx in list(query_groups(train))[:15]]
    with FeedbackStore(db) as store, RankClient(endpoints.grpc, "grpc", feedback=store, explore_share=0.5,
                                                seed=3) as client:
        for i in range(120):
            query, texts = groups[i % len(groups)]
            hits = client.rank(query, texts, 8)
            for position in range(len(hits)):
                if rng.random() < 0.5 / (position + 1):
                    client.record_event(hits.request_id, position, "click")
    serving = versions(repo)[-1]
    cfg = UpdateConfig(repo=str(repo), feedback_db=str(db), url=endpoints.grpc, admin_key=key, steps=3, batch_size=16,
                              margin=-1.0, base_model=str(tiny_model), work_dir=str(tmp_path / "u1"), threads=2,
                              int8_max_drop=1.0)
    with pytest.raises(GateRefused, match="stays") as refused:
        update(cfg)  # a negative margin demands an improvement of 1.0 NDCG: impossible
    assert versions(repo)[-1] == serving and refused.value.verdict["passed"] is False
    cfg.margin, cfg.work_dir = 0.5, str(tmp_path / "u2")
    report = update(cfg)
    assert report["published_version"] == serving + 1 and report["gate"]["passed"]
    assert report["log_pairs"] > 0 and report["replay_pairs"] == round(REPLAY_RATIO * report["log_pairs"])
    assert len(report["propensities"]) == 8 and report["propensities"][0] == 1.0
    assert report["activation"]["ranker_ready"] == [serving + 1]
    meta = read_meta(repo, serving + 1)
    assert meta["logs_until"] == report["logs_until"] and meta["previous"] == serving
    assert (repo / config.RANKER_MODEL / str(serving + 1) / SOURCE_MODEL_DIR / "config.json").exists()
    cfg.work_dir = str(tmp_path / "u3")
    with pytest.raises(ValueError, match="pairs in the logs since version"):
        update(cfg)  # nothing new since the version just published


def test_simulate_one_command_runs_rounds_for_both_variants_and_writes_plot(tiny_model, onnx_fp32, tmp_path):
    """The simulator end to end, small: a real server per variant, shoppers, an update per round."""
    cfg = SimConfig(model_dir=str(tiny_model), engine=str(onnx_fp32), work_dir=str(tmp_path / "sim"),
                    report_dir=str(tmp_path / "reports"), rounds=1, sessions=40, traffic_queries=8,
                    eval_queries=8, candidates=10, steps=2, batch_size=8)
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
