"""What the server did during a run: cores used by the load generator, the server (tritonserver
and its Python stubs) and the whole machine, and Triton's per-model Prometheus counters (rows per
execution: the batch the dynamic batcher formed; queue and compute time per request)."""
from __future__ import annotations

import os
import re
import resource
import urllib.request
from pathlib import Path

from ..fmt import fmt


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
            f"server {fmt(cpu.get('server_cores'), '.2f')}, whole machine {cpu['machine_busy_cores']:.2f}"
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

        def per_req(us: float, requests: float = requests) -> float | None:
            return round(us / requests / 1000, 2) if requests else None

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
                     f"{fmt(m['rows_per_execution'], '.1f'):>10}{fmt(m['requests_per_execution'], '.2f'):>9}"
                     f"{fmt(m['queue_ms'], '.2f'):>9}{fmt(m['compute_ms'], '.2f'):>11}{fmt(m['request_ms'], '.2f'):>9}")
    return "\n".join(lines)


def server_memory(pid: int) -> tuple[int, int] | None:
    """(summed resident set size in bytes, process count) of a process and all its live
    descendants: tritonserver and its Python backend stubs (one per model instance); None when
    the process is gone. Shared pages are counted in every process that maps them."""
    import psutil

    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return None
    total, count = 0, 0
    for p in processes:
        try:
            total += p.memory_info().rss
            count += 1
        except psutil.NoSuchProcess:  # a stub that ended between listing and reading
            pass
    return total, count
