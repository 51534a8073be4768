"""`make bench`: our served ranker side by side with what a user would otherwise run.

One run, the same fine-tuned model, the same fixed requests for every system (systems.py,
infinity.py): naive PyTorch, sentence-transformers' CrossEncoder, Infinity (torch and ONNX),
our Triton ensemble per engine over gRPC and HTTP, and the bare engine in-process. Workloads
"rank-50"/"rank-200": one query with 50/200 real product titles (shoprank.data.requests). For
each: sequential latency after warm-up, then throughput with several concurrent clients
(timing.py); quality is NDCG@10 of each system on the model's validation queries. Report and
targets: report.py.
"""
from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ... import config
from ...config import WORKLOAD_SIZES
from ...data.requests import RequestPool
from ...data.split import model_pairs
from ...model_card import model_max_length, read_model_card
from ...serving.server import free_ports
from ...serving.tokenizer import PairEncoder
from .cache import head_heavy
from .infinity import BENCH_VENV, INFINITY_ENGINES, InfinityServer
from .report import ratios, targets
from .systems import TritonVariant, bare_engine, crossencoder, naive_pytorch
from .timing import measure

BENCH_DIR = config.ARTIFACTS_DIR / "bench"           # scratch: repositories, logs, Infinity model copies


@dataclass
class BenchConfig:
    model_dir: Path = config.MODEL_DIR
    onnx_dir: Path = config.ONNX_DIR
    out_dir: Path = config.REPORTS_DIR
    work_dir: Path = BENCH_DIR
    requests: int = 100
    warmup: int = 10
    workloads: tuple[str, ...] = ("rank-50", "rank-200")
    clients: tuple[int, ...] = (4, 8)
    systems: tuple[str, ...] = ()        # key prefixes to run; empty = all
    skip: tuple[str, ...] = ()           # key prefixes to leave out
    quality_queries: int = 0             # validation queries for NDCG (0 = all)
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
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), "")
    import onnxruntime
    import torch

    return {"date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()), "cpu": cpu, "cores": os.cpu_count(),
            "loadavg": list(load), "uptime": uptime, "python": platform.python_version(),
            "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
            "torch_threads": torch.get_num_threads()}


def run(cfg: BenchConfig, log=print) -> dict:
    model_dir = Path(cfg.model_dir)
    if not (model_dir / "config.json").exists():
        raise FileNotFoundError(f"no fine-tuned model at {model_dir}: run `make finetune onnx int8` first")
    cfg.work_dir.mkdir(parents=True, exist_ok=True)
    max_length = model_max_length(model_dir)
    pool = RequestPool.from_spec("auto")
    workloads = {name: pool.distinct(WORKLOAD_SIZES[name], cfg.requests) for name in cfg.workloads}
    # Warm-up requests come from other queries (seed offset) than the measured ones.
    warmup = {name: pool.distinct(WORKLOAD_SIZES[name], cfg.warmup, seed=config.SEED + 7) for name in cfg.workloads}
    valid = model_pairs(model_dir, "valid", limit_queries=cfg.quality_queries)
    engines = {e: config.onnx_file(e, cfg.onnx_dir) for e in config.ONNX_KINDS
               if config.onnx_file(e, cfg.onnx_dir).exists()}
    for name, path in cfg.extra_engines.items():
        if not Path(path).exists():
            raise FileNotFoundError(f"engine {name}: {path} not found")
        engines[name] = Path(path)
    start_facts = machine_facts()
    # 3 ports per Triton (one per engine), then 1 per Infinity engine.
    count = 3 * len(engines) + len(INFINITY_ENGINES)
    ports = list(range(cfg.port_base, cfg.port_base + count)) if cfg.port_base else free_ports(count)
    log(f"bench: model {model_dir} (max length {max_length}), data {pool.source}, "
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
                 "data": pool.source, "requests": cfg.requests, "warmup": cfg.warmup,
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
    served = served_engine(engines)
    if served and _wanted(cfg, "head-heavy"):  # with and without the response cache (cache.py)
        # 2,000 warm-up + 800 measured requests at the default 100 (scaled down by --quick).
        report["head_heavy"] = head_heavy(model_dir, engines[served], served, cfg.work_dir, clients=max(cfg.clients),
                                          warm=20 * cfg.requests, requests=8 * cfg.requests, log=log)
    return report


def served_engine(engines: dict) -> str | None:
    """The engine `make repository` serves by default: the distilled student when it was built
    (its gate passed), else the full INT8 model."""
    student = next((e for e in engines if e.startswith("l") and e.endswith("-int8")), None)
    return student or ("int8" if "int8" in engines else None)


def _mean_tokens(model_dir: Path, max_length: int, workloads: dict) -> dict:
    encoder = PairEncoder.from_dir(model_dir, max_length=max_length, buckets=None)
    out = {}
    for name, requests in workloads.items():
        lengths = [int(encoder.encode(r.query, r.texts)["attention_mask"].sum(1).mean()) for r in requests[:20]]
        longest = [encoder.encode(r.query, r.texts)["input_ids"].shape[1] for r in requests[:20]]
        out[name] = {"mean": float(np.mean(lengths)), "longest_in_request_mean": float(np.mean(longest))}
    return out
