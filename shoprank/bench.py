"""`make bench`: our served ranker side by side with what a user would otherwise run.

One run, the same fine-tuned model, the same fixed requests for every system:
  naive-pytorch            HF AutoTokenizer + AutoModelForSequenceClassification FP32 + sort
  crossencoder             sentence-transformers CrossEncoder.predict + sort
  infinity-torch/-onnx     the Infinity rerank server (own venv, .bench-venv) on 127.0.0.1
  triton-<engine>-<proto>  our Triton ensemble (tokenizer -> ranker -> sorter), gRPC and HTTP
  ort-<engine>-inprocess   the bare engine, no server: PairEncoder + OrtEngine + sort
Workloads "rank-50"/"rank-200": one query with 50/200 real product titles. For each: sequential
latency (p50/p95) after warm-up, then throughput with several concurrent clients; quality is
NDCG@10 of each system on the model's validation queries. Writes reports/bench.{md,json} and
two plots. Timings are measurements, never assertions.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from . import config, data, metrics
from .engine import sigmoid

BENCH_DIR = config.ARTIFACTS_DIR / "bench"           # scratch: repositories, logs, Infinity model copies
BENCH_VENV = config.PROJECT_ROOT / ".bench-venv"      # Infinity's own environment (make bench sets it up)
WORKLOAD_SIZES = {"rank-50": 50, "rank-200": 200}
ENGINES = ("fp32", "int8", "qdq")                      # artifacts/onnx/model.<engine>.onnx when present
INFINITY_ENGINES = {"torch": "torch", "onnx": "optimum"}
INFINITY_START_TIMEOUT_S = 300


# --- Workload -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Request:
    query: str
    texts: tuple[str, ...]


def build_requests(pairs, size: int, count: int, seed: int = config.SEED) -> list[Request]:
    """`count` requests, each a distinct query with `size` real product texts: the query's own
    judged products first in the pool, topped up with other products drawn at random, then
    shuffled (a fixed seed: every system and every run gets the same requests)."""
    rng = np.random.default_rng(seed + size)
    titles = pairs["text"].drop_duplicates().to_numpy()
    groups = list(data.query_groups(pairs))
    if len(groups) < count:
        raise ValueError(f"the data has {len(groups)} queries; {count} distinct requests wanted")
    texts_all = pairs["text"].to_numpy()
    requests = []
    for g in rng.choice(len(groups), size=count, replace=False):
        query, idx = groups[g]
        own = list(dict.fromkeys(texts_all[idx]))[:size]
        chosen = set(own)
        while len(own) < size:
            for t in rng.choice(titles, size=size, replace=False):
                if t not in chosen and len(own) < size:
                    chosen.add(t)
                    own.append(t)
        order = rng.permutation(size)
        requests.append(Request(query, tuple(own[i] for i in order)))
    return requests


# --- Systems --------------------------------------------------------------------------------------

RankFn = Callable[[str, Sequence[str]], tuple[np.ndarray, np.ndarray]]
"""(query, texts) -> (positions best first, a score per text in the texts' order)."""


@dataclass
class System:
    key: str                    # stable id, e.g. "triton-int8-grpc" (bench.json keys)
    label: str                  # table text
    kind: str                   # "in-process" | "server"
    engine: str                 # "fp32", "int8", ... for overhead pairs
    make_client: Callable[[], RankFn]  # one per client thread (a connection for servers)
    close: Callable[[], None] = lambda: None
    server_pids: Callable[[], list[int]] = lambda: []
    notes: list[str] = field(default_factory=list)
    # Cumulative server-side time per step (e.g. Triton's per-model statistics), or None.
    step_stats: Callable[[], dict] | None = None


def _order(scores: np.ndarray) -> np.ndarray:
    return np.argsort(-scores, kind="stable")


def naive_pytorch(model_dir: Path, max_length: int) -> System:
    """What a user writes first: tokenizer + FP32 model + sort, default settings."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir)).eval()

    def rank(query, texts):
        batch = tokenizer([query] * len(texts), list(texts), padding=True, truncation=True,
                          max_length=max_length, return_tensors="pt")
        with torch.no_grad():
            logits = model(**batch).logits.reshape(-1)
        order = torch.argsort(logits, descending=True).numpy()
        return order, sigmoid(logits.numpy())

    return System("naive-pytorch", "naive PyTorch FP32 (HF)", "in-process", "torch-fp32", lambda: rank)


def crossencoder(model_dir: Path, max_length: int) -> System:
    """sentence-transformers CrossEncoder.predict with its defaults (batch_size 32)."""
    from sentence_transformers import CrossEncoder

    model = CrossEncoder(str(model_dir), max_length=max_length, device="cpu")

    def rank(query, texts):
        scores = np.asarray(model.predict([(query, t) for t in texts], show_progress_bar=False), dtype=np.float32)
        return _order(scores), scores

    return System("crossencoder", "sentence-transformers CrossEncoder", "in-process", "torch-fp32", lambda: rank)


def bare_engine(model_dir: Path, max_length: int, onnx_path: Path, engine: str) -> System:
    """Our engine without any server: the floor Triton's overhead is measured against."""
    from .engine import OrtEngine
    from .sorting import rank_logits
    from .tokenize import PairEncoder

    encoder = PairEncoder.from_dir(model_dir, max_length=max_length)
    ort_engine = OrtEngine(onnx_path)

    def rank(query, texts):
        logits = ort_engine.logits(encoder.encode(query, texts))
        order, _ = rank_logits(logits, 0)
        return order, sigmoid(logits)

    return System(f"ort-{engine}-inprocess", f"bare engine ORT {engine.upper()} (in-process)", "in-process",
                  engine, lambda: rank)


def _scores_in_text_order(indices: np.ndarray, scores: np.ndarray, count: int) -> np.ndarray:
    out = np.zeros(count, dtype=np.float32)
    out[np.asarray(indices, dtype=np.int64)] = scores
    return out


class TritonVariant:
    """Our ensemble serving one engine file; start() builds its own repository."""

    def __init__(self, model_dir: Path, onnx_path: Path, engine: str, ports: tuple[int, int, int],
                 work_dir: Path, **render_kwargs):
        self.model_dir, self.onnx_path, self.engine = model_dir, onnx_path, engine
        self.ports, self.work_dir, self.render_kwargs = ports, work_dir, render_kwargs
        self.proc = None

    def start(self) -> None:
        from . import server
        from .repository import build_repository

        repo = self.work_dir / f"repo-{self.engine}"
        shutil.rmtree(repo, ignore_errors=True)
        build_repository(self.model_dir, self.onnx_path, repo, target="python", **self.render_kwargs)
        self.endpoints = server.Endpoints("127.0.0.1", *self.ports)
        log = self.work_dir / f"triton-{self.engine}.log"
        log.unlink(missing_ok=True)
        self.proc = server.start(repo, self.endpoints, log_path=log, run_dir=self.work_dir / "run")

    def stop(self) -> None:
        from . import server

        if self.proc is not None:
            server.stop_process(self.proc)
            self.proc = None

    def system(self, protocol: str) -> System:
        from .client import RankClient

        url = self.endpoints.grpc if protocol == "grpc" else self.endpoints.http

        def make_client():
            client = RankClient(url, protocol)

            def rank(query, texts):
                indices, scores = client.infer_raw(query, texts, 0)
                return indices, _scores_in_text_order(indices, scores, len(texts))

            return rank

        return System(f"triton-{self.engine}-{protocol}", f"Triton ensemble ORT {self.engine.upper()} ({protocol})",
                      "server", self.engine, make_client, server_pids=lambda: [self.proc.pid] if self.proc else [],
                      step_stats=self.step_stats)

    def step_stats(self) -> dict:
        """Triton's cumulative statistics per model: requests, executions and ns spent queued
        and computing (input, infer, output)."""
        import tritonclient.grpc as api

        client = api.InferenceServerClient(self.endpoints.grpc)
        out = {}
        try:
            for model in (config.ENSEMBLE_MODEL, config.TOKENIZER_MODEL, config.RANKER_MODEL, config.SORTER_MODEL):
                stats = client.get_inference_statistics(model, as_json=True)["model_stats"][0]
                inference = stats["inference_stats"]
                out[model] = {"requests": int(inference["success"]["count"]), "success": int(inference["success"]["ns"]),
                              "executions": int(stats.get("execution_count", 0)),
                              **{k: int(inference[k]["ns"]) for k in
                                 ("queue", "compute_input", "compute_infer", "compute_output")}}
        finally:
            client.close()
        return out


# --- Infinity -------------------------------------------------------------------------------------

class InfinityUnavailable(RuntimeError):
    """Why Infinity could not run (goes into the report verbatim)."""


def prepare_infinity_model(model_dir: Path, onnx_fp32: Path | None, engine: str, max_length: int,
                           out_dir: Path) -> Path:
    """A copy of the fine-tuned model that Infinity 0.0.78 reads as we serve it.

    * Both engines: tokenizer model_max_length = the model's max length (Infinity's torch
      engine truncates there; it takes no max-length option).
    * ONNX (optimum) engine: it needs an .onnx file inside the folder, truncates at
      config.max_position_embeddings (so that is set to max_length in this copy only: ONNX
      Runtime does not read it), and it must be started from inside the folder with model id
      "." because it joins the folder with an already-joined file path (optimum 2.x).
    """
    target = out_dir / f"infinity-model-{engine}"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(model_dir, target)
    tok_cfg = target / "tokenizer_config.json"
    cfg = json.loads(tok_cfg.read_text()) if tok_cfg.exists() else {}
    cfg["model_max_length"] = max_length
    tok_cfg.write_text(json.dumps(cfg, indent=2))
    if engine == "onnx":
        if onnx_fp32 is None or not onnx_fp32.exists():
            raise InfinityUnavailable("no FP32 ONNX file to give Infinity's ONNX engine (make onnx)")
        shutil.copy(onnx_fp32, target / "model.onnx")
        model_cfg = json.loads((target / "config.json").read_text())
        model_cfg["max_position_embeddings"] = max_length
        (target / "config.json").write_text(json.dumps(model_cfg, indent=2))
    return target


class InfinityServer:
    def __init__(self, model_dir: Path, onnx_fp32: Path | None, engine: str, max_length: int, port: int,
                 work_dir: Path, venv: Path = BENCH_VENV):
        self.engine, self.port, self.work_dir, self.venv = engine, port, work_dir, venv
        self.model_dir, self.onnx_fp32, self.max_length = model_dir, onnx_fp32, max_length
        self.proc = None
        self.log = work_dir / f"infinity-{engine}.log"

    def start(self) -> None:
        exe = Path(self.venv).absolute() / "bin" / "infinity_emb"  # absolute: it runs from the model copy
        if not exe.exists():
            raise InfinityUnavailable(f"{exe} missing: `make bench` installs Infinity into {self.venv}")
        folder = prepare_infinity_model(self.model_dir, self.onnx_fp32, self.engine, self.max_length, self.work_dir)
        cache = self.work_dir / f"infinity-hf-cache-{self.engine}"
        shutil.rmtree(cache, ignore_errors=True)  # it reuses an optimized ONNX found there: no stale model
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HOME=str(cache),
                   HF_HUB_CACHE=str(cache / "hub"), INFINITY_ANONYMOUS_USAGE_STATS="0", DO_NOT_TRACK="1")
        env.pop("PYTHONPATH", None)
        command = [str(exe), "v2", "--model-id", ".", "--served-model-name", "ranker",
                   "--engine", INFINITY_ENGINES[self.engine], "--device", "cpu",
                   "--host", "127.0.0.1", "--port", str(self.port), "--no-model-warmup", "--log-level", "warning"]
        self.command = " ".join(command[1:])
        self.log.unlink(missing_ok=True)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(command, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.time() + INFINITY_START_TIMEOUT_S
        while time.time() < deadline:
            if self.proc.poll() is not None:
                tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-15:])
                self.proc = None
                raise InfinityUnavailable(f"infinity ({self.engine}) exited while starting:\n{tail}")
            try:
                self._post({"query": "warm up", "documents": ["ready?"], "return_documents": False}, timeout=5)
                return
            except OSError:
                time.sleep(1)
        self.stop()
        raise InfinityUnavailable(f"infinity ({self.engine}) not ready after {INFINITY_START_TIMEOUT_S} s")

    def _post(self, body: dict, timeout: float = 120, connection=None) -> dict:
        import http.client

        conn = connection or http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        conn.request("POST", "/rerank", body=json.dumps(dict(body, model="ranker")),
                     headers={"Content-Type": "application/json"})
        reply = conn.getresponse()
        payload = reply.read()
        if reply.status != 200:
            raise RuntimeError(f"infinity {reply.status}: {payload[:300]!r}")
        if connection is None:
            conn.close()
        return json.loads(payload)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()
        self.proc = None

    def system(self) -> System:
        import http.client

        def make_client():
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)

            def rank(query, texts):
                body = {"query": query, "documents": list(texts), "return_documents": False}
                try:
                    reply = self._post(body, connection=conn)
                except (ConnectionError, http.client.HTTPException):
                    # The server closes idle keep-alive connections (uvicorn: after 5 s) while
                    # other systems are measured; reconnect once.
                    conn.close()
                    reply = self._post(body, connection=conn)
                scores = np.zeros(len(texts), dtype=np.float32)
                for item in reply["results"]:
                    scores[item["index"]] = item["relevance_score"]
                return _order(scores), scores

            return rank

        label = {"torch": "Infinity torch engine", "onnx": "Infinity ONNX (optimum) engine"}[self.engine]
        return System(f"infinity-{self.engine}", label, "server", f"infinity-{self.engine}", make_client,
                      server_pids=lambda: [self.proc.pid] if self.proc else [])


