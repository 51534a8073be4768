"""`make soak`: the profile's Locust load for minutes, with a share of bad requests mixed in
(bad_requests.py), cut into windows of 30 s: good requests, failed good requests, p95, bad
requests and how the server answered them, and the server's memory (summed RSS of tritonserver
and its Python backend stubs). Verdict: no failed good request, and memory flat (no window's
mean more than 10 % above the first window's). Reports: soak_report.py.

Every call is logged by the locustfile (--request-log, one JSON line each) and windowed here by
its end time, from the start of the first call; calls still in flight when Locust stops go into
the last window. Memory is sampled in a thread of this process every few seconds.
"""
from __future__ import annotations

import json
import math
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from .bad_requests import CLIENT_ERROR
from .locust import RunResult, run_locust
from .profiles import Profile, Targets
from .server_stats import server_memory
from .soak_report import window_header, window_row

WINDOW_S = 30.0
BAD_SHARE = 0.05
MAX_MEMORY_GROWTH = 0.10  # the largest window mean may be at most this much above the first window's
SAMPLE_S = 2.0
MB = 1024 * 1024


@dataclass(frozen=True)
class Call:
    """One call from the request log."""

    t: float      # when it ended (epoch seconds)
    ms: float
    protocol: str
    name: str     # "rank" for a good request, the kind for a bad one
    bad: bool
    ok: bool      # good: ranked as expected; bad: answered with a client error
    answer: str | None = None   # bad: "INVALID_ARGUMENT", "400", "OK", ...
    outcome: str | None = None  # bad: one of bad_requests.OUTCOMES
    error: str | None = None

    @property
    def started(self) -> float:
        return self.t - self.ms / 1000


def read_calls(path: str | Path) -> list[Call]:
    """The request log so far; a half-written last line (Locust still running) is skipped."""
    calls = []
    try:
        lines = Path(path).read_text().splitlines()
    except FileNotFoundError:
        return calls
    for line in lines:
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue
        kind = str(r["type"])
        calls.append(Call(float(r["t"]), float(r["ms"]), kind.removesuffix("-bad"), str(r["name"]),
                          kind.endswith("-bad"), bool(r["ok"]), r.get("answer"), r.get("outcome"), r.get("error")))
    return calls


@dataclass(frozen=True)
class Sample:
    t: float
    rss_bytes: int
    processes: int


@dataclass
class Window:
    index: int
    start_s: float  # from the start of the soak
    end_s: float
    good: int = 0
    good_failed: int = 0
    p50_ms: float | None = None
    p95_ms: float | None = None
    good_per_s: float = 0.0
    bad: int = 0
    bad_answers: dict = field(default_factory=dict)  # answer -> count
    bad_findings: int = 0                             # bad requests not answered with a client error
    memory_mb: float | None = None                    # mean of the samples in the window
    memory_max_mb: float | None = None
    memory_samples: int = 0
    processes: int | None = None                      # tritonserver + stubs (the most seen)


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (a value that was measured); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def window_count(run_time_s: float, window_s: float) -> int:
    return max(1, math.ceil(run_time_s / window_s - 1e-9))


