"""Load tests that gate latency targets: Locust (gRPC and HTTP users), capacity steps, Triton's
Prometheus metrics and Triton's perf_analyzer, for the `rank` ensemble.

    python loadtests/run.py loadtest --profile cpu            # gate: exit 1 when a target is missed
    python loadtests/run.py loadtest --profile cpu --capacity # step users up until p95 breaks
    python loadtests/run.py perf --concurrency 1,2,4,8        # perf_analyzer sweep + breakdown
    python loadtests/run.py install-perf-analyzer             # perf_analyzer into artifacts/tools

Profiles (load shape, candidate distribution, targets) live in loadtests/targets.toml.
Locust runs headless in a subprocess bounded in time; its CSV and HTML reports and a
summary.json land under reports/loadtest/<run name>/.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import re
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import urllib.request
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Iterator, Sequence

from . import config

LOADTESTS_DIR = config.PROJECT_ROOT / "loadtests"
TARGETS_FILE = LOADTESTS_DIR / "targets.toml"
LOCUSTFILE = LOADTESTS_DIR / "locustfile.py"
REPORTS = config.REPORTS_DIR / "loadtest"
TOOLS_DIR = config.ARTIFACTS_DIR / "tools"
REQUEST_NAME = config.ENSEMBLE_MODEL  # Locust's name for every call: one row per protocol
# Locust gets run_time plus this long to start, stop its users and write its reports before
# it is killed (it has hung at exit here).
LOCUST_GRACE_S = 60
STOP_TIMEOUT_S = 5  # in-flight requests may finish this long after run_time
# perf_analyzer from PyPI: wheels exist for manylinux_2_38 only (glibc >= 2.38).
PERF_ANALYZER_PIN = "perf-analyzer==2.60.0"
PERF_ANALYZER_PLATFORM = "manylinux_2_38_x86_64"
# On an older glibc (Debian 12 has 2.36) the binary runs under the loader and C/C++ runtime of
# Debian 13, unpacked beside it; nothing of the system changes.
SIDE_GLIBC_SUITE = "trixie"
SIDE_GLIBC_PACKAGES = ("libc6", "libstdc++6", "libgcc-s1")
# perf_analyzer's default 10 % rarely settles on 2 cores shared with other jobs.
PERF_STABILITY_PCT = 50


# --- Profiles ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Candidates:
    """How many candidates a request carries: uniform in [low, high] or fixed (low == high)."""

    low: int
    high: int

    @classmethod
    def parse(cls, spec: str) -> "Candidates":
        parts = str(spec).strip().split(":")
        try:
            if parts[0] == "fixed" and len(parts) == 2:
                low = high = int(parts[1])
            elif parts[0] == "uniform" and len(parts) == 3:
                low, high = int(parts[1]), int(parts[2])
            else:
                raise ValueError
        except ValueError:
            raise ValueError(f"candidates {spec!r}: use 'uniform:MIN:MAX' or 'fixed:N'") from None
        if not 1 <= low <= high <= config.MAX_CANDIDATES:
            raise ValueError(f"candidates {spec!r}: need 1 <= MIN <= MAX <= {config.MAX_CANDIDATES}")
        return cls(low, high)

    @property
    def spec(self) -> str:
        return f"fixed:{self.low}" if self.low == self.high else f"uniform:{self.low}:{self.high}"

    @property
    def mean(self) -> float:
        return (self.low + self.high) / 2

    def draw(self, rng: random.Random) -> int:
        return rng.randint(self.low, self.high)


@dataclass(frozen=True)
class Targets:
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    max_failure_rate: float = 0.0


@dataclass(frozen=True)
class Profile:
    name: str
    users: int
    spawn_rate: float
    run_time_s: float
    targets: Targets
    candidates: Candidates = Candidates(10, 200)
    protocols: tuple[str, ...] = ("grpc", "http")
    top_k: int = 10
    think_time_s: float = 0.0
    data: str = "auto"
    description: str = ""
    capacity_users: tuple[int, ...] = (1, 2, 4, 8)
    capacity_step_s: float = 20.0


_PROFILE_KEYS = {"description", "users", "spawn_rate", "run_time_s", "think_time_s", "protocols", "top_k",
                 "candidates", "data", "targets", "capacity"}


def load_profile(name: str, path: str | Path = TARGETS_FILE) -> Profile:
    """One named profile of a targets file; unknown names and keys are errors, not ignored."""
    path = Path(path)
    with open(path, "rb") as f:
        profiles = tomllib.load(f).get("profiles", {})
    if name not in profiles:
        raise ValueError(f"{path}: no profile {name!r}; known: {', '.join(profiles) or '(none)'}")
    raw = dict(profiles[name])
    unknown = set(raw) - _PROFILE_KEYS
    if unknown:
        raise ValueError(f"{path}: profile {name!r} has unknown keys {sorted(unknown)}")
    target_raw = dict(raw.pop("targets", {}))
    unknown = set(target_raw) - {f.name for f in Targets.__dataclass_fields__.values()}
    if unknown:
        raise ValueError(f"{path}: profile {name!r} targets have unknown keys {sorted(unknown)}")
    capacity = dict(raw.pop("capacity", {}))
    protocols = tuple(raw.pop("protocols", ("grpc", "http")))
    bad = [p for p in protocols if p not in ("grpc", "http")]
    if bad or not protocols:
        raise ValueError(f"{path}: profile {name!r}: protocols must be 'grpc' and/or 'http', got {list(protocols)}")
    profile = Profile(
        name=name, targets=Targets(**target_raw), protocols=protocols,
        candidates=Candidates.parse(raw.pop("candidates", "uniform:10:200")),
        capacity_users=tuple(int(u) for u in capacity.get("users", (1, 2, 4, 8))),
        capacity_step_s=float(capacity.get("step_run_time_s", 20.0)), **raw)
    if profile.users < 1 or profile.run_time_s <= 0 or profile.spawn_rate <= 0:
        raise ValueError(f"{path}: profile {name!r}: users, spawn_rate and run_time_s must be > 0")
    return profile


# --- Requests from the data ----------------------------------------------------------------------

class RequestPool:
    """Realistic requests: a real query, its own judged products first, then random product
    titles from the data until the drawn candidate count is reached."""

    def __init__(self, pairs, candidates: Candidates):
        from . import data

        texts = pairs["text"].to_numpy()
        self.groups = [(q, list(dict.fromkeys(texts[idx].tolist()))) for q, idx in data.query_groups(pairs)]
        self.texts = list(dict.fromkeys(texts.tolist()))
        self.candidates = candidates
        self.source = pairs.attrs.get("source", "?")
        if not self.groups or len(self.texts) < candidates.high:
            raise ValueError(f"{self.source}: {len(self.texts)} distinct product texts, fewer than the "
                             f"{candidates.high} candidates a request may need")

    @classmethod
    def from_spec(cls, spec: str, candidates: Candidates) -> "RequestPool":
        from . import data

        if spec in (None, "", "auto"):
            return cls(data.load_default_or_shared(), candidates)
        return cls(data.load_pairs(data.resolve_data(spec)), candidates)

    def draw(self, rng: random.Random) -> tuple[str, list[str]]:
        query, own = self.groups[rng.randrange(len(self.groups))]
        n = self.candidates.draw(rng)
        chosen = own[:n]
        seen = set(chosen)
        while len(chosen) < n:
            text = self.texts[rng.randrange(len(self.texts))]
            if text not in seen:
                seen.add(text)
                chosen.append(text)
        rng.shuffle(chosen)  # the server must find the relevant ones, not read them off the top
        return query, chosen


# --- Locust run ----------------------------------------------------------------------------------

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
                   log: Path, seed: int) -> list[str]:
    classes = {"grpc": "GrpcRankUser", "http": "HttpRankUser"}
    return [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
            "-u", str(profile.users), "-r", str(profile.spawn_rate), "--run-time", f"{math.ceil(profile.run_time_s)}s",
            "--stop-timeout", str(STOP_TIMEOUT_S), "--csv", str(prefix), "--html", str(html),
            "--only-summary", "--exit-code-on-error", "0", "--loglevel", "WARNING", "--logfile", str(log),
            "--grpc-url", grpc_url, "--http-url", http_url, "--top-k", str(profile.top_k),
            "--candidates", profile.candidates.spec, "--data", profile.data, "--think-time", str(profile.think_time_s),
            "--seed", str(seed), *[classes[p] for p in profile.protocols]]


def run_locust(profile: Profile, endpoints, out_dir: Path, name: str | None = None, server_pid: int | None = None,
               seed: int = config.SEED, echo: bool = True) -> RunResult:
    """One headless Locust run of the profile against the endpoints; reports under out_dir/name."""
    name = name or profile.name
    run_dir = Path(out_dir).resolve() / name
    if run_dir.exists():
        shutil.rmtree(run_dir)  # a report must never mix two runs
    run_dir.mkdir(parents=True)
    prefix, html, log = run_dir / "locust", run_dir / "report.html", run_dir / "locust.log"
    command = locust_command(profile, endpoints.grpc, endpoints.http, prefix, html, log, seed)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(config.PROJECT_ROOT), env.get("PYTHONPATH")]))
    (run_dir / "command.txt").write_text(shlex.join(command) + "\n")

    before_metrics = scrape_metrics(endpoints.metrics)
    cpu = CpuMeter(server_pid)
    started = time.time()
    hard_limit = profile.run_time_s + LOCUST_GRACE_S
    with open(run_dir / "locust.out", "wb") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
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
                           + _tail(run_dir / "locust.out"))
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


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no output)"


def _fmt(value, digits: int = 0) -> str:
    if value is None:
        return "n/a"
    return f"{value:.{digits}f}"


def format_run(result: RunResult, profile: Profile) -> str:
    lines = [f"\nload test {result.name!r}: {result.users} users, {result.run_time_s:g} s, "
             f"candidates {profile.candidates.spec}, TOP_K {profile.top_k}  ({result.out_dir})",
             f"  {'':<12}{'requests':>9}{'fail':>6}{'req/s':>8}{'pairs/s':>9}{'p50':>7}{'p95':>7}{'p99':>7}{'max':>7}  ms"]
    for r in result.rows:
        lines.append(f"  {r.label:<12}{r.requests:>9}{r.failures:>6}{r.rps:>8.1f}{r.pairs_per_s:>9.0f}"
                     f"{_fmt(r.p(50)):>7}{_fmt(r.p(95)):>7}{_fmt(r.p(99)):>7}{_fmt(r.percentiles.get('100%')):>7}")
    lines.append(format_cpu(result.cpu))
    lines.append(format_metrics(result.metrics))
    lines.append(format_checks(result.checks, result.locust_exit))
    return "\n".join(lines)


def format_checks(checks: Sequence[Check], locust_exit: int = 0) -> str:
    lines = [f"  {'gate':<28}{'target':>10}{'measured':>11}  result"]
    for c in checks:
        pct = c.metric == "failure rate"
        limit = f"{c.limit:.2%}" if pct else f"<= {c.limit:g}"
        value = f"{c.value:.2%}" if pct and c.value is not None else _fmt(c.value)
        lines.append(f"  {c.row + ' ' + c.metric:<28}{limit:>10}{value:>11}  {'PASS' if c.ok else 'FAIL'}")
    if locust_exit != 0:
        lines.append(f"  Locust exited with {locust_exit}: FAIL")
    ok = locust_exit == 0 and checks and all(c.ok for c in checks)
    missed = sum(not c.ok for c in checks)
    lines.append(f"  => {'PASS: every target met' if ok else f'FAIL: {missed} target(s) missed'}")
    return "\n".join(lines)


# --- CPU use: load generator vs server ---------------------------------------------------------------

def _clock_ticks() -> float:
    return float(os.sysconf("SC_CLK_TCK"))


def _proc_tree_cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) of a process and its live descendants (Triton's Python
    backend runs each model instance in its own stub process)."""
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        try:
            root = psutil.Process(pid)
            total = 0.0
            for p in [root, *root.children(recursive=True)]:
                try:
                    t = p.cpu_times()
                    total += t.user + t.system
                except psutil.NoSuchProcess:
                    pass
            return total
        except psutil.NoSuchProcess:
            return None
    # /proc fallback: parent links from /proc/<pid>/stat, fields 14 and 15 are utime, stime.
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                raw = (entry / "stat").read_text()
            except OSError:
                continue
            fields = raw[raw.rindex(")") + 2:].split()
            stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / _clock_ticks())
    if pid not in stats:
        return None
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        kids = [p for p, (ppid, _) in stats.items() if ppid == parent and p not in tree]
        tree.update(kids)
        frontier.extend(kids)
    return sum(stats[p][1] for p in tree)