# --- Measuring ------------------------------------------------------------------------------------

class RssSampler:
    """Peak resident memory of a process tree (a server and its children, e.g. Python stubs),
    sampled every `period` seconds while running."""

    def __init__(self, pids: Callable[[], list[int]], period: float = 0.25):
        self.pids, self.period = pids, period
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> int:
        import psutil

        total = 0
        for pid in self.pids():
            try:
                root = psutil.Process(pid)
                for proc in [root, *root.children(recursive=True)]:
                    total += proc.memory_info().rss
            except psutil.Error:
                continue
        self.peak = max(self.peak, total)
        return total

    def _run(self):
        while not self._stop.wait(self.period):
            self.sample()

    def __enter__(self):
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.sample()


def _percentiles(latencies_s: list[float]) -> dict:
    ms = np.asarray(latencies_s) * 1000.0
    return {"p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
            "mean_ms": float(ms.mean()), "n": int(ms.size)}


SEQUENTIAL_BLOCK = 10  # requests a system gets in a row before the next system's turn


def measure_sequential(ranks: dict[str, RankFn], requests: list[Request], warmup: list[Request],
                       block: int = SEQUENTIAL_BLOCK) -> dict[str, list[float]]:
    """Sequential latencies of several systems on the same requests, interleaved in blocks:
    round r gives each system the r-th block of requests, in an order rotated each round, after
    one untimed request (caches warm again after the previous system). Background load that
    comes and goes then hits every system alike instead of whichever ran at that moment."""
    keys = list(ranks)
    for key in keys:
        for r in warmup:
            ranks[key](r.query, r.texts)
    latencies = {key: [] for key in keys}
    blocks = [requests[i:i + block] for i in range(0, len(requests), block)]
    for round_, chunk in enumerate(blocks):
        shift = round_ % len(keys)
        for key in keys[shift:] + keys[:shift]:
            rank = ranks[key]
            first = warmup[round_ % len(warmup)]
            rank(first.query, first.texts)
            for r in chunk:
                start = time.perf_counter()
                rank(r.query, r.texts)
                latencies[key].append(time.perf_counter() - start)
    return latencies


