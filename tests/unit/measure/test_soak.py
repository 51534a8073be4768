"""The soak's bookkeeping without a server: calls and memory samples into windows, the verdict
(no failed good request, memory flat), how a bad request's answer is classified, the bad
requests themselves, and the reports."""
import json
from pathlib import Path

import pytest
import tritonclient.grpc as grpc_api
import tritonclient.http as http_api
from tritonclient.utils import InferenceServerException

from shoprank import config
from shoprank.measure.loadtest.bad_requests import (
    BAD_ACCEPTED,
    BAD_REQUESTS,
    BY_NAME,
    CLIENT_ERROR,
    OTHER_ERROR,
    SERVER_ERROR,
    answer_of,
    outcome_of,
)
from shoprank.measure.loadtest.locust import locust_command
from shoprank.measure.loadtest.profiles import load_profile
from shoprank.measure.loadtest.soak import (
    MB,
    Call,
    Sample,
    bad_by_kind,
    build_windows,
    findings,
    percentile,
    read_calls,
    verdict,
    window_count,
)
from shoprank.measure.loadtest.soak_report import summary, window_row, write_reports

T0 = 1_000_000.0


def good(t, ms=100.0, ok=True, protocol="grpc"):
    return Call(T0 + t, ms, protocol, "rank", False, ok)


def bad(t, answer="INVALID_ARGUMENT", name="empty query", protocol="grpc"):
    return Call(T0 + t, 5.0, protocol, name, True, outcome_of(answer) == CLIENT_ERROR, answer, outcome_of(answer),
                None if outcome_of(answer) == CLIENT_ERROR else "boom")


def mem(t, mb, processes=5):
    return Sample(T0 + t, int(mb * MB), processes)


def test_calls_go_into_windows_by_end_time_and_late_ones_into_the_last():
    calls = [good(1), good(9.9, ms=300), good(10.0), good(25, ok=False), good(31, ms=900),  # 31 s: after the end
             bad(2), bad(12, "400"), bad(13, "OK", "NUL-only query"), bad(14, "INTERNAL")]
    samples = [mem(-1, 999), mem(0, 100), mem(5, 110), mem(15, 120), mem(29, 130), mem(30, 999)]
    windows = build_windows(calls, samples, T0, 10, 3)
    assert [(w.start_s, w.end_s) for w in windows] == [(0, 10), (10, 20), (20, 30)]
    assert [w.good for w in windows] == [2, 1, 2]
    assert [w.good_failed for w in windows] == [0, 0, 1]
    assert windows[0].p95_ms == 300 and windows[0].p50_ms == 100
    assert windows[0].good_per_s == 0.2
    assert [w.bad for w in windows] == [1, 3, 0]
    assert windows[1].bad_answers == {"400": 1, "OK": 1, "INTERNAL": 1}
    assert [w.bad_findings for w in windows] == [0, 2, 0]
    # Samples before the start (idle) and after the last window are not in any window.
    assert [w.memory_mb for w in windows] == [105.0, 120.0, 130.0]
    assert [w.memory_max_mb for w in windows] == [110.0, 120.0, 130.0]
    assert [w.memory_samples for w in windows] == [2, 1, 1]
    assert windows[0].processes == 5
    assert build_windows([], [], T0, 10, 2)[1].memory_mb is None


def test_percentile_is_a_measured_value_and_window_count_rounds_up():
    assert percentile([], 95) is None
    assert percentile([5.0], 95) == 5.0
    assert percentile(list(range(1, 101)), 95) == 95
    assert percentile([1, 2, 3, 4], 50) == 2
    assert window_count(600, 30) == 20
    assert window_count(601, 30) == 21
    assert window_count(5, 30) == 1


def _windows(memory, failed=(0, 0, 0), good_count=10):
    calls, samples = [], []
    for i, (mb, f) in enumerate(zip(memory, failed)):
        calls += [good(i * 10 + 1 + k / 10, ok=k >= f) for k in range(good_count)]
        if mb is not None:
            samples.append(mem(i * 10 + 5, mb))
    return build_windows(calls, samples, T0, 10, len(memory))