def _machine_busy_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    total = sum(fields[:8])
    return (total - idle) / _clock_ticks(), total / _clock_ticks()


class CpuMeter:
    """Cores used during a run by the load generator (Locust, a waited-for child of this
    process), the server (tritonserver and its stub processes) and the whole machine."""

    def __init__(self, server_pid: int | None):
        self.server_pid = server_pid
        self.server0 = _proc_tree_cpu_s(server_pid) if server_pid else None
        self.children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.machine0 = _machine_busy_s()

    def stop(self, wall_s: float) -> dict:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        gen = (children.ru_utime - self.children0.ru_utime) + (children.ru_stime - self.children0.ru_stime)
        server = None
        if self.server_pid and self.server0 is not None:
            now = _proc_tree_cpu_s(self.server_pid)
            server = None if now is None else now - self.server0
        busy = _machine_busy_s()
        machine = (busy[0] - self.machine0[0])
        wall_s = max(wall_s, 1e-9)
        return {"cores": os.cpu_count(), "wall_s": round(wall_s, 2),
                "load_generator_cores": round(gen / wall_s, 2),
                "server_cores": None if server is None else round(server / wall_s, 2),
                "machine_busy_cores": round(machine / wall_s, 2)}


def format_cpu(cpu: dict) -> str:
    other = None
    if cpu.get("server_cores") is not None:
        other = cpu["machine_busy_cores"] - cpu["load_generator_cores"] - cpu["server_cores"]
    return (f"  CPU (cores busy, of {cpu['cores']}): load generator {cpu['load_generator_cores']:.2f}, "
            f"server {_fmt(cpu.get('server_cores'), 2)}, whole machine {cpu['machine_busy_cores']:.2f}"
            + ("" if other is None else f" (others {max(other, 0):.2f})"))


