"""Build commands: data, finetune, onnx, int8, qdq, engine, distill, repository, plot-training.

Exit codes: 0 done; 1 the step failed (a parity check, a missing input); 2 refused by the
quality gate, or a mistake in the data given (errors.DataError: one line from shoprank.cli.main);
3 (engine) TensorRT or the GPU is missing here.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from .. import config
from ..errors import BuildError, GateRefused, TensorRTUnavailable


def data(argv: list[str]) -> int:
    argparse.ArgumentParser(prog="shoprank data", description="write the synthetic default data").parse_args(argv)
    from ..data.synthetic import ensure_default_data

    print(ensure_default_data())
    return 0


def _flag(text: str) -> bool:
    return text.strip().lower() in ("1", "true", "yes", "on")  # bool("0") is True: parse the words


MAPPING_HELP = ("how the file's columns and labels are read: 'auto' (a ready mapping detected from the "
                "columns), homedepot, esci, wands, clicks, or your own columns as "
                "query:COL,text:COL[+COL],label:COL[,kind:binary|graded:LOW:HIGH|classes:A<B<C][,relevant:V] "
                "(docs/data.md)")


def finetune(argv: list[str]) -> int:
    from ..data.mappings import get_mapping
    from ..training.finetune import TrainConfig
    from ..training.finetune import finetune as run

    parser = argparse.ArgumentParser(prog="shoprank finetune", description="fine-tune the cross-encoder")
    for name, value in asdict(TrainConfig()).items():
        if name != "extra":
            kind = _flag if isinstance(value, bool) else (type(value) if value is not None else str)
            parser.add_argument("--" + name.replace("_", "-"), type=kind, default=value,
                                help=MAPPING_HELP if name == "mapping" else None)
    # COLUMNS= in the Makefile: the same value as --mapping, which the model card records as given.
    parser.add_argument("--columns", dest="mapping", default=argparse.SUPPRESS, help="the same as --mapping")
    cfg = TrainConfig(**vars(parser.parse_args(argv)))
    get_mapping(cfg.mapping)  # a bad spec stops here, before any weights load
    summary = run(cfg)
    best = summary["best"]
    print(f"fine-tuned in {summary['train_seconds']} s on {summary['train_pairs']} pairs "
          f"({summary['train_queries']} queries); best valid NDCG@10 {best['ndcg@10']:.4f} at step {best['step']}; "
          f"saved {cfg.out_dir}")
    return 0


def onnx(argv: list[str]) -> int:
    from ..convert.onnx_export import ONNX_MAX_ABS_DIFF, export_onnx

    parser = argparse.ArgumentParser(prog="shoprank onnx",
                                     description="export to ONNX; fails unless ONNX Runtime matches PyTorch")
    parser.add_argument("--model", default=str(config.MODEL_DIR))
    parser.add_argument("--out", default=str(config.onnx_file("fp32")))
    args = parser.parse_args(argv)
    try:
        report = export_onnx(args.model, args.out)
    except BuildError as exc:
        print(f"export failed: {exc}", file=sys.stderr)
        return 1
    print(f"ONNX opset {report['opset']} -> {report['onnx']}; ONNX Runtime vs PyTorch on "
          f"{report['pairs_checked']} real pairs: max |Δlogit| {report['max_abs_logit_diff']:.2e} "
          f"(limit {ONNX_MAX_ABS_DIFF:.0e})")
    return 0


def _verdict_line(r: dict) -> str:
    return (f"vs FP32 on {r['queries']} validation queries ({r['pairs']} pairs): Spearman {r['spearman']:.4f}, "
            f"top-10 overlap {r['topk_overlap']:.3f}, NDCG@10 {r['ndcg_reference']:.4f} -> {r['ndcg_candidate']:.4f} "
            f"(drop {r['ndcg_drop']:+.4f}, limit {r['max_ndcg_drop']})")


def int8(argv: list[str]) -> int:
    from ..convert.int8 import ACTIVATIONS, quantize_int8
    from ..quality.gate import INT8_MAX_NDCG_DROP

    parser = argparse.ArgumentParser(prog="shoprank int8", description="ONNX Runtime INT8 (per-channel weights, "
                                     "activations quantized on the fly), gated on validation NDCG@10 against FP32")
    parser.add_argument("--model", default=str(config.MODEL_DIR))
    parser.add_argument("--fp32", default=str(config.onnx_file("fp32")))
    parser.add_argument("--out", default=str(config.onnx_file("int8")))
    parser.add_argument("--max-ndcg-drop", type=float, default=INT8_MAX_NDCG_DROP)
    parser.add_argument("--activations", default=ACTIVATIONS[0], choices=ACTIVATIONS,
                        help="per-row: one scale per token row, a pair's score independent of the other rows "
                             "of an engine call; per-tensor: ONNX Runtime's one scale per call")
    args = parser.parse_args(argv)
    try:
        r = quantize_int8(args.model, args.fp32, args.out, args.max_ndcg_drop, activations=args.activations)
    except GateRefused as exc:
        print(f"INT8 refused by its quality gate: {exc}", file=sys.stderr)
        return 2
    except BuildError as exc:
        print(f"INT8 failed: {exc}", file=sys.stderr)
        return 1
    print(f"INT8 ({r['activations']} activations) -> {r['int8']}; " + _verdict_line(r))
    return 0


def qdq(argv: list[str]) -> int:
    from ..convert.qdq import CALIBRATION_PAIRS, METHODS, PLACEMENTS, QdqRecipe, quantize_qdq
    from ..quality.gate import MAX_NDCG_DROP

    default = QdqRecipe()
    parser = argparse.ArgumentParser(prog="shoprank qdq", description="explicit INT8 (QDQ) ONNX for TensorRT, "
                                     "calibrated on training pairs, gated on validation NDCG@10")
    parser.add_argument("--model", default=str(config.MODEL_DIR))
    parser.add_argument("--fp32", default=str(config.onnx_file("fp32")))
    parser.add_argument("--out", default=str(config.onnx_file("qdq")))
    parser.add_argument("--pairs", type=int, default=CALIBRATION_PAIRS,
                        help="calibration pairs from the training split")
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
    parser.add_argument("--max-ndcg-drop", type=float, default=MAX_NDCG_DROP)
    args = parser.parse_args(argv)
    recipe = QdqRecipe(per_channel=args.per_channel, method=args.method, percentile=args.percentile,
                       op_types=tuple(o for o in args.ops.split(",") if o), linear_only=args.linear_only,
                       float_after_activation=args.float_after_activation, exclude=tuple(args.exclude),
                       placement=args.placement, pre_process=args.pre_process)
    try:
        r = quantize_qdq(args.model, args.fp32, args.out, recipe, args.pairs, args.max_ndcg_drop)
    except GateRefused as exc:
        print(f"QDQ INT8 refused by its quality gate: {exc}", file=sys.stderr)
        return 2
    except (BuildError, FileNotFoundError) as exc:
        print(f"QDQ INT8 failed: {exc}", file=sys.stderr)
        return 1
    print(f"QDQ INT8 ({r['recipe_name']}, {r['calibration_pairs']} training pairs) -> {r['qdq']}; " + _verdict_line(r))
    return 0


def engine(argv: list[str]) -> int:
    """`make engine PRECISION=fp16|int8`: TensorRT plan for the ranker (NVIDIA GPU + TensorRT).

    Stops at once, before reading or writing anything, where TensorRT or the GPU is missing. INT8
    uses the QDQ ONNX (`make qdq`; built here when absent). The plan must pass polygraphy against
    ONNX Runtime on real inputs before the ranker in --repo is switched to target tensorrt.
    """
    from ..convert.tensorrt import PRECISIONS, TYPINGS, build_engine
    from ..quality.gate import MAX_NDCG_DROP

    parser = argparse.ArgumentParser(prog="shoprank engine", description=engine.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--precision", required=True, choices=PRECISIONS)
    parser.add_argument("--model", default=str(config.MODEL_DIR), help="fine-tuned HF folder")
    parser.add_argument("--onnx", default=None, help="FP32 ONNX (default artifacts/onnx/model.fp32.onnx)")
    parser.add_argument("--qdq", default=None, help="QDQ INT8 ONNX (default artifacts/onnx/model.qdq.onnx)")
    parser.add_argument("--repo", default=str(config.MODEL_REPOSITORY))
    parser.add_argument("--version", type=int, default=1)
    parser.add_argument("--plan-dir", default=str(config.PLAN_DIR))
    parser.add_argument("--typing", default="auto", choices=TYPINGS,
                        help="weak: FP16/INT8 builder flags + FP32 layer constraints (TensorRT 10); "
                             "strong: types from the ONNX (TensorRT 10 and 11); auto: weak where available")
    parser.add_argument("--max-ndcg-drop", type=float, default=MAX_NDCG_DROP,
                        help="NDCG@10 margin for the QDQ / FP16 ONNX built on the way")
    args = parser.parse_args(argv)
    try:
        r = build_engine(args.model, args.precision, args.onnx, args.qdq, args.repo, args.version,
                         args.plan_dir, args.typing, args.max_ndcg_drop)
    except TensorRTUnavailable as exc:  # this host cannot build engines at all
        print(f"make engine: {exc}", file=sys.stderr)
        return 3
    except GateRefused as exc:
        print(f"make engine refused by the quality gate: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # BuildError / AccuracyMiss / parser errors: the message says which
        print(f"make engine failed ({type(exc).__name__}): {exc}", file=sys.stderr)
        return 1
    p = r["polygraphy"]
    print(f"TensorRT {r['tensorrt']} {r['precision']} plan ({r['typing']} typing, {r['build_seconds']} s) "
          f"-> {r['plan']}\n"
          f"polygraphy vs ONNX Runtime on {p['batches']} real batches ({p['rows']} pairs): max |Δlogit| "
          f"{p['max_abs_logit_diff']:.4f} (atol {p['tolerance']['atol']}, rtol {p['tolerance']['rtol']}), "
          f"min top-10 overlap {p['min_top10_overlap']:.2f}\n"
          f"ranker in {r['repository']} now serves it (platform tensorrt_plan, version {r['version']})")
    return 0


def distill(argv: list[str]) -> int:
    from ..convert.student import build_student
    from ..quality.gate import MAX_NDCG_DROP
    from ..training.distill import ACTIVATION, DISTILL_WEIGHT, EPOCHS, HEADS, INTERMEDIATE, LAYERS, LR
    from ..training.model import ACTIVATIONS

    parser = argparse.ArgumentParser(prog="shoprank distill", description="compress the fine-tuned ranker: fewer "
                                     "layers, distilled, ONNX + INT8, gated against the full model's FP32")
    parser.add_argument("--teacher", default=str(config.MODEL_DIR))
    parser.add_argument("--teacher-onnx", default=str(config.onnx_file("fp32")))
    parser.add_argument("--layers", type=int, default=LAYERS)
    parser.add_argument("--out-dir", default=None, help="default: <teacher>-l<layers>")
    parser.add_argument("--onnx-dir", default=None, help="default: <artifacts>/onnx-l<layers>")
    parser.add_argument("--epochs", type=float, default=EPOCHS)
    parser.add_argument("--lr", type=float, default=LR)
    parser.add_argument("--distill-weight", type=float, default=DISTILL_WEIGHT)
    parser.add_argument("--max-ndcg-drop", type=float, default=MAX_NDCG_DROP)
    parser.add_argument("--intermediate", type=int, default=INTERMEDIATE,
                        help=f"cut each layer's feed-forward block to at most this many units (default "
                             f"{INTERMEDIATE}; 0: keep them whole)")
    parser.add_argument("--heads", type=int, default=HEADS,
                        help=f"cut each layer's attention to at most this many heads (default {HEADS}; "
                             "0: keep them all)")
    parser.add_argument("--activation", default=ACTIVATION, choices=(*ACTIVATIONS, "teacher"),
                        help=f"feed-forward activation of the student (default {ACTIVATION}; "
                             "teacher: the teacher's own)")
    args = parser.parse_args(argv)
    if args.intermediate < 0:
        parser.error("--intermediate must be 0 (keep the feed-forward blocks whole) or a number of units")
    if args.heads < 0:
        parser.error("--heads must be 0 (keep every attention head) or a number of heads")
    try:
        report = build_student(args.teacher, args.teacher_onnx, args.layers, args.out_dir, args.onnx_dir,
                               args.epochs, args.lr, args.distill_weight, args.max_ndcg_drop, args.intermediate,
                               args.heads, "" if args.activation == "teacher" else args.activation)
    except GateRefused as exc:
        print(f"distilled model refused: {exc}", file=sys.stderr)
        return 2  # as documented: 2 = refused by the gate, 1 = the build itself failed
    except (BuildError, FileNotFoundError) as exc:
        print(f"distill failed: {exc}", file=sys.stderr)
        return 1
    print(f"serve it: make repository MODEL={report['student']} ENGINE_FILE={report['int8']}  |  "
          f"bench it: make bench BENCH_ARGS='--engine l{args.layers}-int8={report['int8']}'")
    return 0


def repository(argv: list[str]) -> int:
    from ..serving.head import has_head, head_dir
    from ..serving.triton.repository import TARGETS, build_repository

    parser = argparse.ArgumentParser(prog="shoprank repository", description="generate the Triton model repository")
    parser.add_argument("--model", default=str(config.MODEL_DIR), help="fine-tuned HF folder")
    parser.add_argument("--engine", required=True,
                        help="ONNX file or TensorRT plan for the ranker; 'auto': the fastest variant that passed "
                             "its quality gate (the distilled student's INT8, else the full INT8)")
    parser.add_argument("--onnx-dir", default=str(config.ONNX_DIR), help="with --engine auto: the model's engines")
    parser.add_argument("--student-engine", default=str(config.ARTIFACTS_DIR / "onnx-l3" / "model.int8.onnx"),
                        help="with --engine auto: the distilled student's INT8 (make distill)")
    parser.add_argument("--repo", default=str(config.MODEL_REPOSITORY))
    parser.add_argument("--target", default="python", choices=TARGETS)
    parser.add_argument("--ranker-instances", type=int, default=config.RANKER_INSTANCES)
    parser.add_argument("--tokenizer-instances", type=int, default=config.TOKENIZER_INSTANCES)
    parser.add_argument("--head", default="auto", choices=("auto", "on", "off"),
                        help="serve the model's scoring head (auto: when `shoprank head` installed one)")
    parser.add_argument("--personal", default="auto", choices=("auto", "on", "off"),
                        help="serve the personal head (USER_ID / USER_CONTEXT; auto: when `make personalize` "
                             "installed one in --model's folder)")
    args = parser.parse_args(argv)
    from ..serving.personal import personal_dir

    personal_head = personal_dir(args.model)  # trained on --model's logits, also beside a distilled student
    choice = None
    if args.engine == "auto":
        from ..convert.served import choose_served

        if args.target == "tensorrt":
            parser.error("--engine auto chooses among ONNX engines; TARGET=tensorrt serves a plan (make engine)")
        try:
            choice = choose_served(args.model, args.onnx_dir, args.student_engine)
        except FileNotFoundError as exc:
            print(f"repository: {exc}", file=sys.stderr)
            return 1
        args.model, args.engine = choice["model"], choice["engine"]
    try:
        repo = build_repository(args.model, args.engine, args.repo, args.target,
                                head={"auto": None, "on": True, "off": False}[args.head],
                                personal={"auto": None, "on": True, "off": False}[args.personal],
                                personal_head=personal_head,
                                ranker_instances=args.ranker_instances, tokenizer_instances=args.tokenizer_instances)
    except FileNotFoundError as exc:
        print(f"repository: {exc}", file=sys.stderr)
        return 1
    from ..convert.served import SERVED_FILE

    served_head = has_head(head_dir(Path(repo) / config.SORTER_MODEL / "1"))
    served_personal = has_head(Path(repo) / config.SORTER_MODEL / "1" / personal_head.name)
    print(f"model repository {repo} ready for target {args.target} (engine {args.engine}"
          f"{', scoring head' if served_head else ''}{', personal head' if served_personal else ''})")
    choice = choice or {"variant": "as asked", "engine": args.engine, "model": args.model,
                        "why": "the engine given (--engine / make repository ENGINE=)"}
    (Path(repo) / config.RANKER_MODEL / SERVED_FILE).write_text(json.dumps(choice, indent=2))
    print(f"serving the {choice['variant']} ({choice['engine']}): {choice['why']}")
    return 0


def head(argv: list[str]) -> int:
    """`shoprank head`: fit the scoring head of a fine-tuned cross-encoder on out-of-fold logits
    of its fold models (MODEL.fold<k>of<K>, trained by `finetune --folds K --holdout-fold k`) and
    the lexical features; judged on the validation split; installed in MODEL/head/ when it does
    not lose NDCG@10 against the cross-encoder alone (exit 2 otherwise)."""
    from ..training.head import HeadFit
    from ..training.head_build import MAX_NDCG_DROP, build_head

    parser = argparse.ArgumentParser(prog="shoprank head", description=head.__doc__)
    parser.add_argument("--model", default=str(config.MODEL_DIR), help="fine-tuned cross-encoder folder")
    parser.add_argument("--folds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=HeadFit.epochs)
    parser.add_argument("--max-ndcg-drop", type=float, default=MAX_NDCG_DROP)
    parser.add_argument("--report", default=str(config.REPORTS_DIR / "head.json"))
    args = parser.parse_args(argv)
    r = build_head(args.model, args.folds, HeadFit(epochs=args.epochs), args.max_ndcg_drop, args.report)
    ce, hd, diff = r["valid"]["cross-encoder"], r["valid"]["head"], r["head_minus_ce_ndcg@10"]
    print(f"head: {r['choice']['chosen']} over {len(r['features'])} features, chosen on "
          f"{r['choice']['inner_queries']} held-out training queries; validation ({r['valid_queries']} queries):")
    for name, m in (("cross-encoder", ce), ("head", hd)):
        print(f"  {name:<14} NDCG@10 {m['ndcg@10']:.4f}  MRR {m['mrr']:.4f}  RMSE {m.get('rmse_grade')}")
    print(f"  head - cross-encoder NDCG@10 {diff['mean']:+.4f} (95% CI {diff['low']:+.4f} .. {diff['high']:+.4f})")
    for name, m in r["ablation"].items():
        print(f"  {name:<24} NDCG@10 {m['ndcg@10']:.4f} ({m['ndcg_change_vs_head']:+.4f})")
    if not r["gate"]["passed"]:
        print(f"head refused: it loses NDCG@10 against the cross-encoder alone; nothing installed "
              f"(report {args.report})", file=sys.stderr)
        return 2
    print(f"installed {r['gate']['installed']} (report {args.report})")
    return 0


def plot_training(argv: list[str]) -> int:
    from ..training.plots import plot_training as plot

    parser = argparse.ArgumentParser(prog="shoprank plot-training", description="plot a fine-tuned model's "
                                     "validation curves (metrics.json) and train loss to <model>/training.png")
    parser.add_argument("model", help="fine-tuned model folder (with metrics.json)")
    parser.add_argument("--out", default=None, help="PNG path (default: <model>/training.png)")
    args = parser.parse_args(argv)
    print(f"wrote {plot(Path(args.model), args.out)}")
    return 0