def measure_throughput(system: System, requests: list[Request], clients: int) -> dict:
    """`clients` threads, each with its own client, work through the requests once (each
    request sent exactly once); throughput = requests / wall time from first send to last reply."""
    lock, next_index, latencies = threading.Lock(), [0], []
    barrier = threading.Barrier(clients + 1)

    def worker(slot):
        # Each thread makes its own client (the HTTP client is bound to its thread) and warms
        # its connection before the clock starts.
        try:
            rank = system.make_client()
            warm = requests[slot % len(requests)]
            rank(warm.query, warm.texts)
        finally:
            barrier.wait()
        while True:
            with lock:
                i = next_index[0]
                next_index[0] += 1
            if i >= len(requests):
                return
            start = time.perf_counter()
            rank(requests[i].query, requests[i].texts)
            with lock:
                latencies.append(time.perf_counter() - start)

    with ThreadPoolExecutor(clients) as pool:
        futures = [pool.submit(worker, slot) for slot in range(clients)]
        barrier.wait()
        started = time.perf_counter()
        for f in futures:
            f.result()
        wall = time.perf_counter() - started
    return {"wall_s": wall, "requests": len(requests), "pairs": sum(len(r.texts) for r in requests),
            "latencies": latencies}


def measure_throughputs(systems: list[System], requests: list[Request], clients: int) -> dict:
    """Throughput of each system, one at a time, in two passes over halves of the requests:
    forward order, then reverse (A B C, C B A), so a load trend over the run evens out."""
    half = len(requests) // 2
    runs = {s.key: [] for s in systems}
    for part, order in ((requests[:half], systems), (requests[half:], systems[::-1])):
        for system in order:
            runs[system.key].append(measure_throughput(system, part, clients))
    out = {}
    for key, parts in runs.items():
        wall = sum(p["wall_s"] for p in parts)
        lat = [x for p in parts for x in p["latencies"]]
        out[key] = {"clients": clients, "req_s": sum(p["requests"] for p in parts) / wall,
                    "pairs_s": sum(p["pairs"] for p in parts) / wall, "wall_s": wall,
                    **{f"latency_{k}": v for k, v in _percentiles(lat).items() if k != "n"}}
    return out


