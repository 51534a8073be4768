"""`make replicas` on a small scale: 2 real tritonserver replicas of one repository behind a real
HAProxy. One gRPC connection and one HTTP connection through it reach both replicas (per-request
balancing over HTTP/2 too); a rolling update replica by replica (drain, load the next ranker
version with the admin key, ready, re-enable) fails no request; a killed replica is taken out by
the readiness check and the service keeps answering."""
from __future__ import annotations

import threading
import time
import urllib.request

import pytest

from shoprank import config, container
from shoprank.deploy import haproxy
from shoprank.measure.loadtest.server_stats import parse_metrics
from shoprank.online.activate import activate, base_probe
from shoprank.serving.client import RankClient
from shoprank.serving.triton.versions import publish_version

pytestmark = pytest.mark.skipif(haproxy.binary() is None, reason="haproxy is missing (`make system` installs it)")

QUERY = "cordless drill"
TEXTS = ["DEWALT 20V MAX cordless drill kit", "white interior paint", "drill bit set", "garden hose 50 ft"]


@pytest.fixture(scope="module")
def cluster(tiny_model, onnx_int8, tmp_path_factory):
    from shoprank.deploy.replicas import run_replicas
    from shoprank.serving.triton.repository import build_repository

    work = tmp_path_factory.mktemp("replicas")
    repo = build_repository(tiny_model, onnx_int8, work / "model_repository", target="python")
    with run_replicas(repo, 2, work) as running:
        yield repo, running


def _rank_successes(server) -> float:
    with urllib.request.urlopen(server.endpoints.metrics, timeout=5) as reply:
        metrics = parse_metrics(reply.read().decode())
    return metrics.get(("nv_inference_request_success", config.ENSEMBLE_MODEL), 0.0)


def test_one_connection_per_protocol_reaches_both_replicas(cluster):
    _, running = cluster
    before = [_rank_successes(s) for s in running.servers]
    totals0 = running.lb.totals()
    for protocol, url in (("grpc", running.endpoints.grpc), ("http", running.endpoints.http)):
        with RankClient(url, protocol) as client:  # one client: one long-lived connection
            for _ in range(6):
                hits = client.rank(QUERY, TEXTS, top_k=2)
                assert len(hits) == 2
    served = [_rank_successes(s) - b for s, b in zip(running.servers, before)]
    assert all(n >= 4 for n in served), served  # 12 requests, round robin: 6 each
    totals = running.lb.totals()
    for backend in (haproxy.GRPC_BACKEND, haproxy.HTTP_BACKEND):
        assert all(totals[(backend, f"r{i}")] > totals0[(backend, f"r{i}")] for i in range(2)), (backend, totals)


def test_replicas_export_the_metric_the_hpa_scales_on(cluster):
    _, running = cluster
    with urllib.request.urlopen(running.servers[0].endpoints.metrics, timeout=5) as reply:
        text = reply.read().decode()
    for counter in (container.QUEUE_COUNTER, container.SUCCESS_COUNTER):
        assert any(line.startswith(counter + "{") and f'model="{container.HPA_MODEL}"' in line
                   for line in text.splitlines()), counter


def test_rolling_update_replica_by_replica_fails_no_request(cluster, tiny_model, onnx_fp32):
    repo, running = cluster
    version = publish_version(repo, onnx_fp32, tiny_model, meta={"by": "test_replicas"})
    failures, done, stop = [], [], threading.Event()

    def traffic(protocol, url):
        with RankClient(url, protocol) as client:
            while not stop.is_set():
                try:
                    client.rank(QUERY, TEXTS, top_k=2)
                    done.append(protocol)
                except Exception as exc:  # every failure is what the test counts
                    failures.append(f"{protocol}: {exc}")

    threads = [threading.Thread(target=traffic, args=a) for a in
               (("grpc", running.endpoints.grpc), ("http", running.endpoints.http))]
    for t in threads:
        t.start()
    try:
        probe = base_probe(tiny_model)
        for i, server in enumerate(running.servers):
            name = f"r{i}"
            running.lb.set_state(name, "drain")
            running.lb.wait_idle(name)
            sent = running.lb.totals()
            activate(server.endpoints.grpc, version, probe=probe, admin_key=server.admin_key)
            assert all(running.lb.totals()[k] == sent[k] for k in sent if k[1] == name)  # drained: none sent
            running.lb.set_state(name, "ready")
            running.lb.wait_status(name, "UP")
            time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert failures == []
    assert done.count("grpc") > 5 and done.count("http") > 5
    for server in running.servers:
        with RankClient(server.endpoints.grpc, "grpc") as client:
            assert client.ranker_version() == version


def test_killed_replica_is_taken_out_and_the_service_keeps_answering(cluster):
    from shoprank.deploy.replicas import kill_replica

    _, running = cluster
    killed_at = kill_replica(running.servers[1])
    running.lb.wait_status("r1", "DOWN", timeout=10)
    assert time.time() - killed_at < 5 * haproxy.CHECK_INTERVAL_MS / 1e3 + 1
    for protocol, url in (("grpc", running.endpoints.grpc), ("http", running.endpoints.http)):
        with RankClient(url, protocol) as client:
            for _ in range(6):
                assert len(client.rank(QUERY, TEXTS, top_k=2)) == 2
