"""Conversions on the tiny model: ONNX matches PyTorch; the INT8 gate fails a lossy build."""
import numpy as np
import onnx
import pytest

from shoprank import config
from shoprank.convert.int8 import quantize_int8
from shoprank.errors import GateRefused
from shoprank.serving.engine import OrtEngine
from shoprank.serving.tokenizer import PairEncoder
from shoprank.training.model import load_cross_encoder, torch_logits


def test_onnx_has_dynamic_batch_and_sequence_and_the_contract_names(onnx_fp32):
    model = onnx.load(str(onnx_fp32))
    assert [i.name for i in model.graph.input] == list(config.ENGINE_INPUTS)
    assert [o.name for o in model.graph.output] == [config.ENGINE_OUTPUT]
    for tensor in model.graph.input:
        dims = tensor.type.tensor_type.shape.dim
        assert [d.dim_param for d in dims] == ["batch", "sequence"]
        assert tensor.type.tensor_type.elem_type == onnx.TensorProto.INT32
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17


def test_onnx_report_records_agreement_with_pytorch(onnx_fp32):
    import json

    report = json.loads(onnx_fp32.with_suffix(".json").read_text())
    assert report["max_abs_logit_diff"] <= 1e-4 and report["pairs_checked"] > 100


def test_onnx_matches_pytorch_on_unseen_shapes(tiny_model, onnx_fp32):
    encoder = PairEncoder.from_dir(tiny_model, max_length=48, buckets=None)
    batch = encoder.encode("paint roller 9 in", ["x", "purdy white dove 9 in. x 3/8 in. roller cover " * 3] * 7)
    np.testing.assert_allclose(OrtEngine(onnx_fp32).logits(batch),
                               torch_logits(load_cross_encoder(tiny_model), batch), atol=1e-4)


def test_int8_gate_fails_the_build_and_leaves_nothing(tiny_model, onnx_fp32, tmp_path):
    out = tmp_path / "model.int8.onnx"
    # A negative margin demands INT8 be better than FP32 by 1.0 NDCG: impossible, must fail.
    with pytest.raises(GateRefused, match="INT8 loses"):
        quantize_int8(tiny_model, onnx_fp32, out, max_ndcg_drop=-1.0)
    assert not out.exists() and not list(tmp_path.iterdir())


def test_int8_report_states_agreement(onnx_int8):
    import json

    report = json.loads(onnx_int8.with_suffix(".json").read_text())
    for key in ("spearman", "topk_overlap", "ndcg_drop", "ndcg_reference", "ndcg_candidate", "queries"):
        assert key in report