def measure_quality(rank: RankFn, valid) -> float | None:
    """NDCG@10 of the system's own scores on the validation queries (one request per query)."""
    scores = np.zeros(len(valid), dtype=np.float64)
    texts = valid["text"].to_numpy()
    for query, idx in data.query_groups(valid):
        _, s = rank(query, [texts[i] for i in idx])
        scores[idx] = s
    return metrics.evaluate(valid, scores)["ndcg@10"]


def measure(systems: list[System], workloads: dict[str, list[Request]], warmup: dict[str, list[Request]],
            clients: Sequence[int], valid, log=print, only: dict | None = None) -> dict:
    """Quality, interleaved sequential latency and throughput of all systems (all loaded and
    servers running at once, idle when not measured), plus each server's peak memory."""
    results = {s.key: {"label": s.label, "kind": s.kind, "engine": s.engine, "notes": s.notes} for s in systems}
    samplers = {s.key: RssSampler(s.server_pids) for s in systems if s.kind == "server"}
    for sampler in samplers.values():
        sampler.__enter__()
    try:
        ranks = {s.key: s.make_client() for s in systems}
        for s in systems:
            results[s.key]["ndcg@10"] = measure_quality(ranks[s.key], valid) if valid is not None else None
            log(f"  {s.key:<24} NDCG@10 {results[s.key]['ndcg@10']:.4f}")
        for name, requests in workloads.items():
            prefixes = (only or {}).get(name)
            chosen = [s for s in systems if not prefixes or any(s.key.startswith(p) for p in prefixes)]
            before = {s.key: s.step_stats() for s in chosen if s.step_stats}
            latencies = measure_sequential({s.key: ranks[s.key] for s in chosen}, requests, warmup[name])
            after = {s.key: s.step_stats() for s in chosen if s.step_stats}
            for s in chosen:
                entry = results[s.key][name] = _percentiles(latencies[s.key])
                if s.key in before:
                    entry["steps_ms"] = _step_breakdown(before[s.key], after[s.key])
                log(f"  {s.key:<24} {name}: p50 {entry['p50_ms']:.1f} ms, p95 {entry['p95_ms']:.1f} ms")
            for c in clients:
                for key, tp in measure_throughputs(chosen, requests, c).items():
                    results[key][name][f"c{c}"] = tp
                    log(f"  {key:<24} {name}: {c} clients {tp['pairs_s']:.0f} pairs/s")
    finally:
        for key, sampler in samplers.items():
            sampler.__exit__(None, None, None)
            results[key]["peak_rss_mb"] = sampler.peak / 2**20
    return results


def _step_breakdown(before: dict, after: dict) -> dict:
    """Mean server-side ms per request and step between two snapshots (a server serves gRPC
    and HTTP, so this covers the requests of both protocols over the sequential run)."""
    out = {}
    for model, stats in after.items():
        delta = {k: stats[k] - before.get(model, {}).get(k, 0) for k in stats}
        count = max(1, delta["requests"])
        out[model] = {"total": delta["success"] / count / 1e6, "queue": delta["queue"] / count / 1e6,
                      "compute": (delta["compute_input"] + delta["compute_infer"] + delta["compute_output"])
                      / count / 1e6, "requests": delta["requests"], "executions": delta["executions"]}
    return out


