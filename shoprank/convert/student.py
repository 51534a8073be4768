"""`make distill`: the fine-tuned model compressed to fewer, narrower layers and served as INT8, gated.

Steps: distil the student (shoprank.training.distill: fewer layers, narrower feed-forward blocks,
fewer attention heads, ReLU), export its ONNX (parity-checked), then
INT8 with every MatMul quantized; the gate that decides is what would be served (the student's
INT8) against the full teacher's FP32 on the teacher's validation queries. Fastest first:
activations with calibrated constant scales (shoprank.convert.calibrated, ~1.2x the per-row
engine's speed, docs/benchmark.md), then per-row scales, each with every layer INT8 and then
with the student's first layer (the one INT8 hurts most) kept FP32; the first INT8 the gate
accepts is the student's.
A student whose attention was cut or whose activation changed (ReLU) and that no INT8 passes is
distilled once more with every head and the teacher's activation (those cost quality first:
docs/benchmark.md, "Compression").
The gates' verdicts go to <onnx_dir>/distill_gate.json; a refused student leaves no INT8 behind.
"""
from __future__ import annotations

import json
from pathlib import Path

from .. import config
from ..data.split import model_pairs
from ..errors import BuildError, GateRefused
from ..quality.gate import MAX_NDCG_DROP, gate_engines
from ..training.distill import (
    ACTIVATION,
    DISTILL_WEIGHT,
    EPOCHS,
    HEADS,
    INTERMEDIATE,
    LAYERS,
    LR,
    distill_student,
    student_dir,
)
from .int8 import quantize_int8
from .onnx_export import export_onnx

# Fastest first: calibrated, then per-row activation scales (both isolated); every MatMul INT8,
# then the first layer kept FP32.
INT8_CHOICES = tuple((activations, float_layers) for activations in ("calibrated", "per-row")
                     for float_layers in ((), (0,)))


def build_student(teacher: str | Path = config.MODEL_DIR, teacher_onnx: str | Path | None = None,
                  layers: int = LAYERS, out_dir: str | Path | None = None, onnx_dir: str | Path | None = None,
                  epochs: float = EPOCHS, lr: float = LR, distill_weight: float = DISTILL_WEIGHT,
                  max_ndcg_drop: float = MAX_NDCG_DROP, intermediate: int = INTERMEDIATE, heads: int = HEADS,
                  activation: str = ACTIVATION, log=print) -> dict:
    """Distil, export, quantize and gate (module doc). A student with its attention cut to `heads`
    or given another `activation` that no INT8 passes is distilled once more with every head and
    the teacher's activation (those two cost quality first). Returns the report; raises
    GateRefused (after writing the report) when no INT8 student passes."""
    teacher = Path(teacher)
    teacher_onnx = Path(teacher_onnx or config.onnx_file("fp32"))
    if not teacher_onnx.exists():
        raise FileNotFoundError(f"{teacher_onnx} not found: run `make onnx` for the teacher first")
    out_dir = Path(out_dir or student_dir(teacher, layers))
    onnx_dir = Path(onnx_dir or config.ARTIFACTS_DIR / f"onnx-l{layers}")
    int8 = config.onnx_file("int8", onnx_dir)
    valid = model_pairs(teacher, "valid")  # the teacher's validation queries, read once
    attempts = []
    for cut, act in ([(heads, activation), (0, "")] if heads or activation else [(0, "")]):
        if attempts:
            log(f"student with {_shape(attempts[-1]['heads'], attempts[-1]['activation'])} refused: distilling it "
                f"again with {_shape(0, '')}")
        summary = distill_student(teacher, layers, out_dir, epochs, lr, distill_weight, intermediate, cut, act)
        log(f"student: {layers} layers, feed-forward blocks of at most {intermediate or 'all'} units, "
            f"{_shape(cut, act)}, distilled in {summary['train_seconds']} s; "
            f"best valid NDCG@10 {summary['best']['ndcg@10']:.4f}")
        tried = _quantize_and_gate(teacher, teacher_onnx, out_dir, onnx_dir, valid, max_ndcg_drop, log)
        report = {"teacher": str(teacher), "student": str(out_dir), "layers": layers, "intermediate": intermediate,
                  "heads": cut, "activation": act, "int8": str(int8), "tried": tried,
                  "passed": bool(tried and tried[-1].get("passed"))}
        attempts.append(report)
        if report["passed"]:
            break
    report["refused_before"] = attempts[:-1]
    (onnx_dir / "distill_gate.json").write_text(json.dumps(report, indent=2, default=float))
    if not report["passed"]:
        int8.unlink(missing_ok=True)
        raise GateRefused(f"the distilled student failed its quality gate (details {onnx_dir / 'distill_gate.json'}); "
                          f"{int8} removed", report)
    return report


def _shape(heads: int, activation: str) -> str:
    return (f"{heads} attention heads a layer" if heads else "every attention head") + \
        (f" and {activation}" if activation else " and the teacher's activation")


def _quantize_and_gate(teacher: Path, teacher_onnx: Path, out_dir: Path, onnx_dir: Path, valid, max_ndcg_drop: float,
                       log) -> list[dict]:
    """Export the student, then each INT8 choice, fastest first, until one passes; the verdicts."""
    fp32, int8 = config.onnx_file("fp32", onnx_dir), config.onnx_file("int8", onnx_dir)
    export_onnx(out_dir, fp32)
    tried = []
    for activations, float_layers in INT8_CHOICES:
        what = f"INT8 ({activations} activations, FP32 layers {list(float_layers)})"
        try:
            quantize_int8(out_dir, fp32, int8, float_layers=float_layers, activations=activations)
        except BuildError as exc:
            tried.append({"activations": activations, "float_layers": list(float_layers),
                          "int8_vs_student_fp32": str(exc)})
            log(f"student {what}: {exc}")
            continue
        verdict = gate_engines(teacher, teacher_onnx, int8, "student INT8", max_ndcg_drop, valid,
                               reference="the teacher's FP32")
        verdict.update(activations=activations, float_layers=list(float_layers))
        tried.append(verdict)
        log(f"student {what} vs teacher FP32: " + ("passed" if verdict["passed"] else f"refused: {verdict['reason']}"))
        if verdict["passed"]:
            break
    return tried
