"""The capacity plan's arithmetic from a measurement's steps, and the HAProxy config as text (and
as HAProxy itself reads it, where it is installed)."""
from __future__ import annotations

import math
import subprocess

import pytest

from shoprank import container
from shoprank.deploy import capacity, haproxy


def _report(p99_at_1: float) -> dict:
    steps = [{"users": 1, "requests": 100, "failures": 0, "rps": 10.0, "p50_ms": 90, "p99_ms": p99_at_1,
              "server_core_s": 12.0},
             {"users": 2, "requests": 300, "failures": 0, "rps": 15.0, "p50_ms": 120, "p99_ms": 400,
              "server_core_s": 36.0}]
    return {"cores": 2, "load_average_before": 1.0, "seconds_per_step": 10,
            "variants": {"int8": {"engine": "x", "steps": steps}}}


def test_cost_per_request_and_pods_follow_from_the_steps():
    s = capacity.summarize(_report(80)["variants"]["int8"], p99_ms=100)
    assert s["core_s_per_1000"] == pytest.approx(1000 * 48 / 400)           # server CPU over all requests
    assert s["pairs_per_core_s"] == pytest.approx(50 * 400 / 48)
    assert s["best_rps_within_p99"] == 10.0                                   # the 2-user step missed p99
    p = capacity.plan(s, target_rps=2000, p99_ms=100, core_hour_usd=0.04)
    cores = 2000 * 0.12 / capacity.TARGET_UTILIZATION
    assert p["cores"] == pytest.approx(cores) and p["pods"] == math.ceil(cores / capacity.POD_CORES)
    assert p["usd_per_million"] == pytest.approx(0.12 * 1e6 / 3600 * 0.04 / capacity.TARGET_UTILIZATION)
    assert p["latency_ok"]


def test_plan_says_when_no_pod_count_meets_the_latency_bound():
    text = capacity.render(_report(250), 2000, 100, 0.04, replicas=None)
    assert "NO here (p99 250 ms alone): pods cannot fix it" in text
    assert "TensorRT FP16 / INT8 (GPU) | not measured" in text


def test_haproxy_config_balances_per_request_and_checks_readiness(tmp_path):
    backends = [haproxy.Backend("r0", 9100, 9101), haproxy.Backend("r1", 9200, 9201)]
    text = haproxy.render_config(backends, 9300, 9301, tmp_path / "s.sock")
    assert f"option httpchk GET {container.READY_PATH}" in text
    assert "bind 127.0.0.1:9301 proto h2" in text and text.count("balance roundrobin") == 2
    # gRPC traffic goes over h2c to the gRPC port; its check asks the same replica's HTTP readiness.
    assert "server r1 127.0.0.1:9201 proto h2 check" in text and "port 9200 check-proto h1" in text
    assert "server r0 127.0.0.1:9100 check" in text
    if haproxy.binary() is None:
        pytest.skip("haproxy is missing (`make system` installs it): config checked as text only")
    (tmp_path / "haproxy.cfg").write_text(text)
    done = subprocess.run([haproxy.binary(), "-c", "-f", str(tmp_path / "haproxy.cfg")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_the_replicas_section_of_the_doc_is_replaced_between_its_markers(tmp_path):
    from shoprank.deploy.replicas import DOC, DOC_BEGIN, DOC_END, update_doc

    assert DOC_BEGIN in DOC.read_text() and DOC_END in DOC.read_text()  # docs/kubernetes.md has the slot
    doc = tmp_path / "k.md"
    doc.write_text(f"intro\n{DOC_BEGIN} (generated) -->\nold numbers\n{DOC_END}\noutro\n")
    update_doc(doc, "### new numbers\n")
    assert doc.read_text() == f"intro\n{DOC_BEGIN} (generated) -->\n### new numbers\n{DOC_END}\noutro\n"