# --- The whole run --------------------------------------------------------------------------------

@dataclass
class BenchConfig:
    model_dir: Path = config.ARTIFACTS_DIR / "model"
    onnx_dir: Path = config.ARTIFACTS_DIR / "onnx"
    out_dir: Path = config.REPORTS_DIR
    work_dir: Path = BENCH_DIR
    requests: int = 100
    warmup: int = 10
    workloads: tuple[str, ...] = ("rank-50", "rank-200")
    clients: tuple[int, ...] = (4, 8)
    systems: tuple[str, ...] = ()        # key prefixes to run; empty = all
    skip: tuple[str, ...] = ()           # key prefixes to leave out
    quality_limit: int | None = None     # validation pairs for NDCG (None = all)
    port_base: int | None = None         # None: free ports
    ranker_instances: int = config.RANKER_INSTANCES      # what `make repository` serves
    tokenizer_instances: int = config.TOKENIZER_INSTANCES
    extra_engines: dict = field(default_factory=dict)  # name -> ONNX file, beside artifacts/onnx's
    only: dict = field(default_factory=dict)           # workload -> key prefixes measured on it (default all)
    infinity_venv: Path = BENCH_VENV


def _wanted(cfg: BenchConfig, key: str) -> bool:
    if any(key.startswith(s) for s in cfg.skip):
        return False
    return not cfg.systems or any(key.startswith(s) for s in cfg.systems)


def machine_facts() -> dict:
    load = os.getloadavg()
    try:
        uptime = subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except OSError:
        uptime = ""
    cpu = ""
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import onnxruntime
    import torch

    return {"date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()), "cpu": cpu, "cores": os.cpu_count(),
            "loadavg": list(load), "uptime": uptime, "python": platform.python_version(),
            "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
            "torch_threads": torch.get_num_threads()}


def run(cfg: BenchConfig, log=print) -> dict:
    from .build_steps import validation_pairs
    from .modeling import model_max_length, read_model_card
    from .server import free_ports

    model_dir = Path(cfg.model_dir)
    if not (model_dir / "config.json").exists():
        raise FileNotFoundError(f"no fine-tuned model at {model_dir}: run `make finetune onnx int8` first")
    cfg.work_dir.mkdir(parents=True, exist_ok=True)
    max_length = model_max_length(model_dir)
    pairs = data.load_default_or_shared()
    workloads = {name: build_requests(pairs, WORKLOAD_SIZES[name], cfg.requests) for name in cfg.workloads}
    # Warm-up requests come from other queries (seed offset) than the measured ones.
    warmup = {name: build_requests(pairs, WORKLOAD_SIZES[name], cfg.warmup, seed=config.SEED + 7)
              for name in cfg.workloads}
    valid = validation_pairs(model_dir, cfg.quality_limit)
    engines = {e: Path(cfg.onnx_dir) / f"model.{e}.onnx" for e in ENGINES
               if (Path(cfg.onnx_dir) / f"model.{e}.onnx").exists()}
    for name, path in cfg.extra_engines.items():
        if not Path(path).exists():
            raise FileNotFoundError(f"engine {name}: {path} not found")
        engines[name] = Path(path)
    start_facts = machine_facts()
    # 3 ports per Triton (one per engine), then 1 per Infinity engine.
    count = 3 * len(engines) + len(INFINITY_ENGINES)
    ports = list(range(cfg.port_base, cfg.port_base + count)) if cfg.port_base else free_ports(count)
    log(f"bench: model {model_dir} (max length {max_length}), data {pairs.attrs.get('source')}, "
        f"{cfg.requests} requests per workload, engines {', '.join(engines) or 'none'}; "
        f"load average {start_facts['loadavg']}")
    systems, skipped, servers = [], {}, []
    try:
        if _wanted(cfg, "naive-pytorch"):
            systems.append(naive_pytorch(model_dir, max_length))
        if _wanted(cfg, "crossencoder"):
            try:
                systems.append(crossencoder(model_dir, max_length))
            except ImportError as exc:
                skipped["crossencoder"] = f"sentence-transformers not importable: {exc}"
        for engine, path in engines.items():
            if _wanted(cfg, f"ort-{engine}-inprocess"):
                systems.append(bare_engine(model_dir, max_length, path, engine))
        for i, (engine, path) in enumerate(engines.items()):
            protocols = [p for p in ("grpc", "http") if _wanted(cfg, f"triton-{engine}-{p}")]
            if not protocols:
                continue
            variant = TritonVariant(model_dir, path, engine, tuple(ports[3 * i:3 * i + 3]), cfg.work_dir,
                                    ranker_instances=cfg.ranker_instances,
                                    tokenizer_instances=cfg.tokenizer_instances)
            log(f"starting Triton with the {engine} engine")
            servers.append(variant)
            variant.start()
            systems += [variant.system(p) for p in protocols]
        for j, engine in enumerate(INFINITY_ENGINES):
            key = f"infinity-{engine}"
            if not _wanted(cfg, key):
                continue
            server = InfinityServer(model_dir, engines.get("fp32"), engine, max_length, ports[3 * len(engines) + j],
                                    cfg.work_dir, Path(cfg.infinity_venv))
            log(f"starting Infinity with its {engine} engine")
            try:
                server.start()
            except (RuntimeError, OSError) as exc:  # InfinityUnavailable, or it answered with an error
                server.stop()
                skipped[key] = str(exc)
                log(f"  {key} could not run: {exc}")
                continue
            servers.append(server)
            system = server.system()
            system.notes.append(f"`infinity_emb {server.command}`")
            systems.append(system)
        log(f"measuring {len(systems)} systems: {', '.join(s.key for s in systems)}")
        loads, done = [], threading.Event()

        def sample_load():  # the 1-minute load average while measuring: how busy the machine was
            while not done.wait(15):
                loads.append(os.getloadavg()[0])

        sampler = threading.Thread(target=sample_load, daemon=True)
        sampler.start()
        try:
            results = measure(systems, workloads, warmup, cfg.clients, valid, log, cfg.only)
        finally:
            done.set()
    finally:
        for server in servers:
            server.stop()
    card = read_model_card(model_dir)
    report = {
        "meta": {"start": start_facts, "end": machine_facts(), "model": str(model_dir), "max_length": max_length,
                 "model_card": {k: card.get(k) for k in ("base_model", "data", "max_length", "epochs") if k in card},
                 "data": pairs.attrs.get("source"), "requests": cfg.requests, "warmup": cfg.warmup,
                 "workloads": {n: WORKLOAD_SIZES[n] for n in cfg.workloads}, "clients": list(cfg.clients),
                 "validation": {"pairs": len(valid), "queries": int(valid["query"].nunique())},
                 "mean_tokens_per_pair": _mean_tokens(model_dir, max_length, workloads),
                 "ranker_instances": cfg.ranker_instances, "tokenizer_instances": cfg.tokenizer_instances,
                 "engine": {"chunk_tokens": config.ENGINE_CHUNK_TOKENS, "spinning": config.ENGINE_SPINNING,
                            "threads": config.ENGINE_THREADS or os.cpu_count(),
                            "ranker_queue_delay_us": config.RANKER_QUEUE_DELAY_US},
                 "only": {k: list(v) for k, v in cfg.only.items()},
                 "load_during": {"mean": float(np.mean(loads)) if loads else None,
                                 "max": float(np.max(loads)) if loads else None, "samples": len(loads)}},
        "systems": results, "skipped": skipped,
    }
    report["ratios"] = ratios(results)
    report["targets"] = targets(results)
    report["rank50_p50_ms"] = {k: v["rank-50"]["p50_ms"] for k, v in results.items() if "rank-50" in v}
    return report


