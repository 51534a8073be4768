"""The load-test gate against the real tritonserver: a short Locust run (gRPC and HTTP users)
passes a target it meets and fails one it cannot meet, through the same CLI as `make loadtest`.
No latency is asserted: the targets are either far above any plausible latency or impossible."""
from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest

from shoprank import config
from shoprank.client import RankClient
from shoprank.loadtest import (Candidates, RequestPool, Targets, evaluate, load_profile, perf_input_data,
                               read_stats_csv)

RUN_PY = config.PROJECT_ROOT / "loadtests" / "run.py"
USERS = 2
PROFILES = f"""
[profiles.loose]
users = {USERS}
spawn_rate = {USERS}
run_time_s = 12
protocols = ["grpc", "http"]
top_k = 5
candidates = "uniform:5:40"
data = "default"
[profiles.loose.targets]
p50_ms = 60000
p95_ms = 60000
p99_ms = 60000
max_failure_rate = 0.0

[profiles.unreachable]
users = {USERS}
spawn_rate = {USERS}
run_time_s = 4
protocols = ["grpc", "http"]
top_k = 5
candidates = "uniform:5:40"
data = "default"
[profiles.unreachable.targets]
p50_ms = 0.001
max_failure_rate = 0.0
"""


def _loadtest(server, targets, out, profile):
    command = [sys.executable, str(RUN_PY), "loadtest", "--profile", profile, "--targets", str(targets),
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
    pool = RequestPool.from_spec("default", Candidates.parse("uniform:3:30"))
    entries = perf_input_data(pool, top_k=4, count=6)["data"]
    with RankClient(server.grpc, "grpc") as client:
        for entry in entries:
            candidates = entry[config.CANDIDATES]["content"]
            assert entry[config.CANDIDATES]["shape"] == [len(candidates)]
            assert 3 <= len(candidates) <= 30 and len(set(candidates)) == len(candidates)
            ranked = client.rank(entry[config.QUERY]["content"][0], candidates, entry[config.TOP_K]["content"][0])
            assert len(ranked) == 4


def test_requests_draw_real_queries_with_their_own_products():
    pool = RequestPool.from_spec("default", Candidates.parse("fixed:20"))
    own = dict(pool.groups)
    rng = random.Random(1)
    for _ in range(20):
        query, candidates = pool.draw(rng)
        assert len(candidates) == 20 == len(set(candidates))
        assert set(own[query][:20]) <= set(candidates)


def test_shipped_profiles_load_and_bad_ones_are_refused(tmp_path):
    for name in ("cpu", "gpu"):
        profile = load_profile(name)
        assert profile.targets.p95_ms and profile.users >= 1 and profile.capacity_users
    bad = tmp_path / "t.toml"
    bad.write_text('[profiles.x]\nusers = 1\nspawn_rate = 1\nrun_time_s = 1\nfoo = 2\n')
    with pytest.raises(ValueError, match="unknown keys"):
        load_profile("x", bad)
    with pytest.raises(ValueError, match="no profile 'nope'"):
        load_profile("nope", bad)
    for spec in ("uniform:5", "normal:1:2", "uniform:20:10", f"fixed:{config.MAX_CANDIDATES + 1}"):
        with pytest.raises(ValueError, match="candidates"):
            Candidates.parse(spec)