def find_server_pid(grpc_port: int) -> int | None:
    """The pid listening on the gRPC port (psutil; None when it cannot be told)."""
    try:
        import psutil

        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == grpc_port and conn.pid:
                return conn.pid
    except (ImportError, OSError, RuntimeError):
        pass
    return None


# --- Triton's Prometheus metrics ------------------------------------------------------------------

_SAMPLE = re.compile(r'^(nv_[a-z_]+)\{([^}]*)\}\s+([0-9.eE+-]+)')
_MODEL = re.compile(r'model="([^"]+)"')
COUNTERS = ("nv_inference_request_success", "nv_inference_request_failure", "nv_inference_count",
            "nv_inference_exec_count", "nv_inference_request_duration_us", "nv_inference_queue_duration_us",
            "nv_inference_compute_input_duration_us", "nv_inference_compute_infer_duration_us",
            "nv_inference_compute_output_duration_us")


def scrape_metrics(url: str) -> dict:
    """{(metric, model): value} of Triton's per-model counters (summed over versions); {} when
    the metrics port does not answer."""
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            text = reply.read().decode()
    except OSError:
        return {}
    return parse_metrics(text)


def parse_metrics(text: str) -> dict:
    values: dict = {}
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m and m.group(1) in COUNTERS:
            model = _MODEL.search(m.group(2))
            if model:
                key = (m.group(1), model.group(1))
                values[key] = values.get(key, 0.0) + float(m.group(3))
    return values