def build_windows(calls: list[Call], samples: list[Sample], start: float, window_s: float,
                  count: int) -> list[Window]:
    """Calls by end time into `count` windows of `window_s` from `start` (later ones into the
    last); memory samples inside [start, start + count * window_s) into theirs."""
    windows = [Window(i, i * window_s, (i + 1) * window_s) for i in range(count)]
    good_ms: list[list[float]] = [[] for _ in windows]
    answers: list[Counter] = [Counter() for _ in windows]
    for call in calls:
        w = windows[min(count - 1, max(0, int((call.t - start) // window_s)))]
        if call.bad:
            w.bad += 1
            answers[w.index][call.answer or "?"] += 1
            w.bad_findings += call.outcome != CLIENT_ERROR
        else:
            w.good += 1
            w.good_failed += not call.ok
            good_ms[w.index].append(call.ms)
    rss: list[list[Sample]] = [[] for _ in windows]
    for s in samples:
        i = int((s.t - start) // window_s)
        if 0 <= i < count and s.t >= start:
            rss[i].append(s)
    for w in windows:
        ms = good_ms[w.index]
        w.p50_ms, w.p95_ms = percentile(ms, 50), percentile(ms, 95)
        w.good_per_s = round(w.good / window_s, 2)
        w.bad_answers = dict(answers[w.index].most_common())
        if rss[w.index]:
            values = [s.rss_bytes / MB for s in rss[w.index]]
            w.memory_mb = round(sum(values) / len(values), 1)
            w.memory_max_mb = round(max(values), 1)
            w.memory_samples = len(values)
            w.processes = max(s.processes for s in rss[w.index])
    return windows


def verdict(windows: list[Window], max_growth: float = MAX_MEMORY_GROWTH) -> dict:
    """Passed when no good request failed (and some were sent), every bad request was refused as a
    client error, and memory stayed flat: the largest window mean at most `max_growth` above the
    first window's. Names the numbers."""
    good = sum(w.good for w in windows)
    failed = sum(w.good_failed for w in windows)
    reasons = []
    if good == 0:
        reasons.append("no good requests were answered")
    if failed:
        reasons.append(f"{failed} good request(s) failed (goal 0)")
    bad_findings = sum(w.bad_findings for w in windows)
    if bad_findings:
        reasons.append(f"{bad_findings} bad request(s) not refused as a client error (see findings)")
    memory = [w.memory_mb for w in windows]
    first, last = memory[0] if memory else None, memory[-1] if memory else None
    measured = [m for m in memory if m is not None]
    peak = max(measured) if measured else None
    growth = last_growth = None
    if first is None or last is None:
        reasons.append("server memory was not sampled in the first and last windows")
    else:
        growth, last_growth = peak / first - 1, last / first - 1
        if growth > max_growth:
            reasons.append(f"memory grew {growth:.1%} (first window {first:.1f} MB, largest {peak:.1f} MB) "
                           f"> {max_growth:.0%}")
    return {"passed": not reasons, "reasons": reasons, "good": good, "good_failed": failed,
            "bad": sum(w.bad for w in windows), "bad_findings": bad_findings,
            "memory_first_mb": first, "memory_max_mb": peak, "memory_last_mb": last,
            "memory_growth": None if growth is None else round(growth, 4),
            "memory_last_growth": None if last_growth is None else round(last_growth, 4),
            "max_memory_growth": max_growth}


def findings(calls: list[Call]) -> list[dict]:
    """Bad requests the server did not refuse with a client error, by kind, protocol and answer
    (count and one example message)."""
    groups: dict = {}
    for c in calls:
        if c.bad and c.outcome != CLIENT_ERROR:
            key = (c.name, c.protocol, c.answer, c.outcome)
            entry = groups.setdefault(key, {"kind": c.name, "protocol": c.protocol, "answer": c.answer,
                                            "outcome": c.outcome, "count": 0, "example": c.error})
            entry["count"] += 1
    return sorted(groups.values(), key=lambda f: (-f["count"], f["kind"], f["protocol"]))


def bad_by_kind(calls: list[Call]) -> dict:
    """{kind: {answer: count}} over both protocols."""
    table: dict = {}
    for c in calls:
        if c.bad:
            table.setdefault(c.name, Counter())[c.answer or "?"] += 1
    return {kind: dict(answers.most_common()) for kind, answers in sorted(table.items())}


class Monitor(threading.Thread):
    """Samples the server's memory every `sample_s` and prints each window's row once it is over."""

    def __init__(self, server_pid: int | None, request_log: Path, window_s: float, count: int,
                 sample_s: float = SAMPLE_S, echo: bool = True):
        super().__init__(daemon=True, name="soak-monitor")
        self.server_pid, self.request_log = server_pid, request_log
        self.window_s, self.count, self.sample_s, self.echo = window_s, count, sample_s, echo
        self.samples: list[Sample] = []
        self.printed = 0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            self.sample()
            if self.echo:
                self.print_finished()
            self._done.wait(self.sample_s)

    def sample(self) -> None:
        if self.server_pid is None:
            return
        memory = server_memory(self.server_pid)
        if memory is not None:
            self.samples.append(Sample(time.time(), *memory))

    def print_finished(self) -> None:
        calls = read_calls(self.request_log)
        if not calls:
            return
        start = min(c.started for c in calls)
        # A window is printed 2 s after it ends: calls that ended in it are in the log by then.
        # The last one is left to run_soak: calls in flight when Locust stops still go into it.
        done = min(self.count - 2, int((time.time() - 2.0 - start) // self.window_s) - 1)
        if done < self.printed:
            return
        windows = build_windows(calls, list(self.samples), start, self.window_s, self.count)
        if self.printed == 0:
            print(window_header(), flush=True)
        for w in windows[self.printed:done + 1]:
            print(window_row(w), flush=True)
        self.printed = done + 1

    def stop(self) -> None:
        self._done.set()
        self.join(10)


def run_soak(profile: Profile, endpoints, out_dir: Path, server_pid: int | None, minutes: float,
             window_s: float = WINDOW_S, bad_share: float = BAD_SHARE, sample_s: float = SAMPLE_S,
             max_growth: float = MAX_MEMORY_GROWTH, name: str = "soak", echo: bool = True) -> dict:
    """The profile's load for `minutes` with `bad_share` of calls bad; returns the report
    (windows, verdict, findings, bad requests by kind, Locust's CPU and Triton's counters)."""
    run_time_s = minutes * 60
    count = window_count(run_time_s, window_s)
    # The gate of the Locust run is not used: the soak's verdict is over its own windows.
    soak_profile = replace(profile, run_time_s=run_time_s, targets=Targets(max_failure_rate=1.0))
    request_log = Path(out_dir).resolve() / name / "requests.jsonl"
    idle = server_memory(server_pid) if server_pid else None
    monitor = Monitor(server_pid, request_log, window_s, count, sample_s, echo)
    if echo:
        print(f"soak: {profile.users} users ({'+'.join(profile.protocols)}), {minutes:g} min, candidates "
              f"{profile.candidates.spec}, TOP_K {profile.top_k}, {bad_share:.0%} bad requests, windows of "
              f"{window_s:g} s; server pid {server_pid} ({Path(out_dir) / name})", flush=True)
    monitor.start()
    try:
        result: RunResult = run_locust(soak_profile, endpoints, out_dir, name=name, server_pid=server_pid,
                                       echo=False, options=["--bad-share", str(bad_share),
                                                            "--request-log", str(request_log)])
    finally:
        monitor.stop()
    calls = read_calls(request_log)
    if not calls:
        raise RuntimeError(f"Locust logged no calls (exit {result.locust_exit}); see {result.out_dir / 'locust.out'}")
    start = min(c.started for c in calls)
    windows = build_windows(calls, monitor.samples, start, window_s, count)
    if echo:
        if monitor.printed == 0:
            print(window_header())
        for w in windows[monitor.printed:]:
            print(window_row(w))
    after = server_memory(server_pid) if server_pid else None
    return {"name": name, "profile": profile.name, "users": profile.users, "protocols": list(profile.protocols),
            "candidates": profile.candidates.spec, "top_k": profile.top_k, "minutes": minutes,
            "window_s": window_s, "bad_share": bad_share, "sample_s": sample_s, "server_pid": server_pid,
            "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(start)),
            "load_s": round(max(c.t for c in calls) - start, 1),  # first call's start to last call's end
            "verdict": verdict(windows, max_growth), "windows": [asdict(w) for w in windows],
            "bad_by_kind": bad_by_kind(calls), "findings": findings(calls),
            "memory_idle_before_mb": None if idle is None else round(idle[0] / MB, 1),
            "memory_after_mb": None if after is None else round(after[0] / MB, 1),
            "locust_exit": result.locust_exit, "locust_dir": str(result.out_dir), "cpu": result.cpu,
            "triton_metrics": result.metrics}
