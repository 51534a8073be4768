"""`make replicas N=2`: N tritonserver replicas of one model repository behind HAProxy on this
host, measured under a Locust load (shoprank.measure.loadtest):

  * the load balancer's own cost: rank-50 p50 straight to a replica and through HAProxy, one
    request at a time, interleaved;
  * throughput with 1 replica in rotation and with all N (on 2 cores more replicas share the
    same cores: they add no throughput, and this says so with numbers);
  * a rolling model update replica by replica under load: drain it in HAProxy, wait for its
    in-flight requests, load the new ranker version through the admin-keyed model control, wait
    for readiness, put it back, next; Locust must see 0 failed requests;
  * one replica killed (SIGKILL, its whole process group) under load: failed requests against
    the requests in flight at that moment, and how long until HAProxy's health check took it out.
"""
from __future__ import annotations

import json
import os
import random
import signal
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from .. import config
from ..data.requests import RequestPool
from ..measure.loadtest.locust import RunResult, run_locust
from ..measure.loadtest.overload import OVERLOADED_MARKS
from ..measure.loadtest.profiles import Candidates, Profile, Targets
from ..measure.loadtest.server_stats import _proc_tree_cpu_s
from ..online.activate import activate, base_probe
from ..serving.client import RankClient
from ..serving.server import Endpoints, RunningServer, free_ports, run_triton, wait_ready
from ..serving.supervisor import remove_shm_regions, stubs
from ..serving.triton.versions import publish_version, versions
from .haproxy import CHECK_FALL, CHECK_INTERVAL_MS, Backend, HAProxy

REPORT_JSON = config.REPORTS_DIR / "replicas.json"
REPORT_MD = config.REPORTS_DIR / "replicas.md"
DOC = config.PROJECT_ROOT / "docs" / "kubernetes.md"  # its measured section comes from the report
DOC_BEGIN, DOC_END = "<!-- replicas:begin", "<!-- replicas:end -->"
WORKLOAD = config.RANK50  # candidates per request in every measurement here


@dataclass
class Cluster:
    servers: list[RunningServer]
    lb: HAProxy
    endpoints: Endpoints  # HAProxy's (metrics: the first replica's)

    def name(self, i: int) -> str:
        return f"r{i}"


@contextmanager
def run_replicas(repo: str | Path, n: int, work_dir: str | Path, interval_ms: int = CHECK_INTERVAL_MS,
                 lb_ports: tuple[int, int] | None = None) -> Iterator[Cluster]:
    """N tritonservers serving `repo` (each on its own free ports, its own admin key) and HAProxy in
    front of them; everything stopped when the block ends."""
    if n < 1:
        raise ValueError(f"replicas must be >= 1, got {n}")
    work_dir = Path(work_dir)
    with ExitStack() as stack:
        servers = []
        for i in range(n):  # one after the other: model loading is CPU-bound
            servers.append(stack.enter_context(run_triton(repo, work_dir=work_dir / f"r{i}")))
        backends = [Backend(f"r{i}", s.endpoints.http_port, s.endpoints.grpc_port) for i, s in enumerate(servers)]
        http, grpc = lb_ports or free_ports(2)
        lb = stack.enter_context(HAProxy(backends, http, grpc, work_dir / "haproxy", interval_ms))
        yield Cluster(servers, lb, Endpoints("127.0.0.1", http, grpc, servers[0].endpoints.metrics_port))


def kill_replica(server: RunningServer) -> float:
    """SIGKILL the replica's whole process group (server and Python stubs), as a lost node;
    returns the moment. Its shared-memory regions are removed afterwards."""
    regions = [s.shm_region for s in stubs(server.pid)]
    killed_at = time.time()
    with suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGKILL)
    time.sleep(0.5)
    remove_shm_regions(regions)
    return killed_at


def _profile(name: str, users: int, seconds: float, protocols=("grpc", "http")) -> Profile:
    return Profile(name=name, users=users, spawn_rate=users, run_time_s=seconds, targets=Targets(max_failure_rate=0.0),
                   candidates=Candidates(WORKLOAD, WORKLOAD), protocols=tuple(protocols), top_k=10)


def _row(result: RunResult) -> dict:
    total = result.total
    return {"requests": total.requests, "failures": total.failures, "rps": round(total.rps, 2),
            "p50_ms": total.p(50), "p99_ms": total.p(99),
            "by_protocol": {r.type: {"requests": r.requests, "failures": r.failures} for r in result.rows[:-1]}}


