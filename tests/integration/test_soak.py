"""A short soak against the real tritonserver through the same CLI as `make soak`: three 10-s
windows of gRPC and HTTP load with a large share of bad requests. Every good request succeeds,
every kind of bad request is sent and refused with a client error (INVALID_ARGUMENT / 400), and
the server's memory (tritonserver and its Python stubs) is sampled in every window. No latency
or memory growth is asserted: the memory limit is set out of reach."""
from __future__ import annotations

import json
import subprocess
import sys

from shoprank import config
from shoprank.measure.loadtest.bad_requests import BAD_REQUESTS, CLIENT_ERRORS

PROFILE = ('[profiles.soak]\nusers = 2\nspawn_rate = 2\nrun_time_s = 30\nprotocols = ["grpc", "http"]\n'
           'top_k = 5\ncandidates = "uniform:5:40"\ndata = "default"\n'
           "[profiles.soak.targets]\nmax_failure_rate = 0.0\n")


def test_bad_requests_are_client_errors_good_ones_succeed_and_memory_is_sampled(server, tmp_path):
    targets = tmp_path / "targets.toml"
    targets.write_text(PROFILE)
    command = [sys.executable, "-m", "shoprank.cli", "soak", "--profile", "soak", "--targets", str(targets),
               "--host", server.host, "--http-port", str(server.http_port), "--grpc-port", str(server.grpc_port),
               "--metrics-port", str(server.metrics_port), "--out", str(tmp_path / "loadtest"),
               "--report-dir", str(tmp_path), "--minutes", "0.5", "--window-s", "10", "--sample-s", "1",
               "--bad-share", "0.3", "--max-memory-growth", "100"]
    run = subprocess.run(command, capture_output=True, text=True, timeout=240, cwd=config.PROJECT_ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "=> PASS" in run.stdout

    report = json.loads((tmp_path / "soak.json").read_text())
    verdict = report["verdict"]
    assert verdict["passed"] and verdict["good"] > 0 and verdict["good_failed"] == 0
    assert (tmp_path / "soak.md").stat().st_size > 0 and (tmp_path / "soak.png").stat().st_size > 0

    # Every kind was sent (kinds are taken in turn) and refused with a client error.
    assert set(report["bad_by_kind"]) == {b.name for b in BAD_REQUESTS}
    for kind, answers in report["bad_by_kind"].items():
        assert set(answers) <= set(CLIENT_ERRORS), (kind, answers)
    assert not report["findings"]
    assert verdict["bad"] == sum(sum(a.values()) for a in report["bad_by_kind"].values())

    windows = report["windows"]
    assert len(windows) == 3 and sum(w["good"] for w in windows) == verdict["good"]
    for w in windows:  # tritonserver plus a stub per model instance, sampled in every window
        assert w["memory_samples"] > 0 and w["memory_mb"] > 0 and w["processes"] >= 4, w
    # The server kept serving: Triton counted every good request the soak sent as a success.
    assert report["triton_metrics"][config.ENSEMBLE_MODEL]["requests"] >= verdict["good"]
