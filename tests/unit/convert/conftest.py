"""Shared by the INT8 rewrite tests (per_row, calibrated): one BERT-shaped linear layer as ONNX
Runtime's dynamic INT8 graph, and the check that a row's output does not depend on its call."""
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

K, N = 16, 8


def dynamic_linear(tmp_path):
    """y = x @ W + b on x [batch, rows, K], dynamically quantized: (INT8 model, W as INT8, W's
    per-column scale, b)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    rng = np.random.default_rng(0)
    w = rng.normal(size=(K, N)).astype(np.float32)
    b = rng.normal(size=N).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["xw"], "MatMul"), helper.make_node("Add", ["b", "xw"], ["y"], "Add")],
        "linear", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "rows", K])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "rows", N])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "fp32.onnx"))
    quantize_dynamic(str(tmp_path / "fp32.onnx"), str(tmp_path / "int8.onnx"), per_channel=True,
                     weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"])
    model = onnx.load(str(tmp_path / "int8.onnx"))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    w_q = next(v for k, v in inits.items() if k.endswith("_quantized"))
    w_scale = next(v for k, v in inits.items() if k.endswith("_scale"))
    return model, w_q, w_scale, inits["b"]


def assert_row_output_ignores_the_call(session):
    """One row alone, then among far larger rows: the same output."""
    rng = np.random.default_rng(2)
    row = rng.normal(size=(1, 1, K)).astype(np.float32)
    alone = session.run(["y"], {"x": row})[0][0, 0]
    crowd = rng.normal(size=(4, 7, K)).astype(np.float32) * 30
    crowd[2, 5] = row[0, 0]
    np.testing.assert_allclose(session.run(["y"], {"x": crowd})[0][2, 5], alone, atol=1e-6)