def _server_cpu_s(cluster: Cluster) -> float:
    return sum(_proc_tree_cpu_s(s.pid) or 0.0 for s in cluster.servers)


# --- measurements ---------------------------------------------------------------------------------------
def lb_cost(cluster: Cluster, pool: RequestPool, requests: int = 150) -> dict:
    """rank-50 latency one request at a time, straight to replica r0 and through HAProxy with only
    r0 in rotation, interleaved (same requests, same replica), per protocol."""
    for i in range(1, len(cluster.servers)):
        cluster.lb.set_state(cluster.name(i), "maint")
    rng = random.Random(config.SEED)
    drawn = [pool.draw(rng, WORKLOAD) for _ in range(requests)]
    result = {}
    try:
        for protocol in ("grpc", "http"):
            direct_ep = cluster.servers[0].endpoints
            urls = {"direct": direct_ep.grpc if protocol == "grpc" else direct_ep.http,
                    "haproxy": cluster.endpoints.grpc if protocol == "grpc" else cluster.endpoints.http}
            times = {"direct": [], "haproxy": []}
            with RankClient(urls["direct"], protocol) as direct, RankClient(urls["haproxy"], protocol) as via:
                clients = {"direct": direct, "haproxy": via}
                for query, texts in drawn[:5]:  # warm both paths
                    direct.infer_raw(query, texts, 10)
                    via.infer_raw(query, texts, 10)
                for k, (query, texts) in enumerate(drawn):
                    order = ("direct", "haproxy") if k % 2 == 0 else ("haproxy", "direct")
                    for path in order:
                        started = time.perf_counter()
                        clients[path].infer_raw(query, texts, 10)
                        times[path].append((time.perf_counter() - started) * 1e3)
            p50 = {k: statistics.median(v) for k, v in times.items()}
            result[protocol] = {"direct_p50_ms": round(p50["direct"], 2), "haproxy_p50_ms": round(p50["haproxy"], 2),
                                "added_ms": round(p50["haproxy"] - p50["direct"], 2), "requests": requests}
    finally:
        for i in range(1, len(cluster.servers)):
            cluster.lb.set_state(cluster.name(i), "ready")
        for i in range(1, len(cluster.servers)):
            cluster.lb.wait_status(cluster.name(i), "UP")
    return result


def throughput(cluster: Cluster, out_dir: Path, users: int, seconds: float) -> dict:
    """Closed-loop rank-50 load through HAProxy with 1 replica in rotation, then all of them."""
    result = {}
    for in_rotation in sorted({1, len(cluster.servers)}):
        for i in range(in_rotation, len(cluster.servers)):
            cluster.lb.set_state(cluster.name(i), "maint")
        cpu0 = _server_cpu_s(cluster)
        run = run_locust(_profile(f"throughput-{in_rotation}", users, seconds), cluster.endpoints, out_dir, echo=False)
        cpu = _server_cpu_s(cluster) - cpu0
        for i in range(in_rotation, len(cluster.servers)):
            cluster.lb.set_state(cluster.name(i), "ready")
            cluster.lb.wait_status(cluster.name(i), "UP")
        row = _row(run)
        row["server_core_s_per_1000"] = round(1000 * cpu / max(row["requests"], 1), 1)
        row["machine_busy_cores"] = run.cpu.get("machine_busy_cores")
        row["load_generator_cores"] = run.cpu.get("load_generator_cores")
        result[str(in_rotation)] = row
    return result


def _with_load(cluster: Cluster, out_dir: Path, name: str, users: int, seconds: float, request_log: Path,
               action, start_after_s: float) -> tuple[RunResult, object]:
    """Run Locust through HAProxy in a thread; `action()` starts `start_after_s` into the load."""
    request_log.unlink(missing_ok=True)
    box: dict = {}

    def load():
        box["run"] = run_locust(_profile(name, users, seconds), cluster.endpoints, out_dir, echo=False,
                                options=["--request-log", str(request_log)])

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    deadline = time.time() + 60
    while time.time() < deadline and _logged(request_log) < users:  # Locust is up and sending
        time.sleep(0.1)
    time.sleep(start_after_s)
    window = {"action_start": time.time()}
    try:
        outcome = action()
    finally:
        window["action_end"] = time.time()
        thread.join()
    if "run" not in box:
        raise RuntimeError(f"the {name} load test did not finish; see {out_dir / name}")
    calls = _calls(request_log)
    window["load_start"] = min((c["start"] for c in calls), default=None)
    window["load_end"] = max((c["t"] for c in calls), default=None)
    window["action_under_load"] = bool(calls) and window["load_start"] <= window["action_start"] \
        and window["action_end"] <= window["load_end"]
    box["run"].extra["window"] = window
    return box["run"], outcome