def test_verdict_passes_with_no_failures_and_flat_memory_and_names_the_numbers():
    v = verdict(_windows([400, 420, 410]), max_growth=0.10)
    assert v["passed"] and v["reasons"] == []
    assert (v["good"], v["good_failed"]) == (30, 0)
    assert (v["memory_first_mb"], v["memory_max_mb"], v["memory_last_mb"]) == (400, 420, 410)
    assert v["memory_growth"] == 0.05 and v["memory_last_growth"] == 0.025


def test_verdict_fails_on_a_failed_good_request():
    v = verdict(_windows([400, 400, 400], failed=(0, 1, 0)))
    assert not v["passed"] and v["good_failed"] == 1
    assert v["reasons"] == ["1 good request(s) failed (goal 0)"]


def test_verdict_fails_when_any_window_grew_past_the_limit_even_if_the_last_came_back():
    v = verdict(_windows([400, 450, 400]), max_growth=0.10)
    assert not v["passed"] and v["memory_growth"] == 0.125 and v["memory_last_growth"] == 0.0
    assert "memory grew 12.5% (first window 400.0 MB, largest 450.0 MB) > 10%" in v["reasons"][0]
    assert verdict(_windows([400, 450, 400]), max_growth=0.2)["passed"]


def test_verdict_fails_without_memory_or_without_good_requests():
    v = verdict(_windows([None, 400, None]))
    assert not v["passed"] and "not sampled" in v["reasons"][0]
    v = verdict(_windows([400, 400, 400], good_count=0))
    assert not v["passed"] and v["reasons"] == ["no good requests were answered"]


@pytest.mark.parametrize("status,answer,outcome", [
    ("StatusCode.INVALID_ARGUMENT", "INVALID_ARGUMENT", CLIENT_ERROR),
    ("400", "400", CLIENT_ERROR),
    ("StatusCode.INTERNAL", "INTERNAL", SERVER_ERROR),
    ("StatusCode.UNKNOWN", "UNKNOWN", SERVER_ERROR),
    ("500", "500", SERVER_ERROR),
    ("503", "503", SERVER_ERROR),
    ("StatusCode.UNAVAILABLE", "UNAVAILABLE", OTHER_ERROR),
    ("404", "404", OTHER_ERROR),
])
def test_answers_are_classified_client_server_or_other(status, answer, outcome):
    got = answer_of(InferenceServerException("msg", status=status))
    assert got == answer and outcome_of(got) == outcome


def test_an_accepted_bad_request_and_an_error_without_a_status_are_findings():
    assert answer_of(None) == "OK" and outcome_of("OK") == BAD_ACCEPTED
    assert answer_of(TimeoutError("slow")) == "TimeoutError" and outcome_of("TimeoutError") == OTHER_ERROR
    assert answer_of(InferenceServerException("no status")) == "InferenceServerException"


@pytest.mark.parametrize("api", [grpc_api, http_api], ids=["grpc", "http"])
def test_bad_requests_build_the_malformed_inputs_they_are_named_for(api):
    def shapes(name):
        return {i.name(): (i.shape(), i.datatype()) for i in BY_NAME[name].inputs(api)}

    assert len(BAD_REQUESTS) == len(BY_NAME) >= 10
    assert shapes("missing TOP_K") == {config.QUERY: ([1], "BYTES"), config.CANDIDATES: ([2], "BYTES")}
    assert shapes("TOP_K as FP32")[config.TOP_K] == ([1], "FP32")
    assert shapes("two queries (wrong shape)")[config.QUERY] == ([2], "BYTES")
    assert shapes("too many candidates")[config.CANDIDATES] == ([config.MAX_CANDIDATES + 1], "BYTES")
    assert shapes("no candidates")[config.CANDIDATES] == ([0], "BYTES")
    assert BY_NAME["NUL-only query"].query == (b"\x00",) and BY_NAME["negative TOP_K"].top_k == (-1,)