def summarize_metrics(before: dict, after: dict) -> dict:
    """Per model, over the run: requests, executions, rows per execution (the batch the dynamic
    batcher formed), requests per execution, and mean queue / compute / total ms per request."""
    if not after:
        return {}
    models = sorted({model for _, model in after})
    out = {}
    for model in models:
        d = {metric: after.get((metric, model), 0.0) - before.get((metric, model), 0.0) for metric in COUNTERS}
        requests = d["nv_inference_request_success"]
        execs = d["nv_inference_exec_count"]
        compute = (d["nv_inference_compute_input_duration_us"] + d["nv_inference_compute_infer_duration_us"]
                   + d["nv_inference_compute_output_duration_us"])
        per_req = (lambda us: round(us / requests / 1000, 2)) if requests else (lambda us: None)
        out[model] = {
            "requests": int(requests), "failures": int(d["nv_inference_request_failure"]),
            "executions": int(execs), "inferences": int(d["nv_inference_count"]),
            "rows_per_execution": round(d["nv_inference_count"] / execs, 1) if execs else None,
            "requests_per_execution": round(requests / execs, 2) if execs else None,
            "queue_ms": per_req(d["nv_inference_queue_duration_us"]),
            "compute_ms": per_req(compute),
            "request_ms": per_req(d["nv_inference_request_duration_us"]),
        }
    return out


def format_metrics(metrics: dict) -> str:
    if not metrics:
        return "  Triton metrics: metrics port did not answer"
    lines = ["  Triton metrics over the run (per request means; rows = candidate pairs):",
             f"  {'model':<11}{'requests':>9}{'fail':>6}{'execs':>7}{'rows/exec':>10}{'req/exec':>9}"
             f"{'queue ms':>9}{'compute ms':>11}{'total ms':>9}"]
    for model, m in metrics.items():
        lines.append(f"  {model:<11}{m['requests']:>9}{m['failures']:>6}{m['executions']:>7}"
                     f"{_fmt(m['rows_per_execution'], 1):>10}{_fmt(m['requests_per_execution'], 2):>9}"
                     f"{_fmt(m['queue_ms'], 2):>9}{_fmt(m['compute_ms'], 2):>11}{_fmt(m['request_ms'], 2):>9}")
    return "\n".join(lines)


# --- Server: use the running one or start one from the repository ----------------------------------

@contextmanager
def ensure_server(endpoints, repo: Path = config.MODEL_REPOSITORY, run_dir: Path | None = None,
                  log_path: Path | None = None) -> Iterator[int | None]:
    """Yields the server's pid (None if unknown). Starts tritonserver from `repo` when nothing
    answers on the endpoints, and stops it afterwards."""
    from . import server as srv

    if srv.is_ready(endpoints):
        yield find_server_pid(endpoints.grpc_port)
        return
    repo = Path(repo)
    if not (repo / config.RANKER_MODEL / "config.pbtxt").exists():
        raise FileNotFoundError(f"no server on {endpoints.http} and no generated model repository in {repo}: "
                                "run `make repository` (or `make serve`) first")
    run_dir = Path(run_dir or config.RUN_DIR / "loadtest")
    log_path = Path(log_path or run_dir / "tritonserver.log")
    print(f"no server on {endpoints.http}: starting tritonserver from {repo} (log {log_path})", flush=True)
    started = time.time()
    proc = srv.start(repo, endpoints, log_path=log_path, run_dir=run_dir)
    print(f"tritonserver ready in {time.time() - started:.1f} s (pid {proc.pid})", flush=True)
    try:
        yield proc.pid
    finally:
        srv.stop_process(proc)
        print("tritonserver stopped", flush=True)


def warm_up(endpoints, profile: Profile, pool: RequestPool, requests: int = 4) -> None:
    """A few requests per protocol before measuring, so the first engine calls of each shape and
    the clients' connections are not in the measured tail."""
    from .client import RankClient

    rng = random.Random(0)
    for protocol in profile.protocols:
        url = endpoints.grpc if protocol == "grpc" else endpoints.http
        with RankClient(url, protocol) as client:
            for _ in range(requests):
                query, candidates = pool.draw(rng)
                client.infer_raw(query, candidates, profile.top_k)


