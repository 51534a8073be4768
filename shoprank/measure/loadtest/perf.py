"""`make perf`: Triton's perf_analyzer on the `rank` ensemble over gRPC, one run per concurrency,
with real requests from the data, and the server-side split per composing model (-v).

The binary is found, not installed, here: scripts/install_perf_analyzer.sh (`make perf-tools`)
puts it under artifacts/tools (see docs/load-tests.md for why it needs a side-loaded glibc).
"""
from __future__ import annotations

import csv
import json
import os
import random
import re
import shlex
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from ... import config
from ...data.requests import RequestPool
from ..fmt import fmt
from .profiles import Candidates

TOOLS_DIR = config.ARTIFACTS_DIR / "tools"
# perf_analyzer's default 10 % rarely settles on 2 cores shared with other jobs.
PERF_STABILITY_PCT = 50


def perf_input_data(pool: RequestPool, candidates: Candidates, top_k: int, count: int = 64,
                    seed: int = config.SEED) -> dict:
    """perf_analyzer's --input-data JSON: `count` real requests, each with its own shape."""
    rng = random.Random(seed)
    entries = []
    for _ in range(count):
        query, candidates_ = pool.draw(rng, candidates.draw(rng))
        entries.append({config.QUERY: {"content": [query], "shape": [1]},
                        config.CANDIDATES: {"content": candidates_, "shape": [len(candidates_)]},
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
    scripts/install_perf_analyzer.sh put under artifacts/tools, else the perf-analyzer package's binary
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
    raise FileNotFoundError("perf_analyzer not found: run `make perf-tools` (scripts/install_perf_analyzer.sh), "
                            "or set SHOPRANK_PERF_ANALYZER to its command")


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

    def us(key: str) -> float | None:
        return None if _float(r.get(key)) is None else round(float(r[key]) / 1000, 2)

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


def run_perf(endpoints, pool: RequestPool, candidates: Candidates, top_k: int, concurrency: Sequence[int],
             out_dir: Path,
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
    input_json.write_text(json.dumps(perf_input_data(pool, candidates, top_k)))
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
        print(f"  perf_analyzer at concurrency {c}: {fmt(row['infer_per_s'], '.1f')} infer/s, "
              f"p50 {fmt(row['p50_ms'], '.1f')} ms", flush=True)
    summary = {"model": config.ENSEMBLE_MODEL, "protocol": "grpc", "candidates": candidates.spec,
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
        head = (f"  {r['concurrency']:>4} {'client':<10}{fmt(r['infer_per_s'], '.1f'):>8}{fmt(r['p50_ms'], '.1f'):>7}"
                f"{fmt(r['p95_ms'], '.1f'):>7}{fmt(r['p99_ms'], '.1f'):>7}")
        lines.append(head)
        for model, m in r.get("server", {}).items():
            compute = m.get("compute_ms", sum(m.get(k, 0) for k in ("compute_input_ms", "compute_infer_ms",
                                                                       "compute_output_ms")))
            lines.append(f"  {'':>4} {model:<10}{'':>29}{m.get('requests', 0):>9}"
                         f"{fmt(m.get('rows_per_execution'), '.1f'):>10}"
                         f"{fmt(m.get('queue_ms'), '.1f'):>9}{compute:>9.1f}{fmt(m.get('request_ms'), '.1f'):>9}")
    for f in summary.get("failed", []):
        lines.append(f"  {f['concurrency']:>4} no stable measurement: {f['reason']}")
    return "\n".join(lines)
