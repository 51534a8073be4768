"""Which engine `make repository` serves by default: the fastest variant that passed the quality
gate against the full model's FP32, said plainly.

Fastest first: the distilled student's INT8 (`make distill`: its gate is the student INT8 against
the full FP32, validation NDCG@10 drop <= MAX_NDCG_DROP; a refused student leaves no INT8
behind), then the full model's INT8 (`make int8`, gated against the same FP32). A student is
only taken when its gate report names this model as its teacher and is newer than the model's
FP32 export (a student of an older fine-tune is stale). `make repository ENGINE=int8|fp32`
bypasses the choice.
"""
from __future__ import annotations

import json
from pathlib import Path

from .. import config

SERVED_FILE = "served.json"  # in the repository's ranker folder: which variant `make repository` chose, why
GATE_REPORT = "distill_gate.json"  # written by shoprank.convert.student beside the student's engines


def _student_verdict(model_dir: Path, onnx_dir: Path, student_int8: Path) -> tuple[dict | None, str]:
    """(the passing gate verdict, '') or (None, why the student is not served)."""
    report_path = student_int8.parent / GATE_REPORT
    if not report_path.exists():
        return None, "no distilled student was built (`make distill`)"
    report = json.loads(report_path.read_text())
    if not report.get("passed") or not student_int8.exists():
        last = (report.get("tried") or [{}])[-1]
        reason = last.get("reason") or last.get("int8_vs_student_fp32") or "see " + str(report_path)
        return None, f"the distilled student was refused by its quality gate ({reason})"
    if Path(report.get("teacher", "")).resolve() != model_dir.resolve():
        return None, f"the distilled student in {student_int8.parent} was distilled from {report.get('teacher')}, " \
                     f"not from {model_dir}"
    teacher_fp32 = config.onnx_file("fp32", onnx_dir)
    if teacher_fp32.exists() and teacher_fp32.stat().st_mtime > report_path.stat().st_mtime:
        return None, f"the distilled student is older than {teacher_fp32} (re-run `make distill`)"
    return report["tried"][-1], ""


def choose_served(model_dir: str | Path, onnx_dir: str | Path, student_int8: str | Path) -> dict:
    """{"variant", "engine", "model" (the HF folder whose tokenizer serves it), "why"}."""
    model_dir, onnx_dir, student_int8 = Path(model_dir), Path(onnx_dir), Path(student_int8)
    verdict, refused = _student_verdict(model_dir, onnx_dir, student_int8)
    if verdict is not None:
        student = Path(json.loads((student_int8.parent / GATE_REPORT).read_text())["student"])
        return {"variant": "distilled student INT8", "engine": str(student_int8), "model": str(student),
                "why": f"the fastest variant that passed its quality gate ({verdict.get('activations', 'per-row')} "
                       f"INT8 activations): validation NDCG@10 "
                       f"{verdict['ndcg_candidate']:.4f} vs the full model's FP32 {verdict['ndcg_reference']:.4f} "
                       f"(drop {verdict['ndcg_drop']:+.4f} <= {verdict['max_ndcg_drop']})"}
    full = config.onnx_file("int8", onnx_dir)
    if not full.exists():
        raise FileNotFoundError(f"nothing to serve: {full} not found (make int8), and {refused}")
    return {"variant": "full INT8", "engine": str(full), "model": str(model_dir),
            "why": f"the full model's INT8, not the faster distilled student, because {refused}"}