# --- Capacity ------------------------------------------------------------------------------------

def run_capacity(profile: Profile, endpoints, out_dir: Path, server_pid: int | None = None) -> dict:
    """Step users up (profile.capacity_users, step_run_time_s each) until p95 or the failure
    rate breaks the profile's targets; the highest step that met them is the capacity."""
    gate = Targets(p95_ms=profile.targets.p95_ms, max_failure_rate=profile.targets.max_failure_rate)
    steps, best = [], None
    for users in profile.capacity_users:
        step = replace(profile, users=users, spawn_rate=max(profile.spawn_rate, users), targets=gate,
                       run_time_s=profile.capacity_step_s)
        result = run_locust(step, endpoints, out_dir, name=f"{profile.name}-capacity/u{users:03d}",
                            server_pid=server_pid, echo=False)
        total = result.total
        steps.append({"users": users, "passed": result.passed, "requests": total.requests,
                      "failures": total.failures, "rps": round(total.rps, 2),
                      "pairs_per_s": round(total.pairs_per_s, 1), "p50_ms": total.p(50), "p95_ms": total.p(95),
                      "p99_ms": total.p(99), "cpu": result.cpu,
                      "ranker_rows_per_execution": result.metrics.get(config.RANKER_MODEL, {}).get("rows_per_execution")})
        print(f"  capacity step {users:>3} users: {total.rps:6.1f} req/s, {total.pairs_per_s:7.0f} pairs/s, "
              f"p95 {_fmt(total.p(95))} ms, failures {total.failures}, "
              f"server {_fmt(result.cpu.get('server_cores'), 2)} / Locust {result.cpu['load_generator_cores']:.2f} cores"
              f" -> {'meets' if result.passed else 'BREAKS'} p95 <= {gate.p95_ms:g} ms", flush=True)
        if not result.passed:
            break
        if best is None or total.rps > best["rps"]:
            best = steps[-1]
    summary = {"profile": profile.name, "p95_target_ms": gate.p95_ms, "max_failure_rate": gate.max_failure_rate,
               "candidates": profile.candidates.spec, "top_k": profile.top_k, "step_run_time_s": profile.capacity_step_s,
               "steps": steps, "capacity": best}
    path = Path(out_dir) / f"{profile.name}-capacity" / "capacity.json"
    path.write_text(json.dumps(summary, indent=2) + "\n")
    if best:
        print(f"=> capacity ({profile.name}): {best['rps']:.1f} requests/s = {best['pairs_per_s']:.0f} candidate "
              f"pairs/s at {best['users']} users with p95 {_fmt(best['p95_ms'])} ms <= {gate.p95_ms:g} ms  ({path})")
    else:
        print(f"=> capacity ({profile.name}): not even {profile.capacity_users[0]} user(s) met p95 <= {gate.p95_ms:g} ms")
    return summary


# --- perf_analyzer ----------------------------------------------------------------------------------

def perf_input_data(pool: RequestPool, top_k: int, count: int = 64, seed: int = config.SEED) -> dict:
    """perf_analyzer's --input-data JSON: `count` real requests, each with its own shape."""
    rng = random.Random(seed)
    entries = []
    for _ in range(count):
        query, candidates = pool.draw(rng)
        entries.append({config.QUERY: {"content": [query], "shape": [1]},
                        config.CANDIDATES: {"content": candidates, "shape": [len(candidates)]},
                        config.TOP_K: {"content": [top_k], "shape": [1]}})
    return {"data": entries}


def _tools_perf_analyzer(tools: Path) -> list[str] | None:
    binary = tools / "perf_analyzer" / "perf_analyzer" / "bin" / "perf_analyzer"
    if not binary.exists():
        return None
    loader = next(iter(sorted((tools / "glibc").glob("usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"))), None)
    if loader is None:
        return [str(binary)]
    libdir = loader.parent
    return [str(loader), "--library-path", os.pathsep.join([str(libdir), "/usr/lib/x86_64-linux-gnu",
                                                             "/lib/x86_64-linux-gnu"]), str(binary)]


def perf_analyzer_command(tools: Path = TOOLS_DIR) -> list[str]:
    """perf_analyzer as an argv prefix: $SHOPRANK_PERF_ANALYZER (a command line), else the one
    `install-perf-analyzer` put under artifacts/tools, else the perf-analyzer package's binary
    (its console script drops the exit code), else perf_analyzer on PATH."""
    if os.environ.get("SHOPRANK_PERF_ANALYZER"):
        return shlex.split(os.environ["SHOPRANK_PERF_ANALYZER"])
    found = _tools_perf_analyzer(Path(tools))
    if found:
        return found
    try:
        import perf_analyzer as package

        binary = Path(package.__file__).parent / "bin" / "perf_analyzer"
        if binary.exists():
            return [str(binary)]
    except ImportError:
        pass
    on_path = shutil.which("perf_analyzer")
    if on_path:
        return [on_path]
    raise FileNotFoundError("perf_analyzer not found: run `make perf-tools` (python loadtests/run.py "
                            "install-perf-analyzer), or set SHOPRANK_PERF_ANALYZER to its command")


