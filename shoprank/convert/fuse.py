"""ONNX Runtime transformer fusion for the exported cross-encoder, and INT8 of the fused graph.

The exporter writes BERT as ~600 small ops (MatMul, Add, Softmax, LayerNormalization, ...).
onnxruntime.transformers.optimizer rewrites them into ONNX Runtime's fused CPU kernels:
EmbedLayerNormalization, Attention (one op per layer, the padding mask applied inside),
SkipLayerNormalization and BiasGelu. It needs the eager-attention export (shoprank.training.model
loads with eager attention for this reason) and the head count and hidden size of the model.

    fuse(fp32_onnx, model_dir, out)            -> FP32 fused graph
    quantize_fused(fused_onnx, out)            -> INT8 (dynamic, per channel) of the fused graph

Both outputs take the same int32 inputs and give the same logits output as the export, so
OrtEngine, Triton's ranker and every check use them unchanged. Quality is gated like INT8
(shoprank.quality.gate on the validation queries).
"""
from __future__ import annotations

import json
from pathlib import Path

from .. import config


def _heads_and_hidden(model_dir: str | Path) -> tuple[int, int]:
    cfg = json.loads((Path(model_dir) / "config.json").read_text())
    return int(cfg["num_attention_heads"]), int(cfg["hidden_size"])


def fuse(fp32_path: str | Path, model_dir: str | Path, out_path: str | Path) -> dict:
    """Fused FP32 graph; returns the fused-operator counts (all zero means fusion failed)."""
    from onnxruntime.transformers import optimizer
    from onnxruntime.transformers.fusion_options import FusionOptions

    heads, hidden = _heads_and_hidden(model_dir)
    # opt_level 0: only the Python fusions; ONNX Runtime applies its own graph optimizations
    # when it loads the model (OrtEngine sets ORT_ENABLE_ALL), for the machine it runs on.
    model = optimizer.optimize_model(str(fp32_path), model_type="bert", num_heads=heads, hidden_size=hidden,
                                     optimization_options=FusionOptions("bert"), opt_level=0)
    stats = {k: int(v) for k, v in model.get_fused_operator_statistics().items() if v}
    if not stats.get("Attention"):
        raise RuntimeError(f"transformer fusion found no attention in {fp32_path} (fused: {stats}); "
                           "it needs the eager-attention export")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    model.save_model_to_file(str(out_path))
    return stats


def quantize_fused(fused_path: str | Path, out_path: str | Path,
                   op_types: tuple[str, ...] = ("MatMul", "Attention")) -> Path:
    """Dynamic INT8 (per-channel weights) of a fused graph. The default leaves the embeddings
    (EmbedLayerNormalization) in FP32: quantizing the token embedding table costs ranking
    quality for little time (one gather per token)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out_path = Path(out_path)
    # The fused ops are outside ONNX's shape inference, so their outputs' type is stated.
    quantize_dynamic(str(fused_path), str(out_path), per_channel=True, weight_type=QuantType.QInt8,
                     op_types_to_quantize=list(op_types),
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    return out_path


def inputs_match_contract(onnx_path: str | Path) -> bool:
    """The fused graph keeps the engine contract: int32 inputs, one float logits output."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    names = [i.name for i in model.graph.input]
    outputs = [o.name for o in model.graph.output]
    return names == list(config.ENGINE_INPUTS) and outputs == [config.ENGINE_OUTPUT]
