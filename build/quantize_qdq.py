#!/usr/bin/env python3
"""`make qdq`: explicit INT8 (QDQ) ONNX for TensorRT, calibrated on real training pairs; fails if
validation NDCG@10 under ONNX Runtime drops more than --max-ndcg-drop against FP32."""
import argparse
import sys

import _path  # noqa: F401

from shoprank import config
from shoprank.build_steps import FP32_ONNX, BuildError
from shoprank.qdq import CALIBRATION_PAIRS, METHODS, PLACEMENTS, QDQ_MAX_NDCG_DROP, QDQ_ONNX, QdqRecipe, quantize_qdq

if __name__ == "__main__":
    default = QdqRecipe()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=str(config.ARTIFACTS_DIR / "model"))
    parser.add_argument("--fp32", default=str(FP32_ONNX))
    parser.add_argument("--out", default=str(QDQ_ONNX))
    parser.add_argument("--pairs", type=int, default=CALIBRATION_PAIRS, help="calibration pairs from the training split")
    parser.add_argument("--method", default=default.method, choices=METHODS)
    parser.add_argument("--percentile", type=float, default=default.percentile)
    parser.add_argument("--per-channel", action=argparse.BooleanOptionalAction, default=default.per_channel)
    parser.add_argument("--ops", default=",".join(default.op_types), help="op types to quantize, comma separated")
    parser.add_argument("--linear-only", action=argparse.BooleanOptionalAction, default=default.linear_only,
                        help="only MatMuls with a weight (attention score/context MatMuls stay float)")
    parser.add_argument("--float-after-activation", action=argparse.BooleanOptionalAction,
                        default=default.float_after_activation,
                        help="leave MatMul/Gemm fed by GELU/ReLU/tanh (the FFN down-projection) in float")
    parser.add_argument("--exclude", action="append", default=[], help="regex of node names to leave in float")
    parser.add_argument("--placement", default=default.placement, choices=PLACEMENTS)
    parser.add_argument("--pre-process", action=argparse.BooleanOptionalAction, default=default.pre_process)
    parser.add_argument("--max-ndcg-drop", type=float, default=QDQ_MAX_NDCG_DROP)
    args = parser.parse_args()
    recipe = QdqRecipe(per_channel=args.per_channel, method=args.method, percentile=args.percentile,
                       op_types=tuple(o for o in args.ops.split(",") if o), linear_only=args.linear_only,
                       float_after_activation=args.float_after_activation, exclude=tuple(args.exclude),
                       placement=args.placement, pre_process=args.pre_process)
    try:
        r = quantize_qdq(args.model, args.fp32, args.out, recipe, args.pairs, args.max_ndcg_drop)
    except BuildError as exc:
        sys.exit(f"QDQ INT8 failed its quality gate: {exc}")
    print(f"QDQ INT8 ({r['recipe_name']}, {r['calibration_pairs']} training pairs) -> {r['qdq']}; vs FP32 on "
          f"{r['queries']} validation queries ({r['pairs']} pairs): Spearman {r['spearman']:.4f}, top-10 overlap "
          f"{r['topk_overlap']:.3f}, NDCG@10 {r['ndcg_reference']:.4f} -> {r['ndcg_candidate']:.4f} "
          f"(drop {r['ndcg_drop']:+.4f}, limit {r['max_ndcg_drop']})")