def _runs(command: list[str]) -> tuple[bool, str]:
    try:
        proc = subprocess.run([*command, "--help"], capture_output=True, text=True, timeout=30)
    except OSError as exc:
        return False, str(exc)
    text = proc.stdout + proc.stderr
    return ("not found (required by" not in text and "cannot execute" not in text), text


def install_perf_analyzer(tools: Path = TOOLS_DIR) -> list[str]:
    """perf-analyzer from PyPI into tools/perf_analyzer (not the venv: its wheels are tagged
    manylinux_2_38 and pip refuses them on an older glibc), plus, when the binary cannot load
    here, Debian 13's loader and C/C++ runtime unpacked into tools/glibc (apt-get download
    with a private state folder; the system's packages and sources are not touched)."""
    tools = Path(tools).resolve()  # apt-get runs in another folder
    target = tools / "perf_analyzer"
    if not (target / "perf_analyzer" / "bin" / "perf_analyzer").exists():
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        "--no-deps", "--only-binary=:all:", "--platform", PERF_ANALYZER_PLATFORM,
                        "--target", str(target), PERF_ANALYZER_PIN], check=True)
    binary = target / "perf_analyzer" / "bin" / "perf_analyzer"
    binary.chmod(0o755)
    ok, text = _runs([str(binary)])
    if not ok and not (tools / "glibc" / "usr" / "lib" / "x86_64-linux-gnu" / "ld-linux-x86-64.so.2").exists():
        print(f"perf_analyzer cannot load with this system's C library:\n  "
              + "\n  ".join(line for line in text.splitlines() if "not found" in line)
              + f"\nunpacking {', '.join(SIDE_GLIBC_PACKAGES)} from Debian {SIDE_GLIBC_SUITE} into {tools / 'glibc'}")
        _side_load_glibc(tools)
    command = _tools_perf_analyzer(tools)
    ok, text = _runs(command)
    if not ok:
        raise RuntimeError(f"perf_analyzer still does not run: {shlex.join(command)}\n{text[-2000:]}")
    print(f"perf_analyzer ready: {shlex.join(command)}")
    return command


def _side_load_glibc(tools: Path) -> None:
    if not shutil.which("apt-get") or not shutil.which("dpkg-deb"):
        raise RuntimeError("perf_analyzer needs glibc >= 2.38 and GCC 13's libstdc++; this system has older "
                           "ones and no apt-get to fetch newer ones beside it: run it on a newer system")
    state = tools / "apt"
    (state / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (state / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    (state / "sources").mkdir(parents=True, exist_ok=True)
    (state / "sources" / f"{SIDE_GLIBC_SUITE}.sources").write_text(
        f"Types: deb\nURIs: http://deb.debian.org/debian\nSuites: {SIDE_GLIBC_SUITE}\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n")
    options = [f"-oDir::Etc::SourceList=/dev/null", f"-oDir::Etc::SourceParts={state / 'sources'}",
               f"-oDir::State::Lists={state / 'lists'}", f"-oDir::Cache={state / 'cache'}",
               "-oAPT::Sandbox::User=root"]
    subprocess.run(["apt-get", *options, "-qq", "update"], check=True)
    debs = state / "debs"
    debs.mkdir(exist_ok=True)
    subprocess.run(["apt-get", *options, "-qq", "download", *SIDE_GLIBC_PACKAGES], check=True, cwd=debs)
    for deb in sorted(debs.glob("*.deb")):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(tools / "glibc")], check=True)
    shutil.rmtree(state)  # package lists and .debs: 20+ MB no longer needed


