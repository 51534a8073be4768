#!/usr/bin/env python3
"""Compress the fine-tuned ranker: cut it to fewer layers, distil it from the full model, export
ONNX FP32 + INT8, and gate the student's INT8 against the teacher's FP32 on validation queries.
Exit 2 (and no student INT8 left behind) when the student ranks worse than the margin allows."""
import argparse
import json
import sys
from pathlib import Path

import _path  # noqa: F401

from shoprank import config
from shoprank.build_steps import BuildError, compare_engines, export_onnx, quantize_int8
from shoprank.modeling import model_max_length, read_model_card
from shoprank.quality_gate import DEFAULT_MAX_NDCG_DROP, check_ndcg
from shoprank.train import TrainConfig, finetune

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--teacher", default=str(config.ARTIFACTS_DIR / "model"))
    parser.add_argument("--teacher-onnx", default=str(config.ARTIFACTS_DIR / "onnx" / "model.fp32.onnx"))
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--out-dir", default=None, help="default: <teacher>-l<layers>")
    parser.add_argument("--onnx-dir", default=None, help="default: <artifacts>/onnx-l<layers>")
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--distill-weight", type=float, default=0.8)
    parser.add_argument("--max-ndcg-drop", type=float, default=DEFAULT_MAX_NDCG_DROP)
    args = parser.parse_args()
    teacher = Path(args.teacher)
    card = read_model_card(teacher)
    if not card:
        sys.exit(f"{teacher} has no model card (shoprank.json): fine-tune it first (make finetune)")
    if not Path(args.teacher_onnx).exists():
        sys.exit(f"{args.teacher_onnx} not found: run `make onnx` for the teacher first")
    out_dir = Path(args.out_dir or f"{teacher}-l{args.layers}")
    onnx_dir = Path(args.onnx_dir or config.ARTIFACTS_DIR / f"onnx-l{args.layers}")
    summary = finetune(TrainConfig(data=card.get("data"), mapping=card.get("mapping", "auto"), base_model=str(teacher),
                                   out_dir=str(out_dir), epochs=args.epochs, lr=args.lr,
                                   max_length=model_max_length(teacher), seed=card.get("seed", config.SEED),
                                   keep_layers=args.layers, teacher=str(teacher), distill_weight=args.distill_weight))
    print(f"student: {args.layers} layers, distilled in {summary['train_seconds']} s; "
          f"best valid NDCG@10 {summary['best']['ndcg@10']:.4f}")
    fp32, int8 = onnx_dir / "model.fp32.onnx", onnx_dir / "model.int8.onnx"
    try:
        export_onnx(out_dir, fp32)
    except BuildError as exc:
        sys.exit(f"student export failed: {exc}")
    # Fastest first: every MatMul INT8; then the first layer kept FP32 (the one INT8 hurts most).
    # The gate that decides: what would be served (student INT8) against the full FP32 model.
    tried = []
    for float_layers in ((), (0,)):
        try:
            quantize_int8(out_dir, fp32, int8, float_layers=float_layers)
        except BuildError as exc:
            tried.append({"float_layers": list(float_layers), "int8_vs_student_fp32": str(exc)})
            print(f"INT8 with FP32 layers {list(float_layers)}: {exc}")
            continue
        gate = compare_engines(teacher, args.teacher_onnx, int8)
        gate.update(float_layers=list(float_layers), max_ndcg_drop=args.max_ndcg_drop, passed=True)
        try:  # the project's gate rule (an undefined NDCG fails too)
            check_ndcg(gate["ndcg_reference"], gate["ndcg_candidate"], "student INT8", args.max_ndcg_drop)
        except BuildError as exc:
            gate.update(passed=False, why=str(exc))
        tried.append(gate)
        print(f"student INT8 (FP32 layers {list(float_layers)}) vs teacher FP32 on {gate['queries']} validation "
              f"queries: NDCG@10 {gate['ndcg_reference']:.4f} -> {gate['ndcg_candidate']:.4f} "
              f"(drop {gate['ndcg_drop']:+.4f}, limit {args.max_ndcg_drop}), Spearman {gate['spearman']:.4f}")
        if gate["passed"]:
            break
    report = {"teacher": str(teacher), "student": str(out_dir), "layers": args.layers, "tried": tried,
              "passed": bool(tried and tried[-1].get("passed"))}
    (onnx_dir / "distill_gate.json").write_text(json.dumps(report, indent=2, default=float))
    if not report["passed"]:
        int8.unlink(missing_ok=True)
        print(f"distilled model FAILED its quality gate (details {onnx_dir / 'distill_gate.json'}); "
              f"{int8} removed", file=sys.stderr)
        sys.exit(2)  # as documented: 2 = refused by the gate, 1 = the build itself failed
    print(f"serve it: make repository MODEL={out_dir} ENGINE_FILE={int8}  |  "
          f"bench it: make bench BENCH_ARGS='--engine l{args.layers}-int8={int8}'")
