"""Per-row INT8 activations (shoprank.convert.per_row): the rewritten graph computes the per-row
quantization its doc states, and a pair's score no longer depends on the other rows of a call."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from shoprank.convert.int8 import write_int8
from shoprank.convert.per_row import best_zero_point, is_per_row, per_row_activations, quantized_tensors
from shoprank.errors import BuildError
from shoprank.measure.isolation import ISOLATION_TOL, merged
from shoprank.serving.engine import OrtEngine, session_options, sigmoid
from shoprank.serving.tokenizer import PairEncoder

from .conftest import K, N, assert_row_output_ignores_the_call, dynamic_linear


def _quantized_linear(tmp_path, zero_point):
    model, w_q, w_scale, bias = dynamic_linear(tmp_path)
    return per_row_activations(model, {"x": zero_point}), w_q, w_scale, bias


def _session(model, level=ort.GraphOptimizationLevel.ORT_ENABLE_ALL):
    opts = session_options()
    opts.graph_optimization_level = level
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("zero_point", [128, 20])
def test_rewritten_graph_computes_per_row_quantization(tmp_path, zero_point):
    model, w_q, w_scale, bias = _quantized_linear(tmp_path, zero_point)
    assert is_per_row(model) and not quantized_tensors(model)
    x = np.random.default_rng(1).normal(size=(3, 5, K)).astype(np.float32)
    x[0, 1] *= 40.0     # one row with a far larger range must not coarsen the others
    x[2, 3] = 0.0       # an all-zero row
    rows = x.reshape(-1, K)
    z = np.float32(zero_point)
    # In float32 as the graph computes it: scale = max(max / (255 - z), min / -z, floor).
    floor = np.full(len(rows), 1e-8, np.float32)
    scale = np.maximum.reduce([rows.max(1) / (np.float32(255) - z), rows.min(1) / -z, floor])
    q = np.clip(np.rint(rows / scale[:, None]) + z, 0, 255)
    expected = ((q - z) @ w_q.astype(np.float64)) * w_scale * scale[:, None] + bias
    for level in (ort.GraphOptimizationLevel.ORT_DISABLE_ALL, ort.GraphOptimizationLevel.ORT_ENABLE_ALL):
        got = _session(model, level).run(["y"], {"x": x})[0].reshape(-1, N)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_a_row_gives_the_same_output_whatever_rows_share_the_call(tmp_path):
    model, *_ = _quantized_linear(tmp_path, 128)
    assert_row_output_ignores_the_call(_session(model))


def test_zero_point_follows_the_sign_balance_of_the_rows():
    rng = np.random.default_rng(3)
    symmetric = rng.normal(size=(500, 64))
    one_sided = np.maximum(symmetric, -0.17)   # a GELU-like output
    assert abs(best_zero_point(symmetric.min(1), symmetric.max(1)) - 128) <= 12
    assert best_zero_point(one_sided.min(1), one_sided.max(1)) < 40
    assert best_zero_point(np.zeros(0), np.zeros(0)) == 128


def test_a_graph_without_dynamic_quantization_is_refused(onnx_fp32):
    with pytest.raises(BuildError, match="no DynamicQuantizeLinear"):
        per_row_activations(onnx.load(str(onnx_fp32)))


@pytest.fixture(scope="module")
def per_tensor_int8(tiny_model, onnx_fp32, tmp_path_factory):
    path = tmp_path_factory.mktemp("per-tensor") / "model.int8.onnx"
    write_int8(tiny_model, onnx_fp32, path, activations="per-tensor")
    return path


@pytest.fixture(scope="module")
def two_requests(tiny_model, valid_pairs):
    # Padded to max_length, as the Python-backend tokenizer pads for the ranker.
    encoder = PairEncoder.from_dir(tiny_model, max_length=48, buckets=())
    texts = valid_pairs["text"].drop_duplicates().tolist()
    return encoder, texts[:40] + ["x " * 200], texts[40:80]


def _pair_scores(onnx_path, encoder, mine, others):
    """The first 10 candidates' probabilities: alone, merged with another request, with the rest
    of their own request replaced, and under other length chunks."""
    own = encoder.encode("cordless drill", mine)
    other = encoder.encode("white vanity 30 in", others)
    engine = OrtEngine(onnx_path)
    alone = sigmoid(engine.logits(own))[:10]
    return alone, {
        "merged with another request": sigmoid(engine.logits(merged(other, own)))[len(others):][:10],
        "other candidates": sigmoid(engine.logits(encoder.encode("cordless drill", mine[:10] + others[:20])))[:10],
        "one padded call": sigmoid(OrtEngine(onnx_path, chunk_tokens=0).logits(own))[:10],
        "small chunks": sigmoid(OrtEngine(onnx_path, chunk_tokens=64).logits(own))[:10],
    }


def test_int8_engine_scores_a_pair_the_same_alone_with_other_rows_and_in_other_chunks(onnx_int8, two_requests):
    assert is_per_row(onnx.load(str(onnx_int8)))   # what `make int8` builds by default
    alone, elsewhere = _pair_scores(onnx_int8, *two_requests)
    for how, scores in elsewhere.items():
        np.testing.assert_allclose(scores, alone, atol=ISOLATION_TOL, err_msg=how)


def test_per_tensor_int8_scores_move_with_the_other_rows(per_tensor_int8, two_requests):
    """Why the default changed: with one activation scale per call the same pair scores
    differently next to other rows."""
    alone, elsewhere = _pair_scores(per_tensor_int8, *two_requests)
    assert max(float(np.abs(s - alone).max()) for s in elsewhere.values()) > ISOLATION_TOL