def _float(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def read_perf_csv(path: Path) -> dict:
    """The row of a perf_analyzer -f CSV (one concurrency): client latencies and the server's
    queue/compute split, in ms."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path}: perf_analyzer wrote no measurement")
    r = rows[0]
    us = lambda key: None if _float(r.get(key)) is None else round(float(r[key]) / 1000, 2)
    return {"concurrency": int(float(r["Concurrency"])), "infer_per_s": _float(r.get("Inferences/Second")),
            "client_send_ms": us("Client Send"), "network_server_ms": us("Network+Server Send/Recv"),
            "server_queue_ms": us("Server Queue"), "server_compute_input_ms": us("Server Compute Input"),
            "server_compute_infer_ms": us("Server Compute Infer"),
            "server_compute_output_ms": us("Server Compute Output"), "client_recv_ms": us("Client Recv"),
            "p50_ms": us("p50 latency"), "p90_ms": us("p90 latency"), "p95_ms": us("p95 latency"),
            "p99_ms": us("p99 latency")}


_PA_MODEL = re.compile(r"^\s*([\w.-]+), version: \d+\s*$")
_PA_COUNT = re.compile(r"^\s*(Inference count|Execution count|Successful request count):\s*(\d+)")
_PA_LATENCY = re.compile(r"^\s*Avg request latency:\s*(\d+) usec \((.*)\)")
_PA_PART = re.compile(r"([a-z ]+?) (\d+) usec")


def parse_perf_verbose(text: str) -> dict:
    """The server side of perf_analyzer -v output, per model (the ensemble first, then each
    composing model): requests, executions, rows per execution and the mean latency split
    (overhead, queue, compute input / infer / output) in ms."""
    out: dict = {}
    model = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("Server:"):
            model = config.ENSEMBLE_MODEL
        elif stripped.startswith("Client:") or stripped.startswith("Inferences/Second vs."):
            model = None
        elif (m := _PA_MODEL.match(line)) and model is not None:
            model = m.group(1)
        elif model is not None and (m := _PA_COUNT.match(line)):
            key = {"Inference count": "inferences", "Execution count": "executions",
                   "Successful request count": "requests"}[m.group(1)]
            out.setdefault(model, {})[key] = int(m.group(2))
        elif model is not None and (m := _PA_LATENCY.match(line)):
            entry = out.setdefault(model, {})
            entry["request_ms"] = round(int(m.group(1)) / 1000, 2)
            for part, us in _PA_PART.findall(m.group(2)):
                entry[part.strip(" +").replace(" ", "_") + "_ms"] = round(int(us) / 1000, 2)
    for entry in out.values():
        if entry.get("executions"):
            entry["rows_per_execution"] = round(entry.get("inferences", 0) / entry["executions"], 1)
    return out


def run_perf(endpoints, pool: RequestPool, top_k: int, concurrency: Sequence[int], out_dir: Path,
             measurement_ms: int = 5000, stability_pct: float = PERF_STABILITY_PCT, max_trials: int = 10,
             command: list[str] | None = None) -> dict:
    """perf_analyzer on the `rank` ensemble over gRPC, one run per concurrency, with real
    requests from the data; CSV, -v log and a summary under out_dir/perf/. A concurrency whose
    measurement does not settle is reported as failed and the sweep goes on."""
    command = command or perf_analyzer_command()
    perf_dir = Path(out_dir).resolve() / "perf"
    if perf_dir.exists():
        shutil.rmtree(perf_dir)
    perf_dir.mkdir(parents=True)
    input_json = perf_dir / "input_data.json"
    input_json.write_text(json.dumps(perf_input_data(pool, top_k)))
    results, failed = [], []
    for c in concurrency:
        csv_path, log_path = perf_dir / f"c{c}.csv", perf_dir / f"c{c}.log"
        argv = [*command, "-m", config.ENSEMBLE_MODEL, "-u", endpoints.grpc, "-i", "grpc",
                "--input-data", str(input_json), "--concurrency-range", str(c),
                "--measurement-interval", str(measurement_ms), "--max-trials", str(max_trials),
                "--stability-percentage", str(stability_pct), "-f", str(csv_path), "--verbose-csv", "-v"]
        proc = subprocess.run(argv, capture_output=True, text=True,
                              timeout=60 + (max_trials + 2) * measurement_ms / 1000)
        log_path.write_text(shlex.join(argv) + "\n\n" + proc.stdout + proc.stderr)
        if proc.returncode != 0 or not csv_path.exists():
            reason = next((line.strip() for line in (proc.stdout + proc.stderr).splitlines()
                           if "Failed" in line or "error" in line.lower()), f"exit {proc.returncode}")
            print(f"  perf_analyzer at concurrency {c} failed: {reason} (log {log_path})", flush=True)
            failed.append({"concurrency": c, "reason": reason, "log": str(log_path)})
            continue
        row = read_perf_csv(csv_path)
        row["server"] = parse_perf_verbose(proc.stdout)
        results.append(row)
        print(f"  perf_analyzer at concurrency {c}: {_fmt(row['infer_per_s'], 1)} infer/s, "
              f"p50 {_fmt(row['p50_ms'], 1)} ms", flush=True)
    summary = {"model": config.ENSEMBLE_MODEL, "protocol": "grpc", "candidates": pool.candidates.spec,
               "top_k": top_k, "input_data": str(input_json), "measurement_ms": measurement_ms,
               "stability_percentage": stability_pct, "results": results, "failed": failed}
    (perf_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(format_perf(summary))
    return summary


def format_perf(summary: dict) -> str:
    lines = [f"\nperf_analyzer: `{summary['model']}` over {summary['protocol']}, candidates {summary['candidates']}, "
             f"TOP_K {summary['top_k']}; client latency and the server's mean split per request (ms)",
             f"  {'conc':>4} {'model':<10}{'infer/s':>8}{'p50':>7}{'p95':>7}{'p99':>7}{'requests':>9}{'rows/exec':>10}"
             f"{'queue':>9}{'compute':>9}{'total':>9}"]
    for r in summary["results"]:
        head = (f"  {r['concurrency']:>4} {'client':<10}{_fmt(r['infer_per_s'], 1):>8}{_fmt(r['p50_ms'], 1):>7}"
                f"{_fmt(r['p95_ms'], 1):>7}{_fmt(r['p99_ms'], 1):>7}")
        lines.append(head)
        for model, m in r.get("server", {}).items():
            compute = m.get("compute_ms", sum(m.get(k, 0) for k in ("compute_input_ms", "compute_infer_ms",
                                                                       "compute_output_ms")))
            lines.append(f"  {'':>4} {model:<10}{'':>29}{m.get('requests', 0):>9}{_fmt(m.get('rows_per_execution'), 1):>10}"
                         f"{_fmt(m.get('queue_ms'), 1):>9}{compute:>9.1f}{_fmt(m.get('request_ms'), 1):>9}")
    for f in summary.get("failed", []):
        lines.append(f"  {f['concurrency']:>4} no stable measurement: {f['reason']}")
    return "\n".join(lines)


# --- Command line (loadtests/run.py) -------------------------------------------------------------------

def _endpoints(args):
    from .server import Endpoints

    return Endpoints(args.host, args.http_port, args.grpc_port, args.metrics_port)


def _add_server_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=config.HOST)
    parser.add_argument("--http-port", type=int, default=config.HTTP_PORT)
    parser.add_argument("--grpc-port", type=int, default=config.GRPC_PORT)
    parser.add_argument("--metrics-port", type=int, default=config.METRICS_PORT)
    parser.add_argument("--repo", default=str(config.MODEL_REPOSITORY),
                        help="model repository to start a server from when none is running")
    parser.add_argument("--run-dir", default=None, help="run folder for a self-started server")
    parser.add_argument("--out", default=str(REPORTS), help="reports folder")
    parser.add_argument("--targets", default=str(TARGETS_FILE))
    parser.add_argument("--profile", default="cpu")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Load tests for the rank ensemble (see shoprank/loadtest.py)")
    sub = parser.add_subparsers(dest="command", required=True)
    lt = sub.add_parser("loadtest", help="Locust run gated on the profile's targets (exit 1 on a miss)")
    _add_server_args(lt)
    lt.add_argument("--capacity", action="store_true", help="step users up until p95 breaks")
    lt.add_argument("--users", type=int)
    lt.add_argument("--run-time", type=float, help="seconds")
    lt.add_argument("--candidates", help="'uniform:MIN:MAX' or 'fixed:N'")
    for q in (50, 95, 99):
        lt.add_argument(f"--p{q}-ms", type=float, help=f"override the profile's p{q} target")
    lt.add_argument("--max-failure-rate", type=float)
    lt.add_argument("--name", help="report folder name (default: the profile's)")
    pa = sub.add_parser("perf", help="perf_analyzer concurrency sweep with server-side breakdown")
    _add_server_args(pa)
    pa.add_argument("--concurrency", default="1,2,4,8")
    pa.add_argument("--measurement-ms", type=int, default=5000)
    pa.add_argument("--stability-percentage", type=float, default=PERF_STABILITY_PCT)
    pa.add_argument("--max-trials", type=int, default=10)
    pa.add_argument("--candidates", help="'uniform:MIN:MAX' or 'fixed:N'")
    pa.add_argument("--tools", default=str(TOOLS_DIR), help="where install-perf-analyzer put it")
    inst = sub.add_parser("install-perf-analyzer", help=f"{PERF_ANALYZER_PIN} into {TOOLS_DIR}")
    inst.add_argument("--tools", default=str(TOOLS_DIR))
    args = parser.parse_args(argv)

    if args.command == "install-perf-analyzer":
        install_perf_analyzer(Path(args.tools))
        return 0
    try:
        profile = load_profile(args.profile, args.targets)
        if args.candidates:
            profile = replace(profile, candidates=Candidates.parse(args.candidates))
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    endpoints = _endpoints(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.command == "perf":
        try:
            command = perf_analyzer_command(Path(args.tools))  # before starting a server: fail fast
        except FileNotFoundError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    else:
        overrides = {f"p{q}_ms": getattr(args, f"p{q}_ms") for q in (50, 95, 99)}
        overrides["max_failure_rate"] = args.max_failure_rate
        overrides = {k: v for k, v in overrides.items() if v is not None}
        profile = replace(profile, targets=replace(profile.targets, **overrides),
                          run_time_s=args.run_time or profile.run_time_s)
        if args.users:
            profile = replace(profile, users=args.users, spawn_rate=max(profile.spawn_rate, args.users))
    pool = RequestPool.from_spec(profile.data, profile.candidates)
    run_dir = Path(args.run_dir) if args.run_dir else None
    try:
        with ensure_server(endpoints, Path(args.repo), run_dir,
                           out / "tritonserver.log" if run_dir is None else None) as pid:
            warm_up(endpoints, profile, pool)
            if args.command == "perf":
                concurrency = [int(c) for c in str(args.concurrency).split(",") if c.strip()]
                summary = run_perf(endpoints, pool, profile.top_k, concurrency, out, args.measurement_ms,
                                   args.stability_percentage, args.max_trials, command)
                return 1 if summary["failed"] else 0
            if args.capacity:
                summary = run_capacity(profile, endpoints, out, pid)
                return 0 if summary["capacity"] else 1
            result = run_locust(profile, endpoints, out, name=args.name, server_pid=pid)
    except FileNotFoundError as exc:  # no server and no repository to start one from
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0 if result.passed else 1
