#!/usr/bin/env python3
"""`make engine PRECISION=fp16|int8`: TensorRT plan for the ranker (NVIDIA GPU + TensorRT).

Stops at once, before reading or writing anything, where TensorRT or the GPU is missing. INT8
uses the QDQ ONNX (`make qdq`; built here when absent). The plan must pass polygraphy against
ONNX Runtime on real inputs before the ranker in --repo is switched to target tensorrt.
"""
import argparse
import sys

import _path  # noqa: F401

from shoprank import config
from shoprank.tensorrt import PLAN_DIR, PRECISIONS, TYPINGS, TensorRTUnavailable, build_engine

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--precision", required=True, choices=PRECISIONS)
    parser.add_argument("--model", default=str(config.ARTIFACTS_DIR / "model"), help="fine-tuned HF folder")
    parser.add_argument("--onnx", default=None, help="FP32 ONNX (default artifacts/onnx/model.fp32.onnx)")
    parser.add_argument("--qdq", default=None, help="QDQ INT8 ONNX (default artifacts/onnx/model.qdq.onnx)")
    parser.add_argument("--repo", default=str(config.MODEL_REPOSITORY))
    parser.add_argument("--version", type=int, default=1)
    parser.add_argument("--plan-dir", default=str(PLAN_DIR))
    parser.add_argument("--typing", default="auto", choices=TYPINGS,
                        help="weak: FP16/INT8 builder flags + FP32 layer constraints (TensorRT 10); "
                             "strong: types from the ONNX (TensorRT 10 and 11); auto: weak where available")
    parser.add_argument("--max-ndcg-drop", type=float, default=None,
                        help="NDCG@10 margin for the QDQ / FP16 ONNX built on the way (default 0.005)")
    args = parser.parse_args()
    try:
        r = build_engine(args.model, args.precision, args.onnx, args.qdq, args.repo, args.version,
                         args.plan_dir, args.typing, args.max_ndcg_drop)
    except TensorRTUnavailable as exc:  # exit 3: this host cannot build engines at all
        print(f"make engine: {exc}", file=sys.stderr)
        sys.exit(3)
    except Exception as exc:  # BuildError / AccuracyMiss / parser errors: the message says which
        sys.exit(f"make engine failed ({type(exc).__name__}): {exc}")
    p = r["polygraphy"]
    print(f"TensorRT {r['tensorrt']} {r['precision']} plan ({r['typing']} typing, {r['build_seconds']} s) -> {r['plan']}\n"
          f"polygraphy vs ONNX Runtime on {p['batches']} real batches ({p['rows']} pairs): max |Δlogit| "
          f"{p['max_abs_logit_diff']:.4f} (atol {p['tolerance']['atol']}, rtol {p['tolerance']['rtol']}), "
          f"min top-10 overlap {p['min_top10_overlap']:.2f}\n"
          f"ranker in {r['repository']} now serves it (platform tensorrt_plan, version {r['version']})")