def _mean_tokens(model_dir: Path, max_length: int, workloads: dict) -> dict:
    from .tokenize import PairEncoder

    encoder = PairEncoder.from_dir(model_dir, max_length=max_length, buckets=None)
    out = {}
    for name, requests in workloads.items():
        lengths = [int(encoder.encode(r.query, r.texts)["attention_mask"].sum(1).mean()) for r in requests[:20]]
        longest = [encoder.encode(r.query, r.texts)["input_ids"].shape[1] for r in requests[:20]]
        out[name] = {"mean": float(np.mean(lengths)), "longest_in_request_mean": float(np.mean(longest))}
    return out


BASELINE = "naive-pytorch"


def ratios(results: dict) -> dict:
    """Each system against naive PyTorch: latency ratio (lower is better) and throughput
    ratio (higher is better), per workload."""
    base = results.get(BASELINE)
    if not base:
        return {}
    out = {}
    for key, res in results.items():
        entry = {}
        for name in WORKLOAD_SIZES:
            if name in res and name in base:
                entry[name] = {"p50_vs_naive": res[name]["p50_ms"] / base[name]["p50_ms"]}
                for c in (k for k in res[name] if k.startswith("c") and k in base[name]):
                    entry[name][f"{c}_pairs_s_vs_naive"] = res[name][c]["pairs_s"] / base[name][c]["pairs_s"]
        out[key] = entry
    return out


QUALITY_MARGIN = 0.005  # NDCG@10 a served variant may lose against FP32 PyTorch


