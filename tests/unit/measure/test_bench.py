"""The benchmark harness's workload and verdicts (timings are never asserted: benchmarks are not tests)."""
import json

import pytest

from shoprank.measure.bench.infinity import prepare_infinity_model
from shoprank.measure.bench.report import targets


def _result(p50, pairs_s, ndcg, engine="int8"):
    return {"engine": engine, "ndcg@10": ndcg, "rank-50": {"p50_ms": p50, "c8": {"pairs_s": pairs_s}}}


def test_targets_are_judged_from_the_numbers():
    results = {"naive-pytorch": _result(600, 150, 0.90, "torch-fp32"),
               "ort-int8-inprocess": _result(50, 500, 0.899),
               "triton-int8-grpc": _result(54, 700, 0.899),
               "infinity-onnx": _result(300, 400, 0.90, "infinity-onnx")}
    t = targets(results)
    assert t["latency"]["met"] and t["latency"]["ratio"] == pytest.approx(54 / 600)
    assert t["throughput"]["met"] is False and t["throughput"]["ratio"] == pytest.approx(700 / 400)
    assert t["overhead"]["met"] and t["overhead"]["overhead"] == pytest.approx(54 / 50 - 1)
    assert t["quality"]["met"]
    results["naive-pytorch"]["rank-50"]["p50_ms"] = 400  # 0.135x: over the 0.10x
    assert not targets(results)["latency"]["met"]
    results["triton-int8-grpc"]["ndcg@10"] = 0.89
    assert not targets(results)["quality"]["met"]
    # The one quality gate's rule: a gain never disqualifies; an undefined NDCG does.
    results["triton-int8-grpc"]["ndcg@10"] = 0.93
    assert targets(results)["quality"]["met"]
    results["triton-int8-grpc"]["ndcg@10"] = None
    assert not targets(results)["quality"]["met"] and "latency" not in targets(results)


def test_infinity_model_copy_truncates_at_the_model_length(tiny_model, onnx_fp32, tmp_path):
    folder = prepare_infinity_model(tiny_model, onnx_fp32, "onnx", 48, tmp_path)
    assert (folder / "model.onnx").exists()
    assert json.loads((folder / "tokenizer_config.json").read_text())["model_max_length"] == 48
    assert json.loads((folder / "config.json").read_text())["max_position_embeddings"] == 48
    torch_copy = prepare_infinity_model(tiny_model, None, "torch", 48, tmp_path)
    assert not list(torch_copy.glob("*.onnx"))