def _overloaded(call: dict) -> bool:
    """A request the server refused as overloaded (its bounded queues: docs/reliability.md)."""
    return not call["ok"] and any(mark in call.get("error", "") for mark in OVERLOADED_MARKS)


def _logged(path: Path) -> int:
    try:
        with open(path) as f:
            return sum(1 for _ in f)
    except OSError:
        return 0


def _calls(path: Path) -> list[dict]:
    """Locust's request log (locustfile --request-log): one dict per call, with its start time."""
    calls = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    for c in calls:
        c["start"] = c["t"] - c["ms"] / 1e3
    return calls


def rolling_update(cluster: Cluster, repo: Path, engine: Path, model_dir: Path, out_dir: Path, users: int,
                   seconds: float) -> dict:
    """Publish the next ranker version into the shared repository, then replica by replica: drain,
    wait for its in-flight requests, load the version (admin key), ready, re-enable; under load."""
    version = publish_version(repo, engine, model_dir, meta={"by": "make replicas (rolling update)"})
    probe = base_probe(model_dir)

    def update():
        steps = []
        for i, server in enumerate(cluster.servers):
            name, started = cluster.name(i), time.time()
            before = cluster.lb.totals()
            cluster.lb.set_state(name, "drain")
            idle_s = cluster.lb.wait_idle(name)
            checks = activate(server.endpoints.grpc, version, probe=probe, admin_key=server.admin_key)
            wait_ready(server.endpoints)
            cluster.lb.set_state(name, "ready")
            cluster.lb.wait_status(name, "UP")
            after = cluster.lb.totals()
            sent_while_out = sum(after[k] - before[k] for k in after if k[1] == name)
            steps.append({"replica": name, "drain_wait_s": round(idle_s, 2), "load_s": checks.get("seconds"),
                          "out_of_rotation_s": round(time.time() - started, 2),
                          "requests_sent_to_it_meanwhile": sent_while_out})
            time.sleep(1.0)  # let it take traffic before the next one leaves
        return steps

    log = out_dir / "rolling-update.requests.jsonl"
    # While one replica is out, the others carry the load: give them one they can (in Kubernetes,
    # maxSurge: 1 starts a new pod before an old one leaves instead).
    users = max(1, users * (len(cluster.servers) - 1) // len(cluster.servers))
    run, steps = _with_load(cluster, out_dir, "rolling-update", users, seconds, log, update, start_after_s=2)
    calls = _calls(log)
    served = {}
    for i, server in enumerate(cluster.servers):
        with RankClient(server.endpoints.grpc, "grpc") as client:
            served[cluster.name(i)] = client.ranker_version()
    return {"version": version, "versions_in_repository": versions(repo), "steps": steps,
            "ranker_version_served": served, "load": _row(run), "users": users,
            "refused_overloaded": sum(map(_overloaded, calls)),
            "errors": sorted({c.get("error", "")[:120] for c in calls if not c["ok"]}),
            "under_load": run.extra["window"]["action_under_load"]}


def kill_one(cluster: Cluster, out_dir: Path, users: int, seconds: float) -> dict:
    """SIGKILL the last replica under load; failed requests vs those in flight at that moment,
    and how long until HAProxy marked it DOWN."""
    victim = len(cluster.servers) - 1
    name = cluster.name(victim)
    state: dict = {}

    def kill():
        deadline = time.time() + 10  # kill while the victim has requests in flight, when it can be seen
        while time.time() < deadline and not any(
                s["current"] for s in cluster.lb.servers() if s["server"] == name):
            time.sleep(0.01)
        state["on_victim"] = sum(s["current"] for s in cluster.lb.servers() if s["server"] == name)
        state["killed_at"] = kill_replica(cluster.servers[victim])
        cluster.lb.wait_status(name, "DOWN", timeout=10)
        state["down_after_s"] = time.time() - state["killed_at"]
        return state

    log = out_dir / "kill.requests.jsonl"
    run, _ = _with_load(cluster, out_dir, "kill-one", users, seconds, log, kill, start_after_s=2)
    calls = _calls(log)
    killed_at = state["killed_at"]
    in_flight = [c for c in calls if c["start"] <= killed_at <= c["t"]]
    refused = [c for c in calls if _overloaded(c)]
    failed = [c for c in calls if not c["ok"] and not _overloaded(c)]
    failed_in_flight = [c for c in failed if c["start"] <= killed_at]
    return {"replica": name, "health_check": {"interval_ms": CHECK_INTERVAL_MS, "fall": CHECK_FALL},
            "marked_down_after_s": round(state["down_after_s"], 3), "requests": len(calls),
            "in_flight_at_kill": len(in_flight), "in_flight_on_killed_replica": state["on_victim"],
            "failed": len(failed), "refused_overloaded": len(refused),
            "failed_that_were_in_flight": len(failed_in_flight),
            "failed_sent_after_kill": len(failed) - len(failed_in_flight),
            "last_failure_after_kill_s": round(max((c["t"] for c in failed), default=killed_at) - killed_at, 3),
            "succeeded_after_kill": sum(c["ok"] and c["start"] > killed_at for c in calls),
            "errors": sorted({c.get("error", "")[:120] for c in failed + refused}), "load": _row(run),
            "under_load": run.extra["window"]["action_under_load"]}



# --- the whole run and its report ---------------------------------------------------------------------
def measure(model_dir: Path, engine: Path, next_engine: Path, n: int, work_dir: Path, users: int = 4,
            seconds: float = 60.0, throughput_s: float = 20.0, kill_s: float = 20.0) -> dict:
    """Everything above on a repository built for the run (the project's model_repository is not
    touched): `engine` serves as version 1, `next_engine` is rolled out as version 2."""
    from ..serving.triton.repository import build_repository

    work_dir = Path(work_dir)
    repo = build_repository(model_dir, engine, work_dir / "model_repository", target="python")
    out_dir = work_dir / "loadtest"
    pool = RequestPool.from_spec("auto")
    started = time.time()
    with run_replicas(repo, n, work_dir) as cluster:
        report = {"replicas": n, "cores": os.cpu_count(), "users": users, "seconds": seconds,
                  "workload": f"rank-{WORKLOAD}, top 10, gRPC and HTTP users", "model": str(model_dir),
                  "engine": str(engine), "next_engine": str(next_engine),
                  "load_average_before": os.getloadavg()[0]}
        report["lb_cost"] = lb_cost(cluster, pool)
        report["throughput"] = throughput(cluster, out_dir, users, throughput_s)
        report["rolling_update"] = rolling_update(cluster, repo, next_engine, model_dir, out_dir, users, seconds)
        report["kill"] = kill_one(cluster, out_dir, users, kill_s) if n > 1 else None
    report["wall_s"] = round(time.time() - started, 1)
    return report


def passed(report: dict) -> list[str]:
    """What the run must show; empty when it did."""
    misses = []
    update = report["rolling_update"]
    if update["load"]["failures"]:
        misses.append(f"rolling update: {update['load']['failures']} failed requests (must be 0)")
    if not update["under_load"]:
        misses.append("rolling update: the load ended before the update did (raise --seconds)")
    if any(v != update["version"] for v in update["ranker_version_served"].values()):
        misses.append(f"rolling update: replicas serve {update['ranker_version_served']}, not {update['version']}")
    kill = report.get("kill")
    if kill and kill["failed"] > kill["in_flight_on_killed_replica"]:
        misses.append(f"kill: {kill['failed']} failed > {kill['in_flight_on_killed_replica']} in flight on the replica")
    return misses


def _throughput_note(r: dict) -> str:
    rows = r["throughput"]
    if len(rows) < 2:
        return "One replica: nothing to compare."
    one, many = rows["1"], rows[str(r["replicas"])]
    ratio = many["rps"] / one["rps"] if one["rps"] else float("nan")
    cpu = f"{one['server_core_s_per_1000']} -> {many['server_core_s_per_1000']}"
    return (f"{r['replicas']} replicas in rotation gave {ratio:.2f}x the requests/s of 1 on the same {r['cores']} "
            f"cores, while the server CPU per 1,000 requests went {cpu} core-s: replicas on one host share its "
            "cores and do not make a request cheaper, so they add no capacity"
            + (f"; the gain here is a larger share of a machine busy with other work (load average "
               f"{r['load_average_before']:.1f})" if ratio > 1.05 else "")
            + ". Replicas add capacity with cores of their own (pods on more nodes).")


def write_report(report: dict, json_path: Path = REPORT_JSON, md_path: Path = REPORT_MD,
                 doc_path: Path = DOC) -> None:
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    md_path.write_text(render_markdown(report))
    if doc_path.exists():
        update_doc(doc_path, render_markdown(report, heading_level=3))


def update_doc(doc_path: Path, section: str) -> None:
    """Replace the text between the doc's replicas markers with `section`."""
    text = doc_path.read_text()
    start, end = text.find(DOC_BEGIN), text.find(DOC_END)
    if start < 0 or end < start:
        return
    start = text.index("\n", start) + 1
    doc_path.write_text(text[:start] + section.strip() + "\n" + text[end:])


def render_markdown(r: dict, heading_level: int = 1) -> str:
    h1, h2 = "#" * heading_level, "#" * (heading_level + 1)
    lines = [f"{h1} {r['replicas']} tritonserver replicas behind HAProxy (`make replicas`)", "",
             f"{r['workload']}; {r['users']} Locust users; {r['cores']} CPU cores shared by the replicas, HAProxy "
             f"and Locust (1-min load average {r['load_average_before']:.2f} at the start: other work on the "
             "machine). Generated by `shoprank replicas`; numbers from one run.", "",
             f"{h2} Load balancer cost (one request at a time, same replica, interleaved)", "",
             "| protocol | direct p50 ms | through HAProxy p50 ms | added ms |", "| --- | --- | --- | --- |"]
    for protocol, c in r["lb_cost"].items():
        lines.append(f"| {protocol} | {c['direct_p50_ms']} | {c['haproxy_p50_ms']} | {c['added_ms']:+} |")
    lines += ["", f"{h2} Throughput: replicas in rotation (closed loop)", "",
              "| in rotation | requests | failed | req/s | p50 ms | p99 ms | server core-s / 1000 req |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for k, t in r["throughput"].items():
        lines.append(f"| {k} | {t['requests']} | {t['failures']} | {t['rps']} | {t['p50_ms']} | {t['p99_ms']} | "
                     f"{t['server_core_s_per_1000']} |")
    lines += ["", _throughput_note(r), ""]
    u = r["rolling_update"]
    lines += [f"{h2} Rolling model update under load", "",
              f"Ranker version {u['version']} published into the shared repository, then replica by replica: "
              "drain in HAProxy, wait until its in-flight requests finished, load the version through the "
              "admin-keyed model control, ready, back in rotation.", "",
              f"Load during the update ({u['users']} users: what the replicas left in rotation carry): "
              f"{u['load']['requests']} requests, **{u['load']['failures']} failed** "
              f"({u['refused_overloaded']} of them refused as overloaded), "
              f"p50 {u['load']['p50_ms']} ms, p99 {u['load']['p99_ms']} ms. Served afterwards: "
              f"{u['ranker_version_served']}. The whole update ran under load: {'yes' if u['under_load'] else 'NO'}.",
              "",
              "| replica | drain wait s | load s | out of rotation s | requests sent to it meanwhile |",
              "| --- | --- | --- | --- | --- |"]
    for s in u["steps"]:
        lines.append(f"| {s['replica']} | {s['drain_wait_s']} | {s['load_s']} | {s['out_of_rotation_s']} | "
                     f"{s['requests_sent_to_it_meanwhile']} |")
    if u.get("errors"):
        lines += ["", "Errors: " + "; ".join(f"`{e}`" for e in u["errors"])]
    k = r.get("kill")
    if k:
        lines += ["", f"{h2} One replica killed under load (SIGKILL, server and stubs)", "",
                  f"Health check every {k['health_check']['interval_ms']} ms, out after {k['health_check']['fall']} "
                  f"failure(s). HAProxy marked {k['replica']} DOWN {k['marked_down_after_s']} s after the kill.", "",
                  "| requests | in flight at the kill (on the killed replica) | failed | refused as overloaded "
                  "| failed, in flight at the kill | failed, sent after the kill | last failure after kill s "
                  "| succeeded after kill |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |",
                  f"| {k['requests']} | {k['in_flight_at_kill']} ({k['in_flight_on_killed_replica']}) | {k['failed']} "
                  f"| {k['refused_overloaded']} "
                  f"| {k['failed_that_were_in_flight']} | {k['failed_sent_after_kill']} | "
                  f"{k['last_failure_after_kill_s']} | {k['succeeded_after_kill']} |", "",
                  "HAProxy re-sends a request whose replica connection failed or closed without an answer "
                  "(`retry-on conn-failure empty-response`; ranking is read-only, so a repeat is harmless): "
                  "requests in flight on the killed replica are answered by another one, at the cost of their "
                  "latency, instead of failing."]
        if k["errors"]:
            lines += ["", "Errors: " + "; ".join(f"`{e}`" for e in k["errors"])]
    misses = passed(r)
    lines += ["", "**Result: " + ("PASS**" if not misses else "FAIL**: " + "; ".join(misses)), ""]
    return "\n".join(lines)
