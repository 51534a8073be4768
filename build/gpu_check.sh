#!/usr/bin/env bash
# `make gpu-check`: the GPU production path end to end, on an NVIDIA GPU host with TensorRT and a
# tritonserver that has the TensorRT backend (NVIDIA's container: nvcr.io/nvidia/tritonserver:<yy.mm>-py3).
#
# For each of FP16 and INT8: build the plan (polygraphy gate against ONNX Runtime inside),
# generate its own model repository, serve it with tritonserver from PATH, check the served
# rankings against in-process ONNX Runtime over gRPC and HTTP, run a short load, and stop.
# Needs the fine-tuned model and its FP32 ONNX (`make finetune onnx`, or `make demo`).
# Env: PY (python with requirements.txt + tensorrt), MODEL, GPU_CHECK_DIR, REQUESTS, CONCURRENCY.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
MODEL=${MODEL:-artifacts/model}
OUT=${GPU_CHECK_DIR:-.run/gpu-check}
REQUESTS=${REQUESTS:-400}
CONCURRENCY=${CONCURRENCY:-16}
SUMMARY="$OUT/summary.txt"

step() { printf '\n=== %s\n' "$*"; }

step "TensorRT, GPU and tritonserver"
"$PY" -c 'import sys
from shoprank.tensorrt import TensorRTUnavailable, require_tensorrt
try:
    print("TensorRT (python)", require_tensorrt().__version__)
except TensorRTUnavailable as exc:
    sys.exit(f"gpu-check: {exc}")' || exit 3
command -v tritonserver >/dev/null || {
  echo "no tritonserver on PATH: run inside nvcr.io/nvidia/tritonserver:<yy.mm>-py3 (its TensorRT backend serves the plan)" >&2
  exit 3; }
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
# A plan loads only in the TensorRT that built it: show the server's libnvinfer beside the python one.
(dpkg-query -W -f='libnvinfer (tritonserver) ${Version}\n' 'libnvinfer10' 2>/dev/null || true)
[ -f "$MODEL/config.json" ] || { echo "no fine-tuned model at $MODEL: make finetune (or make demo) first" >&2; exit 2; }
[ -f artifacts/onnx/model.fp32.onnx ] || "$PY" build/export_onnx.py --model "$MODEL"

mkdir -p "$OUT"
: > "$SUMMARY"
status=0
for precision in fp16 int8; do
  step "engine $precision"
  if ! "$PY" build/build_engine.py --precision "$precision" --model "$MODEL" --repo "$OUT/repo-$precision" \
       --plan-dir "$OUT/plans"; then
    echo "$precision: engine build or polygraphy gate FAILED" >> "$SUMMARY"; status=1; continue
  fi
  step "serve the $precision ranker, rank checks over gRPC + HTTP, load ($REQUESTS requests x $CONCURRENCY threads)"
  if ! "$PY" - "$MODEL" "$OUT/repo-$precision" "$precision" "$REQUESTS" "$CONCURRENCY" "$OUT" >> "$SUMMARY" <<'EOF'
import concurrent.futures as futures
import sys
import time
from pathlib import Path

import numpy as np

from shoprank import data, metrics, server
from shoprank.build_steps import FP32_ONNX, validation_pairs
from shoprank.client import RankClient
from shoprank.engine import OrtEngine
from shoprank.modeling import model_max_length
from shoprank.polygraphy_check import TOLERANCES
from shoprank.qdq import QDQ_ONNX
from shoprank.tokenize import PairEncoder

model, repo, precision, requests, threads, out = sys.argv[1:7]
tol = TOLERANCES[precision]
reference = OrtEngine(FP32_ONNX if tol.reference == "fp32" else QDQ_ONNX)
encoder = PairEncoder.from_dir(model, max_length=model_max_length(model))
valid = validation_pairs(model)
texts = valid["text"].tolist()
groups = [(q, [texts[i] for i in idx]) for q, idx in data.query_groups(valid) if len(idx) >= 3][:30]
endpoints = server.Endpoints("127.0.0.1", *server.free_ports(3))
proc = server.start(Path(repo), endpoints, log_path=Path(out) / f"tritonserver-{precision}.log",
                    run_dir=Path(out) / f"run-{precision}")
problems = []
try:
    worst, overlaps = 0.0, []
    for protocol, url in (("grpc", endpoints.grpc), ("http", endpoints.http)):
        with RankClient(url, protocol) as client:
            for query, cands in groups:
                idx, scores = client.infer_raw(query, cands, 0)
                ref = reference.logits(encoder.encode(query, cands))
                served = np.empty(len(cands))
                served[idx] = np.log(np.clip(scores, 1e-7, 1 - 1e-7) / np.clip(1 - scores, 1e-7, 1))
                worst = max(worst, float(np.max(np.abs(served - ref))))
                if np.any(np.abs(served - ref) > tol.atol + tol.rtol * np.abs(ref)):
                    problems.append(f"{protocol} {query!r}: served logits outside atol {tol.atol} / rtol {tol.rtol}")
                overlaps.append(metrics.topk_overlap(served, ref))
                top = client.infer_raw(query, cands, 3)[0]
                if top.tolist() != idx[:3].tolist():
                    problems.append(f"{protocol} {query!r}: TOP_K=3 is not the head of the full ranking")
    pool = sorted(set(texts))
    queries = valid["query"].drop_duplicates().tolist()
    with RankClient(endpoints.grpc, "grpc") as client:
        def one(i):
            cands = [pool[(i * 50 + j) % len(pool)] for j in range(50)]
            started = time.perf_counter()
            client.infer_raw(queries[i % len(queries)], cands, 10)
            return (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        with futures.ThreadPoolExecutor(int(threads)) as ex:
            lat = sorted(ex.map(one, range(int(requests))))
        wall = time.perf_counter() - started
    p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
    print(f"{precision}: {len(groups)} queries x gRPC+HTTP vs ONNX Runtime ({tol.reference}): max |Δlogit| {worst:.4f}, "
          f"mean top-10 overlap {np.mean(overlaps):.3f}; load rank-50 x {requests} @ {threads} threads: "
          f"{len(lat) / wall:.0f} req/s, p50 {p(0.5):.1f} ms, p95 {p(0.95):.1f} ms, p99 {p(0.99):.1f} ms"
          + ("" if not problems else f"; FAILED: {len(problems)} problems, first: {problems[0]}"))
finally:
    server.stop_process(proc)
sys.exit(1 if problems else 0)
EOF
  then status=1; fi
done

step "summary"
cat "$SUMMARY"
[ "$status" = 0 ] && echo "gpu-check passed" || echo "gpu-check FAILED"
exit "$status"
