"""The benchmark harness's workload and verdicts (timings are never asserted: benchmarks are not tests)."""
import pytest

from shoprank import bench, data


@pytest.fixture(scope="module")
def pairs():
    return data.load_default_or_shared()


def test_requests_are_distinct_queries_with_exactly_n_real_texts_and_reproducible(pairs):
    requests = bench.build_requests(pairs, 50, 100)
    assert len({r.query for r in requests}) == 100
    titles = set(pairs["text"])
    for r in requests:
        assert len(r.texts) == 50 and len(set(r.texts)) == 50 and set(r.texts) <= titles
    assert bench.build_requests(pairs, 50, 100) == requests


def test_a_query_keeps_its_own_judged_products(pairs):
    r = bench.build_requests(pairs, 50, 1)[0]
    own = set(pairs.loc[pairs["query"] == r.query, "text"])
    assert own <= set(r.texts)


def _result(p50, pairs_s, ndcg, engine="int8"):
    return {"engine": engine, "ndcg@10": ndcg, "rank-50": {"p50_ms": p50, "c8": {"pairs_s": pairs_s}}}


def test_targets_are_judged_from_the_numbers():
    results = {"naive-pytorch": _result(400, 150, 0.90, "torch-fp32"),
               "ort-int8-inprocess": _result(50, 500, 0.899),
               "triton-int8-grpc": _result(54, 700, 0.899),
               "infinity-onnx": _result(300, 400, 0.90, "infinity-onnx")}
    t = bench.targets(results)
    assert t["latency"]["met"] and t["latency"]["ratio"] == pytest.approx(54 / 400)
    assert t["throughput"]["met"] is False and t["throughput"]["ratio"] == pytest.approx(700 / 400)
    assert t["overhead"]["met"] and t["overhead"]["overhead"] == pytest.approx(54 / 50 - 1)
    assert t["quality"]["met"]
    results["triton-int8-grpc"]["ndcg@10"] = 0.89
    assert not bench.targets(results)["quality"]["met"]


def test_infinity_model_copy_truncates_at_the_model_length(tiny_model, onnx_fp32, tmp_path):
    import json

    folder = bench.prepare_infinity_model(tiny_model, onnx_fp32, "onnx", 48, tmp_path)
    assert (folder / "model.onnx").exists()
    assert json.loads((folder / "tokenizer_config.json").read_text())["model_max_length"] == 48
    assert json.loads((folder / "config.json").read_text())["max_position_embeddings"] == 48
    torch_copy = bench.prepare_infinity_model(tiny_model, None, "torch", 48, tmp_path)
    assert not list(torch_copy.glob("*.onnx"))
