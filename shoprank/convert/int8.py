"""CPU INT8: ONNX Runtime's dynamic quantization of the FP32 export, gated on validation NDCG@10.

Per-channel INT8 weights of the MatMuls, activations quantized on the fly. Embedding lookups stay
FP32: quantizing them too costs ranking quality for no speed (docs/quality.md). The gate
(shoprank.quality.gate) scores both engines as served; a refused INT8 leaves no file.
"""
from __future__ import annotations

from pathlib import Path

from .. import config
from ..errors import BuildError
from ..quality.gate import INT8_MAX_NDCG_DROP, enforce, gate_engines
from .onnx_export import write_report


def quantize_int8(model_dir: str | Path, fp32_path: str | Path | None = None, out_path: str | Path | None = None,
                  max_ndcg_drop: float = INT8_MAX_NDCG_DROP, float_layers: tuple[int, ...] = ()) -> dict:
    """Dynamic INT8 of `fp32_path` into `out_path` (the gate's verdict as report; see module doc).

    float_layers: encoder layers whose MatMuls stay FP32 (a distilled 3-layer student's first
    layer is the one INT8 hurts most: docs/benchmark.md, "Compression")."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp32_path = Path(fp32_path or config.onnx_file("fp32"))
    out_path = Path(out_path or config.onnx_file("int8"))
    tmp = out_path.with_suffix(".partial.onnx")
    exclude = []
    if float_layers:
        graph = onnx.load(str(fp32_path), load_external_data=False).graph
        marks = tuple(f"/layer.{i}/" for i in float_layers)
        exclude = [n.name for n in graph.node if n.op_type == "MatMul" and any(m in n.name for m in marks)]
        if not exclude:
            raise BuildError(f"no MatMul of encoder layers {float_layers} found in {fp32_path}")
    quantize_dynamic(str(fp32_path), str(tmp), per_channel=True, weight_type=QuantType.QInt8,
                     op_types_to_quantize=["MatMul"], nodes_to_exclude=exclude)
    report = gate_engines(model_dir, fp32_path, tmp, "INT8", max_ndcg_drop)
    report.update(int8=str(out_path), float_layers=list(float_layers))
    try:
        enforce(report)
    except BuildError:
        tmp.unlink()
        raise
    tmp.replace(out_path)
    write_report(out_path, report)
    return report


