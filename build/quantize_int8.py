#!/usr/bin/env python3
"""ONNX Runtime INT8 (per-channel dynamic); fails if validation NDCG@10 drops too far vs FP32."""
import argparse
import sys

import _path  # noqa: F401

from shoprank import config
from shoprank.build_steps import FP32_ONNX, INT8_MAX_NDCG_DROP, INT8_ONNX, BuildError, quantize_int8

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=str(config.ARTIFACTS_DIR / "model"))
    parser.add_argument("--fp32", default=str(FP32_ONNX))
    parser.add_argument("--out", default=str(INT8_ONNX))
    parser.add_argument("--max-ndcg-drop", type=float, default=INT8_MAX_NDCG_DROP)
    args = parser.parse_args()
    try:
        r = quantize_int8(args.model, args.fp32, args.out, args.max_ndcg_drop)
    except BuildError as exc:
        sys.exit(f"INT8 failed its quality gate: {exc}")
    print(f"INT8 -> {r['int8']}; vs FP32 on {r['queries']} validation queries ({r['pairs']} pairs): "
          f"Spearman {r['spearman']:.4f}, top-10 overlap {r['topk_overlap']:.3f}, "
          f"NDCG@10 {r['ndcg_reference']:.4f} -> {r['ndcg_candidate']:.4f} (drop {r['ndcg_drop']:+.4f}, "
          f"limit {r['max_ndcg_drop']})")
