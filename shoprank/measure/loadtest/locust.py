"""One headless Locust run of a profile (gRPC and HTTP users of locustfile.py), bounded in time,
its stats read back and checked against the profile's targets."""
from __future__ import annotations

import csv
import json
import math
import os
import random
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ... import config
from ...data.requests import RequestPool
from ...serving.client import RankClient
from ...serving.processes import tail
from ..fmt import fmt
from .profiles import Profile, Targets
from .server_stats import CpuMeter, format_cpu, format_metrics, scrape_metrics, summarize_metrics

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
REQUEST_NAME = config.ENSEMBLE_MODEL  # Locust's name for every call: one row per protocol
# Locust gets run_time plus this long to start, stop its users and write its reports before
# it is killed (it has hung at exit here).
LOCUST_GRACE_S = 60
STOP_TIMEOUT_S = 5  # in-flight requests may finish this long after run_time


@dataclass
class StatsRow:
    type: str
    name: str
    requests: int
    failures: int
    rps: float
    avg_pairs: float  # mean candidates per request (Locust's "Average Content Size", see locustfile)
    avg_ms: float
    percentiles: dict  # "50%" -> ms (None when Locust has no value)

    @property
    def label(self) -> str:
        return f"{self.type} {self.name}".strip()

    @property
    def failure_rate(self) -> float:
        return self.failures / self.requests if self.requests else 1.0

    @property
    def pairs_per_s(self) -> float:
        return self.rps * self.avg_pairs

    def p(self, q: int) -> float | None:
        return self.percentiles.get(f"{q}%")


def read_stats_csv(path: str | Path) -> list[StatsRow]:
    """Locust's <prefix>_stats.csv: one row per (protocol, name) and the "Aggregated" row last."""
    rows = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            pct = {k: (None if v in ("N/A", "") else float(v)) for k, v in r.items() if k.endswith("%")}
            rows.append(StatsRow(r["Type"], r["Name"], int(r["Request Count"]), int(r["Failure Count"]),
                                 float(r["Requests/s"]), float(r["Average Content Size"]),
                                 float(r["Average Response Time"]), pct))
    if not rows:
        raise ValueError(f"{path}: no rows; did Locust run?")
    return rows


@dataclass
class Check:
    row: str
    metric: str
    limit: float
    value: float | None
    ok: bool


def evaluate(rows: Sequence[StatsRow], targets: Targets) -> list[Check]:
    """Every row (each protocol and the aggregate) against every target that is set."""
    checks = []
    for row in rows:
        if row.requests == 0:
            checks.append(Check(row.label, "requests", 1, 0, False))
            continue
        for q in (50, 95, 99):
            limit = getattr(targets, f"p{q}_ms")
            if limit is not None:
                value = row.p(q)
                checks.append(Check(row.label, f"p{q} ms", limit, value, value is not None and value <= limit))
        checks.append(Check(row.label, "failure rate", targets.max_failure_rate, row.failure_rate,
                            row.failure_rate <= targets.max_failure_rate))
    return checks


@dataclass
class RunResult:
    name: str
    out_dir: Path
    users: int
    run_time_s: float
    rows: list[StatsRow]
    checks: list[Check]
    cpu: dict
    metrics: dict
    locust_exit: int
    wall_s: float
    extra: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.locust_exit == 0 and bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def total(self) -> StatsRow:
        return self.rows[-1]

    def to_json(self) -> dict:
        return {"name": self.name, "users": self.users, "run_time_s": self.run_time_s, "passed": self.passed,
                "locust_exit": self.locust_exit, "wall_s": round(self.wall_s, 1),
                "rows": [{**asdict(r), "label": r.label, "failure_rate": r.failure_rate,
                          "pairs_per_s": r.pairs_per_s} for r in self.rows],
                "checks": [asdict(c) for c in self.checks], "cpu": self.cpu, "triton_metrics": self.metrics,
                **self.extra}


def locust_command(profile: Profile, grpc_url: str, http_url: str, prefix: Path, html: Path,
                   log: Path, seed: int, options: Sequence[str] = ()) -> list[str]:
    """options: more locustfile options (the soak's --bad-share, --request-log)."""
    classes = {"grpc": "GrpcRankUser", "http": "HttpRankUser"}
    return [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
            "-u", str(profile.users), "-r", str(profile.spawn_rate), "--run-time", f"{math.ceil(profile.run_time_s)}s",
            "--stop-timeout", str(STOP_TIMEOUT_S), "--csv", str(prefix), "--html", str(html),
            "--only-summary", "--exit-code-on-error", "0", "--loglevel", "WARNING", "--logfile", str(log),
            "--grpc-url", grpc_url, "--http-url", http_url, "--top-k", str(profile.top_k),
            "--candidates", profile.candidates.spec, "--data", profile.data, "--think-time", str(profile.think_time_s),
            "--seed", str(seed), *options, *[classes[p] for p in profile.protocols]]


