#!/usr/bin/env bash
# `make gpu-check`: the GPU production path end to end, on an NVIDIA GPU host with TensorRT and a
# tritonserver that has the TensorRT backend (NVIDIA's container: `python -m shoprank.container image`).
#
# For each of FP16 and INT8: build the plan (polygraphy gate against ONNX Runtime inside),
# generate its own model repository, serve it with tritonserver from PATH, check the served
# rankings against in-process ONNX Runtime over gRPC and HTTP, run a short load, and stop.
# Needs the fine-tuned model and its FP32 ONNX (`make finetune onnx`, or `make demo`).
# Env: SHOPRANK (the shoprank command of a venv with requirements.txt + tensorrt), MODEL, GPU_CHECK_DIR,
# REQUESTS, CONCURRENCY.
set -euo pipefail
cd "$(dirname "$0")/.."
SHOPRANK=${SHOPRANK:-.venv/bin/shoprank}
PY=$(dirname "$SHOPRANK")/python
MODEL=${MODEL:-artifacts/model}
OUT=${GPU_CHECK_DIR:-.run/gpu-check}
REQUESTS=${REQUESTS:-400}
CONCURRENCY=${CONCURRENCY:-16}
SUMMARY="$OUT/summary.txt"

step() { printf '\n=== %s\n' "$*"; }

step "Python (the pinned requirements and the Python models need >= $("$PY" -m shoprank.container min-python))"
# First, before anything is built: an older Python (e.g. a Triton container before 24.12) fails
# later and obscurely (transformers, onnxruntime, contextlib.chdir). The facts: shoprank/container.py.
"$PY" -c 'import sys
from shoprank.container import python_problem
problem = python_problem(sys.version_info)
sys.exit(f"gpu-check: {problem}") if problem else print("Python", sys.version.split()[0], "ok")' || exit 3

step "TensorRT, GPU and tritonserver"
# require_tensorrt also compares the pip TensorRT with the server's libnvinfer: a plan built by
# another version fails only when Triton loads it.
"$PY" -c 'import sys
from shoprank.convert.tensorrt_env import libnvinfer_versions, require_tensorrt
from shoprank.errors import TensorRTUnavailable
try:
    print("TensorRT (python)", require_tensorrt().__version__, "| libnvinfer (server)",
          ", ".join(libnvinfer_versions()) or "not found")
except TensorRTUnavailable as exc:
    sys.exit(f"gpu-check: {exc}")' || exit 3
command -v tritonserver >/dev/null || {
  echo "no tritonserver on PATH: run inside $("$PY" -m shoprank.container image) (its TensorRT backend serves the plan)" >&2
  exit 3; }
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
[ -f "$MODEL/config.json" ] || { echo "no fine-tuned model at $MODEL: make finetune (or make demo) first" >&2; exit 2; }
[ -f artifacts/onnx/model.fp32.onnx ] || "$SHOPRANK" onnx --model "$MODEL"

mkdir -p "$OUT"
: > "$SUMMARY"
status=0
for precision in fp16 int8; do
  step "engine $precision"
  if ! "$SHOPRANK" engine --precision "$precision" --model "$MODEL" --repo "$OUT/repo-$precision" \
       --plan-dir "$OUT/plans"; then
    echo "$precision: engine build or polygraphy gate FAILED" >> "$SUMMARY"; status=1; continue
  fi
  step "serve the $precision ranker, rank checks over gRPC + HTTP, load ($REQUESTS requests x $CONCURRENCY threads)"
  if ! "$SHOPRANK" check-served --model "$MODEL" --repo "$OUT/repo-$precision" --precision "$precision" \
       --requests "$REQUESTS" --threads "$CONCURRENCY" --work-dir "$OUT" >> "$SUMMARY"; then
    status=1
  fi
done

step "summary"
cat "$SUMMARY"
[ "$status" = 0 ] && echo "gpu-check passed" || echo "gpu-check FAILED"
exit "$status"
