"""Calibrated INT8 activations (shoprank.convert.calibrated): the rewritten graph computes the
constant-scale quantization its doc states, a pair's score does not depend on the other rows of
a call, and the INT8 build offers it beside per-row scales."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from shoprank.convert.calibrated import calibrated_activations, is_calibrated, scale_and_zero_point
from shoprank.convert.int8 import write_int8
from shoprank.convert.per_row import quantized_tensors
from shoprank.errors import BuildError
from shoprank.measure.isolation import ISOLATION_TOL, merged
from shoprank.serving.engine import OrtEngine, session_options, sigmoid
from shoprank.serving.tokenizer import PairEncoder

from .conftest import K, N, assert_row_output_ignores_the_call, dynamic_linear


def _quantized_linear(tmp_path, low, high):
    """One linear layer, dynamically quantized, then calibrated to [low, high]."""
    model, w_q, w_scale, bias = dynamic_linear(tmp_path)
    return calibrated_activations(model, {"x": (low, high)}), w_q, w_scale, bias


def _session(model):
    return ort.InferenceSession(model.SerializeToString(), session_options(), providers=["CPUExecutionProvider"])


def test_rewritten_graph_computes_constant_scale_quantization(tmp_path):
    model, w_q, w_scale, bias = _quantized_linear(tmp_path, -2.0, 3.0)
    assert is_calibrated(model) and not quantized_tensors(model)
    ops = [n.op_type for n in model.graph.node]
    assert ops == ["QuantizeLinear", "MatMulIntegerToFloat"]   # the bias inside the GEMM's kernel
    x = np.random.default_rng(1).normal(size=(3, 5, K)).astype(np.float32)
    x[0, 1] *= 40.0     # beyond the range: saturates, and coarsens nothing else
    scale, z = scale_and_zero_point(-2.0, 3.0)
    q = np.clip(np.rint(x.reshape(-1, K) / np.float32(scale)) + z, 0, 255)
    expected = ((q - z) @ w_q.astype(np.float64)) * w_scale * scale + bias
    got = _session(model).run(["y"], {"x": x})[0].reshape(-1, N)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_a_row_gives_the_same_output_whatever_rows_share_the_call(tmp_path):
    assert_row_output_ignores_the_call(_session(_quantized_linear(tmp_path, -3.0, 3.0)[0]))


def test_range_always_holds_zero():
    scale, z = scale_and_zero_point(0.5, 2.0)  # activation_ranges widens such a range to hold 0
    assert 0 <= z <= 255 and scale > 0
    assert scale_and_zero_point(0.0, 0.0)[0] > 0


def test_a_graph_without_dynamic_quantization_is_refused(onnx_fp32):
    with pytest.raises(BuildError, match="no DynamicQuantizeLinear"):
        calibrated_activations(onnx.load(str(onnx_fp32)), {})


@pytest.fixture(scope="module")
def calibrated_int8(tiny_model, onnx_fp32, tmp_path_factory):
    path = tmp_path_factory.mktemp("calibrated") / "model.int8.onnx"
    done = write_int8(tiny_model, onnx_fp32, path, activations="calibrated")
    assert done["activations"] == "calibrated" and done["ranges"]
    return path


def test_the_model_scores_a_pair_the_same_alone_and_with_other_rows(calibrated_int8, tiny_model, valid_pairs,
                                                                     onnx_fp32):
    assert is_calibrated(onnx.load(str(calibrated_int8)))
    encoder = PairEncoder.from_dir(tiny_model, max_length=48, buckets=())
    texts = valid_pairs["text"].drop_duplicates().tolist()
    own, other = encoder.encode("cordless drill", texts[:40]), encoder.encode("white vanity 30 in", texts[40:80])
    engine = OrtEngine(calibrated_int8)
    alone = sigmoid(engine.logits(own))
    together = sigmoid(engine.logits(merged(other, own)))[len(texts[40:80]):]
    np.testing.assert_allclose(together, alone, atol=ISOLATION_TOL)
    np.testing.assert_allclose(sigmoid(OrtEngine(calibrated_int8, chunk_tokens=64).logits(own)), alone,
                               atol=ISOLATION_TOL)
    # and it is an INT8 of the model, not something else: close to the FP32 engine's scores (the
    # tiny test model's scores hardly vary, so a distance, not a correlation)
    fp32 = sigmoid(OrtEngine(onnx_fp32).logits(own))
    assert np.abs(fp32 - alone).max() < 0.01


def test_calibrated_with_a_layer_kept_in_fp32(tiny_model, onnx_fp32, tmp_path):
    """The student's fallback: its first layer FP32, the rest calibrated INT8."""
    from shoprank.convert.int8 import quantize_int8

    report = quantize_int8(tiny_model, onnx_fp32, tmp_path / "x.onnx", max_ndcg_drop=0.05, float_layers=(0,),
                           activations="calibrated")
    assert report["activations"] == "calibrated" and report["float_layers"] == [0]
    model = onnx.load(str(tmp_path / "x.onnx"))
    assert is_calibrated(model)
    assert any(n.op_type == "MatMul" and "/layer.0/" in n.name for n in model.graph.node)