def run_locust(profile: Profile, endpoints, out_dir: Path, name: str | None = None, server_pid: int | None = None,
               seed: int = config.SEED, echo: bool = True, options: Sequence[str] = ()) -> RunResult:
    """One headless Locust run of the profile against the endpoints; reports under out_dir/name.
    options: more locustfile options (see locust_command)."""
    name = name or profile.name
    run_dir = Path(out_dir).resolve() / name
    if run_dir.exists():
        shutil.rmtree(run_dir)  # a report must never mix two runs
    run_dir.mkdir(parents=True)
    prefix, html, log = run_dir / "locust", run_dir / "report.html", run_dir / "locust.log"
    command = locust_command(profile, endpoints.grpc, endpoints.http, prefix, html, log, seed, options)
    (run_dir / "command.txt").write_text(shlex.join(command) + "\n")

    before_metrics = scrape_metrics(endpoints.metrics)
    cpu = CpuMeter(server_pid)
    started = time.time()
    hard_limit = profile.run_time_s + LOCUST_GRACE_S
    with open(run_dir / "locust.out", "wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                cwd=config.PROJECT_ROOT)
        try:
            code = proc.wait(hard_limit)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            code = -9
    wall = time.time() - started
    cpu_use = cpu.stop(wall)
    after_metrics = scrape_metrics(endpoints.metrics)
    stats_csv = Path(f"{prefix}_stats.csv")
    if not stats_csv.exists():
        raise RuntimeError(f"Locust wrote no stats (exit {code}); see {run_dir / 'locust.out'}:\n"
                           + tail(run_dir / "locust.out", 30))
    rows = read_stats_csv(stats_csv)
    result = RunResult(name, run_dir, profile.users, profile.run_time_s, rows, evaluate(rows, profile.targets),
                       cpu_use, summarize_metrics(before_metrics, after_metrics), code, wall,
                       extra={"profile": {**asdict(profile), "candidates": profile.candidates.spec}})
    (run_dir / "summary.json").write_text(json.dumps(result.to_json(), indent=2, default=str) + "\n")
    if echo:
        print(format_run(result, profile))
    return result


def _kill_group(proc: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(5)
            return
        except subprocess.TimeoutExpired:
            continue


def format_run(result: RunResult, profile: Profile) -> str:
    lines = [f"\nload test {result.name!r}: {result.users} users, {result.run_time_s:g} s, "
             f"candidates {profile.candidates.spec}, TOP_K {profile.top_k}  ({result.out_dir})",
             f"  {'':<12}{'requests':>9}{'fail':>6}{'req/s':>8}{'pairs/s':>9}"
             f"{'p50':>7}{'p95':>7}{'p99':>7}{'max':>7}  ms"]
    for r in result.rows:
        lines.append(f"  {r.label:<12}{r.requests:>9}{r.failures:>6}{r.rps:>8.1f}{r.pairs_per_s:>9.0f}"
                     + "".join(f"{fmt(v, '.0f'):>7}" for v in (r.p(50), r.p(95), r.p(99), r.percentiles.get("100%"))))
    lines.append(format_cpu(result.cpu))
    lines.append(format_metrics(result.metrics))
    lines.append(format_checks(result.checks, result.locust_exit))
    return "\n".join(lines)


def format_checks(checks: Sequence[Check], locust_exit: int = 0) -> str:
    lines = [f"  {'gate':<28}{'target':>10}{'measured':>11}  result"]
    for c in checks:
        pct = c.metric == "failure rate"
        limit = f"{c.limit:.2%}" if pct else f"<= {c.limit:g}"
        value = f"{c.value:.2%}" if pct and c.value is not None else fmt(c.value, '.0f')
        lines.append(f"  {c.row + ' ' + c.metric:<28}{limit:>10}{value:>11}  {'PASS' if c.ok else 'FAIL'}")
    if locust_exit != 0:
        lines.append(f"  Locust exited with {locust_exit}: FAIL")
    ok = locust_exit == 0 and checks and all(c.ok for c in checks)
    missed = sum(not c.ok for c in checks)
    lines.append(f"  => {'PASS: every target met' if ok else f'FAIL: {missed} target(s) missed'}")
    return "\n".join(lines)


def warm_up(endpoints, profile: Profile, pool: RequestPool, requests: int = 4) -> None:
    """A few requests per protocol before measuring, so the first engine calls of each shape and
    the clients' connections are not in the measured tail."""
    rng = random.Random(0)
    for protocol in profile.protocols:
        url = endpoints.grpc if protocol == "grpc" else endpoints.http
        with RankClient(url, protocol) as client:
            for _ in range(requests):
                query, candidates = pool.draw(rng, profile.candidates.draw(rng))
                client.infer_raw(query, candidates, profile.top_k)