def targets(results: dict, workload: str = "rank-50") -> dict:
    """The issue's four targets, from this run's numbers. Speed targets are judged on served
    variants that keep NDCG@10 within QUALITY_MARGIN of FP32 PyTorch (all of them when there is
    no reference), so no speed is bought with accuracy."""
    served = {k: v for k, v in results.items() if k.startswith("triton-") and workload in v}
    out = {}
    if not served:
        return out
    reference = results.get(BASELINE, {}).get("ndcg@10")
    drops = {k: reference - v["ndcg@10"] for k, v in served.items()
             if reference is not None and v.get("ndcg@10") is not None}
    fair = {k: v for k, v in served.items() if reference is None or abs(drops.get(k, 1.0)) <= QUALITY_MARGIN}
    if reference is not None:
        out["quality"] = {"goal": f"a served variant within {QUALITY_MARGIN} NDCG@10 of FP32 PyTorch "
                                  "(speed targets are judged on those)",
                          "reference": reference, "drops": drops, "qualifying": sorted(fair), "met": bool(fair)}
    if not fair:
        return out
    best = min(fair, key=lambda k: fair[k][workload]["p50_ms"])
    base = results.get(BASELINE)
    if base and workload in base:
        ratio = fair[best][workload]["p50_ms"] / base[workload]["p50_ms"]
        out["latency"] = {"goal": "best served rank-50 p50 <= 0.15 x naive PyTorch", "system": best,
                          "ratio": ratio, "met": ratio <= 0.15}
    clients = max((int(c[1:]) for c in fair[best][workload] if c.startswith("c")), default=None)
    infinity = {k: v for k, v in results.items() if k.startswith("infinity-") and workload in v}
    if clients and infinity:
        c = f"c{clients}"
        ours = max(fair, key=lambda k: fair[k][workload][c]["pairs_s"])
        theirs = max(infinity, key=lambda k: infinity[k][workload][c]["pairs_s"])
        ratio = fair[ours][workload][c]["pairs_s"] / infinity[theirs][workload][c]["pairs_s"]
        out["throughput"] = {"goal": f"throughput at {clients} clients >= 2 x Infinity (its best engine)",
                             "system": ours, "against": theirs, "ratio": ratio, "met": ratio >= 2.0}
    overhead = {}
    for key, res in served.items():
        bare = results.get(f"ort-{res['engine']}-inprocess")
        if bare and workload in bare:
            overhead[key] = res[workload]["p50_ms"] / bare[workload]["p50_ms"] - 1.0
    if overhead:
        key = best if best in overhead else min(overhead, key=overhead.get)
        out["overhead"] = {"goal": "Triton p50 <= 1.10 x bare engine (same engine, rank-50)", "system": key,
                           "overhead": overhead[key], "met": overhead[key] <= 0.10, "all": overhead}
    return out


# --- Report ---------------------------------------------------------------------------------------

def _fmt(value, spec=".1f", missing="–"):
    return missing if value is None else format(value, spec)


def write_report(report: dict, out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "bench.json", "md": out_dir / "bench.md",
             "latency": out_dir / "bench_latency.png", "throughput": out_dir / "bench_throughput.png"}
    paths["json"].write_text(json.dumps(report, indent=2, default=float))
    plot_latency(report, paths["latency"])
    plot_throughput(report, paths["throughput"])
    paths["md"].write_text(markdown(report))
    return paths


