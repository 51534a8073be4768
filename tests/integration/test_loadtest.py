"""The load-test gate against the real tritonserver: a short Locust run (gRPC and HTTP users)
passes a target it meets and fails one it cannot meet, through the same CLI as `make loadtest`.
No latency is asserted: the targets are either far above any plausible latency or impossible."""
from __future__ import annotations

import json
import subprocess
import sys

from shoprank import config
from shoprank.data.requests import RequestPool
from shoprank.measure.loadtest.locust import evaluate, read_stats_csv
from shoprank.measure.loadtest.perf import perf_input_data
from shoprank.measure.loadtest.profiles import Candidates, Targets
from shoprank.serving.client import RankClient

USERS = 2


def _profile(name: str, run_time_s: int, targets: str) -> str:
    return (f"[profiles.{name}]\nusers = {USERS}\nspawn_rate = {USERS}\nrun_time_s = {run_time_s}\n"
            'protocols = ["grpc", "http"]\ntop_k = 5\ncandidates = "uniform:5:40"\ndata = "default"\n'
            f"[profiles.{name}.targets]\n{targets}\nmax_failure_rate = 0.0\n")


PROFILES = (_profile("loose", 12, "p50_ms = 60000\np95_ms = 60000\np99_ms = 60000")
            + _profile("unreachable", 4, "p50_ms = 0.001"))


def _loadtest(server, targets, out, profile):
    command = [sys.executable, "-m", "shoprank.cli", "loadtest", "--profile", profile, "--targets", str(targets),
               "--host", server.host, "--http-port", str(server.http_port), "--grpc-port", str(server.grpc_port),
               "--metrics-port", str(server.metrics_port), "--out", str(out)]
    return subprocess.run(command, capture_output=True, text=True, timeout=180, cwd=config.PROJECT_ROOT)


def test_gate_passes_a_met_target_and_fails_an_unreachable_one(server, tmp_path):
    targets = tmp_path / "targets.toml"
    targets.write_text(PROFILES)
    out = tmp_path / "reports"

    met = _loadtest(server, targets, out, "loose")
    assert met.returncode == 0, met.stdout + met.stderr
    assert "PASS: every target met" in met.stdout
    run = out / "loose"
    for name in ("locust_stats.csv", "report.html", "summary.json"):
        assert (run / name).stat().st_size > 0, name
    rows = read_stats_csv(run / "locust_stats.csv")
    assert [r.label for r in rows] == ["grpc rank", "http rank", "Aggregated"]
    assert all(r.requests > 0 and r.failures == 0 for r in rows)
    assert 5 <= rows[-1].avg_pairs <= 40  # response_length carries the candidate count

    summary = json.loads((run / "summary.json").read_text())
    assert summary["passed"] is True
    assert summary["cpu"]["load_generator_cores"] > 0 and summary["cpu"]["server_cores"] > 0
    metrics = summary["triton_metrics"]
    # Every call Locust counted reached the ensemble; at most one in flight per user was cut off
    # at the end (Triton still finished it).
    assert rows[-1].requests <= metrics[config.ENSEMBLE_MODEL]["requests"] <= rows[-1].requests + USERS
    ranker = metrics[config.RANKER_MODEL]
    assert ranker["requests"] == metrics[config.ENSEMBLE_MODEL]["requests"]
    assert ranker["inferences"] >= 5 * ranker["requests"]  # rows are candidate pairs, 5..40 a request
    assert 0 < ranker["executions"] <= ranker["requests"]

    # The same measured stats fail a target that cannot be met ...
    assert not all(c.ok for c in evaluate(rows, Targets(p50_ms=0.001)))
    # ... and so does a real run through the CLI, with exit code 1 and the miss in the table.
    missed = _loadtest(server, targets, out, "unreachable")
    assert missed.returncode == 1, missed.stdout + missed.stderr
    assert "FAIL" in missed.stdout
    checks = json.loads((out / "unreachable" / "summary.json").read_text())["checks"]
    assert {c["metric"] for c in checks if not c["ok"]} == {"p50 ms"}
    assert all(c["ok"] for c in checks if c["metric"] == "failure rate")


def test_perf_analyzer_input_data_is_requests_the_server_accepts(server):
    pool = RequestPool.from_spec("default")
    entries = perf_input_data(pool, Candidates.parse("uniform:3:30"), top_k=4, count=6)["data"]
    with RankClient(server.grpc, "grpc") as client:
        for entry in entries:
            candidates = entry[config.CANDIDATES]["content"]
            assert entry[config.CANDIDATES]["shape"] == [len(candidates)]
            assert 3 <= len(candidates) <= 30 and len(set(candidates)) == len(candidates)
            ranked = client.rank(entry[config.QUERY]["content"][0], candidates, entry[config.TOP_K]["content"][0])
            assert len(ranked) == 4