def test_the_request_log_is_read_while_it_is_written(tmp_path):
    log = tmp_path / "requests.jsonl"
    assert read_calls(log) == []
    log.write_text('{"t": 10.5, "type": "http", "name": "rank", "ms": 500.0, "ok": true}\n'
                   '{"t": 11, "type": "grpc-bad", "name": "empty query", "ms": 3, "ok": true, '
                   '"answer": "INVALID_ARGUMENT", "outcome": "client error"}\n'
                   '{"t": 12, "type": "grpc", "na')  # Locust is still writing this one
    first, second = read_calls(log)
    assert (first.protocol, first.bad, first.started) == ("http", False, 10.0)
    assert (second.protocol, second.bad, second.name) == ("grpc", True, "empty query")
    assert second.answer == "INVALID_ARGUMENT"


def test_findings_and_bad_requests_by_kind():
    calls = [bad(1), bad(2, "400"), bad(3, "OK", "NUL-only query"), bad(4, "OK", "NUL-only query"),
             bad(5, "500", "too many candidates", "http"), good(6)]
    assert bad_by_kind(calls) == {"NUL-only query": {"OK": 2}, "empty query": {"INVALID_ARGUMENT": 1, "400": 1},
                                  "too many candidates": {"500": 1}}
    assert [(f["kind"], f["protocol"], f["answer"], f["outcome"], f["count"]) for f in findings(calls)] == [
        ("NUL-only query", "grpc", "OK", BAD_ACCEPTED, 2), ("too many candidates", "http", "500", SERVER_ERROR, 1)]


def test_reports_name_the_verdict_the_windows_and_the_findings(tmp_path):
    calls = [good(1), good(12), bad(13, "OK", "NUL-only query")]
    windows = build_windows(calls, [mem(1, 400), mem(12, 404)], T0, 10, 2)
    report = {"name": "soak", "profile": "cpu", "users": 4, "protocols": ["grpc", "http"],
              "candidates": "uniform:10:200", "top_k": 10, "minutes": 20 / 60, "window_s": 10, "bad_share": 0.05,
              "sample_s": 2, "server_pid": 1, "started": "now", "load_s": 20.5, "verdict": verdict(windows),
              "windows": [vars(w) for w in windows], "bad_by_kind": bad_by_kind(calls), "findings": findings(calls),
              "memory_idle_before_mb": 390.0, "memory_after_mb": 405.0, "locust_exit": 0, "locust_dir": "x",
              "cpu": {"cores": 2, "load_generator_cores": 0.3, "server_cores": 1.5, "machine_busy_cores": 2.0},
              "triton_metrics": {}}
    paths = write_reports(report, tmp_path)
    verdict_json = json.loads(paths["json"].read_text())["verdict"]
    assert verdict_json["passed"] is False and "not refused as a client error" in verdict_json["reasons"][0]
    md = paths["md"].read_text()
    assert "**Verdict: FAIL**" in md and "first 400.0 MB, max 404.0 MB (+1.0%), last 404.0 MB" in md
    assert "| 0:10-0:20 | 1 | 0 |" in md and "NUL-only query" in md and "(soak.png)" in md
    assert paths["png"].stat().st_size > 0
    text = summary(report)
    assert "FINDINGS: 1 of 1 bad requests" in text and "=> FAIL" in text
    assert window_row(windows[1]).split()[6:9] == ["1", "1", "OK"]  # bad, findings, answers


def test_loadtest_command_is_unchanged_and_soak_options_come_before_the_user_classes():
    profile = load_profile("cpu")
    paths = (Path("p"), Path("h.html"), Path("l.log"))
    plain = locust_command(profile, "g:1", "h:2", *paths, seed=1)
    assert "--bad-share" not in plain and "--request-log" not in plain
    soak = locust_command(profile, "g:1", "h:2", *paths, seed=1, options=["--bad-share", "0.05"])
    assert soak[-2:] == ["GrpcRankUser", "HttpRankUser"] and soak[-4:-2] == ["--bad-share", "0.05"]
    assert soak[:-4] == plain[:-2]