def markdown(report: dict) -> str:
    meta, results = report["meta"], report["systems"]
    clients = meta["clients"]
    lines = ["# shoprank benchmark", "",
             f"Run {meta['start']['date_utc']} UTC on {meta['start']['cpu']} ({meta['start']['cores']} cores), "
             f"Python {meta['start']['python']}, torch {meta['start']['torch']}, onnxruntime {meta['start']['onnxruntime']}.",
             f"Model `{meta['model']}` (max length {meta['max_length']}); requests from `{meta['data']}`: "
             f"{meta['requests']} distinct queries per workload after {meta['warmup']} warm-up requests; "
             f"tokens per pair " + ", ".join(f"{n}: mean {v['mean']:.1f}, longest per request {v['longest_in_request_mean']:.1f}"
                                             for n, v in meta["mean_tokens_per_pair"].items()) + ".",
             f"NDCG@10 on {meta['validation']['queries']} validation queries ({meta['validation']['pairs']} pairs).",
             f"Ours: Triton with {meta['ranker_instances']} ranker and {meta['tokenizer_instances']} tokenizer "
             f"instance(s); ONNX Runtime with {meta['engine']['threads']} threads, spinning "
             f"{'on' if meta['engine']['spinning'] else 'off'}, length-sorted chunks of <= "
             f"{meta['engine']['chunk_tokens']} tokens; ranker queue delay {meta['engine']['ranker_queue_delay_us']} µs.",
             f"Load average at start {', '.join(f'{x:.2f}' for x in meta['start']['loadavg'])}; at end "
             f"{', '.join(f'{x:.2f}' for x in meta['end']['loadavg'])} (`uptime`: {meta['end']['uptime']}); "
             f"1-minute load while measuring: mean {_fmt(meta['load_during']['mean'], '.2f')}, "
             f"max {_fmt(meta['load_during']['max'], '.2f')} (it counts the benchmark's own 4-8 client threads "
             f"and servers; the load at start tells whether other work shared the {meta['start']['cores']} cores).", ""]
    load = meta["start"]["loadavg"][0]
    if load > meta["start"]["cores"]:
        lines += [f"The machine was busy at the start (1-minute load {load:.1f} on {meta['start']['cores']} cores): "
                  "ratios come from one "
                  "interleaved run, but absolute times are slower than on an idle machine, and PyTorch's OpenMP "
                  "threads (naive, CrossEncoder, Infinity torch) lose more under contention than ONNX Runtime "
                  "threads that sleep when idle.", ""]
    for name in meta["workloads"]:
        lines += [f"## {name}", ""]
        if meta.get("only", {}).get(name):
            lines += [f"Measured on {name} only: systems whose key starts with "
                      f"{', '.join(f'`{p}`' for p in meta['only'][name])} (`--only`).", ""]
        lines += [
                  "| system | p50 ms | p95 ms | p50 vs naive | " +
                  " | ".join(f"req/s @{c} | pairs/s @{c} | vs naive @{c}" for c in clients) + " | NDCG@10 | peak RSS MB |",
                  "|---" * (6 + 3 * len(clients)) + "|"]
        for key, res in results.items():
            if name not in res:
                continue
            r, ratio = res[name], report["ratios"].get(key, {}).get(name, {})
            cells = [f"{res['label']} (`{key}`)", _fmt(r["p50_ms"]), _fmt(r["p95_ms"]),
                     _fmt(ratio.get("p50_vs_naive"), ".2f") + "×"]
            for c in clients:
                t = r.get(f"c{c}", {})
                cells += [_fmt(t.get("req_s"), ".2f"), _fmt(t.get("pairs_s"), ".0f"),
                          _fmt(ratio.get(f"c{c}_pairs_s_vs_naive"), ".2f") + "×"]
            cells += [_fmt(res.get("ndcg@10"), ".4f"), _fmt(res.get("peak_rss_mb"), ".0f")]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    steps = [(k, v["rank-50"]["steps_ms"]) for k, v in results.items() if "steps_ms" in v.get("rank-50", {})]
    if steps:
        lines += ["## Inside Triton (rank-50, sequential: server-side ms per request)", "",
                  "| system | client p50 | ensemble | tokenizer | ranker | ranker queue | sorter |", "|---" * 7 + "|"]
        for key, st in steps:
            ens, tok, rnk, srt = (st.get(m, {}) for m in (config.ENSEMBLE_MODEL, config.TOKENIZER_MODEL,
                                                           config.RANKER_MODEL, config.SORTER_MODEL))
            lines.append(f"| `{key}` | {results[key]['rank-50']['p50_ms']:.1f} | "
                         f"{ens.get('total', 0):.1f} | {tok.get('compute', 0):.1f} | "
                         f"{rnk.get('compute', 0):.1f} | {rnk.get('queue', 0):.1f} | {srt.get('compute', 0):.1f} |")
        lines += ["", "Ensemble = Triton's mean time from receiving a request to its response, over the "
                  "sequential run of both protocols (one server serves both); client p50 minus that is roughly "
                  "the protocol and client cost. Means, so they need not add up to the p50.", ""]
    lines += ["## Targets (rank-50)", ""]
    for name, t in report["targets"].items():
        if name == "quality":
            detail = (f"reference {t['reference']:.4f}; drops " + ", ".join(f"{k} {v:+.4f}" for k, v in t["drops"].items())
                      + f"; qualifying: {', '.join(t['qualifying']) or 'none'}")
        elif name == "overhead":
            detail = f"{t['system']} {t['overhead'] * 100:+.1f}%; all: " + ", ".join(
                f"{k} {v * 100:+.1f}%" for k, v in t["all"].items())
        elif name == "throughput":
            detail = f"{t['system']} / {t['against']} = {t['ratio']:.2f}×"
        else:
            detail = f"{t['system']}: {t['ratio']:.3f}× naive"
        lines.append(f"- **{'met' if t['met'] else 'NOT met'}** — {t['goal']}: {detail}")
    if report["skipped"]:
        lines += ["", "## Not run", ""]
        lines += [f"- `{k}`: {v}" for k, v in report["skipped"].items()]
    notes = [(k, n) for k, v in results.items() for n in v.get("notes", [])]
    if notes:
        lines += ["", "## Notes", ""] + [f"- `{k}`: {n}" for k, n in notes]
    lines += ["", "Peak RSS: servers only, summed over the server process and its children (Triton's Python "
              "backend stubs; Infinity's workers), sampled every 0.25 s while the model served this run.",
              "![latency](bench_latency.png)", "![throughput](bench_throughput.png)", ""]
    return "\n".join(lines)


def plot_latency(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["meta"]["workloads"])
    fig, axes = plt.subplots(1, len(names), figsize=(7 * len(names), 5), squeeze=False)
    for ax, name in zip(axes[0], names):
        keys = [k for k, v in report["systems"].items() if name in v]
        p50 = [report["systems"][k][name]["p50_ms"] for k in keys]
        p95 = [report["systems"][k][name]["p95_ms"] for k in keys]
        y = np.arange(len(keys))
        ax.barh(y - 0.2, p50, 0.4, label="p50")
        ax.barh(y + 0.2, p95, 0.4, label="p95")
        ax.set_yticks(y, keys)
        ax.invert_yaxis()
        ax.set_xscale("log")  # baselines take seconds, ours tens of ms
        ax.grid(axis="x", which="both", alpha=0.3)
        ax.set_xlabel("ms per request (sequential, log scale)")
        ax.set_title(f"{name}: latency")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_throughput(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["meta"]["workloads"])
    fig, axes = plt.subplots(1, len(names), figsize=(7 * len(names), 5), squeeze=False)
    for ax, name in zip(axes[0], names):
        size = report["meta"]["workloads"][name]
        colors = plt.get_cmap("tab20").colors
        for i, (key, res) in enumerate(report["systems"].items()):
            if name not in res:
                continue
            ours = key.startswith(("triton-", "ort-"))
            style = {"color": colors[i % len(colors)], "linestyle": "-" if ours else "--"}
            xs = [1] + [int(c[1:]) for c in res[name] if c.startswith("c")]
            ys = [size * 1000.0 / res[name]["mean_ms"]] + [res[name][c]["pairs_s"] for c in res[name] if c.startswith("c")]
            ax.plot(xs, ys, marker="o", label=key, **style)
        ax.set_xlabel("concurrent clients (1 = sequential)")
        ax.set_ylabel("pairs / s")
        ax.set_title(f"{name}: throughput (dashed: not ours)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
