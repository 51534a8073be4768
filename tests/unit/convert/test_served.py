"""Which engine `make repository` serves by default (shoprank.convert.served): the distilled
student when its gate passed against this model's FP32, else the full INT8, with the reason."""
import json
import os
import time

import pytest

from shoprank.convert.served import GATE_REPORT, choose_served


@pytest.fixture
def built(tmp_path):
    model, onnx, student_onnx = tmp_path / "model", tmp_path / "onnx", tmp_path / "onnx-l3"
    for folder in (model, onnx, student_onnx):
        folder.mkdir()
    for path in (onnx / "model.fp32.onnx", onnx / "model.int8.onnx"):
        path.write_bytes(b"onnx")
    return model, onnx, student_onnx


def _distilled(model, student_onnx, passed=True, reason=None):
    verdict = {"passed": passed, "reason": reason, "ndcg_candidate": 0.8652, "ndcg_reference": 0.8663,
               "ndcg_drop": 0.0011, "max_ndcg_drop": 0.005}
    (student_onnx / GATE_REPORT).write_text(json.dumps({"teacher": str(model), "student": str(model) + "-l3",
                                                        "passed": passed, "tried": [verdict]}))
    if passed:
        (student_onnx / "model.int8.onnx").write_bytes(b"onnx")


def test_no_student_serves_the_full_int8_and_says_why(built):
    model, onnx, student_onnx = built
    choice = choose_served(model, onnx, student_onnx / "model.int8.onnx")
    assert choice["variant"] == "full INT8" and choice["engine"] == str(onnx / "model.int8.onnx")
    assert "no distilled student was built" in choice["why"]


def test_a_passing_student_is_served_with_its_gate_numbers(built):
    model, onnx, student_onnx = built
    _distilled(model, student_onnx)
    choice = choose_served(model, onnx, student_onnx / "model.int8.onnx")
    assert choice["variant"] == "distilled student INT8" and choice["model"] == str(model) + "-l3"
    assert "0.8652" in choice["why"] and "0.8663" in choice["why"]


def test_a_refused_stale_or_foreign_student_falls_back(built, tmp_path):
    model, onnx, student_onnx = built
    _distilled(model, student_onnx, passed=False, reason="NDCG@10 dropped 0.012 > 0.005")
    choice = choose_served(model, onnx, student_onnx / "model.int8.onnx")
    assert choice["variant"] == "full INT8" and "refused by its quality gate (NDCG@10 dropped" in choice["why"]
    _distilled(tmp_path / "other-model", student_onnx)
    assert "not from" in choose_served(model, onnx, student_onnx / "model.int8.onnx")["why"]
    _distilled(model, student_onnx)
    later = time.time() + 10
    os.utime(onnx / "model.fp32.onnx", (later, later))  # the model was exported again after distilling
    assert "older than" in choose_served(model, onnx, student_onnx / "model.int8.onnx")["why"]


def test_nothing_to_serve_names_what_is_missing(built):
    model, onnx, student_onnx = built
    (onnx / "model.int8.onnx").unlink()
    with pytest.raises(FileNotFoundError, match="make int8"):
        choose_served(model, onnx, student_onnx / "model.int8.onnx")
