"""A dead Python stub (kill -9, as the OOM killer would) under load: readiness turns false within
seconds, server-level and model-level, and the service recovers by itself (the supervisor,
shoprank.serving.supervisor); the failed requests and the time to recover are printed."""
from __future__ import annotations

import os
import signal
import threading
import time
import urllib.error
import urllib.request

import pytest

from shoprank import config
from shoprank.serving.client import RankClient
from shoprank.serving.supervisor import SHM_DIR, stubs

READY_WITHIN_S = 60  # recovery is a model load; generous for a busy 2-core machine


@pytest.fixture(scope="module")
def supervised(tiny_model, onnx_int8, tmp_path_factory):
    from shoprank.serving.server import run_triton
    from shoprank.serving.triton.repository import build_repository

    work = tmp_path_factory.mktemp("supervised")
    repo = build_repository(tiny_model, onnx_int8, work / "model_repository", target="python")
    with run_triton(repo, work_dir=work, supervise=True) as running:
        yield running


def _status(endpoints, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://{endpoints.http}{path}", timeout=2) as reply:
            return reply.status
    except urllib.error.HTTPError as err:
        return err.code
    except OSError:
        return 0


@pytest.mark.parametrize("model", [config.TOKENIZER_MODEL, config.RANKER_MODEL, config.SORTER_MODEL])
def test_a_killed_stub_turns_readiness_false_and_recovers(supervised, model, valid_pairs):
    endpoints = supervised.endpoints
    texts = valid_pairs["text"].tolist()[:20]
    results, stop = [], threading.Event()

    def load():
        with RankClient(endpoints.grpc, "grpc") as client:
            while not stop.is_set():
                try:
                    client.infer_raw("cordless drill", texts, 5)
                    results.append((time.time(), True))
                except Exception:  # counted: failures during the outage are what is measured
                    results.append((time.time(), False))
                time.sleep(0.02)

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    time.sleep(1.0)
    victim = next(s for s in stubs(supervised.pid) if s.model == model)
    killed_at = time.time()
    os.kill(victim.pid, signal.SIGKILL)
    saw_not_ready = None
    while time.time() - killed_at < READY_WITHIN_S:
        server_ready = _status(endpoints, "/v2/health/ready")
        model_ready = _status(endpoints, f"/v2/models/{model}/ready")
        if saw_not_ready is None and server_ready != 200 and model_ready != 200:
            saw_not_ready = time.time() - killed_at
        if saw_not_ready is not None and server_ready == 200 and model_ready == 200:
            break
        time.sleep(0.05)
    recovered_at = time.time()
    time.sleep(1.0)
    stop.set()
    worker.join(30)
    assert saw_not_ready is not None, f"readiness never turned false after {model}'s stub was killed"
    assert saw_not_ready < 5, f"readiness turned false only {saw_not_ready:.1f} s after the kill"
    assert recovered_at - killed_at < READY_WITHIN_S, f"{model} not ready again after {READY_WITHIN_S} s"
    failed = [t for t, ok in results if not ok]
    after = [ok for t, ok in results if t > recovered_at + 0.2]
    print(f"\n{model}: not ready after {saw_not_ready:.2f} s, ready again after {recovered_at - killed_at:.2f} s, "
          f"{len(failed)} of {len(results)} requests failed")
    assert after and all(after), "requests still fail after recovery"
    assert not (SHM_DIR / victim.shm_region).exists(), "the dead stub's shared memory was left behind"
    event = supervised.supervisor.events[-1]
    assert event["model"] == model and victim.pid in event["dead_stubs"]
