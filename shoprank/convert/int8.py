"""CPU INT8: ONNX Runtime's dynamic quantization of the FP32 export, gated on validation NDCG@10.

Per-channel INT8 weights of the MatMuls; activations quantized on the fly, by default with one
scale per row (per token of each pair: shoprank.convert.per_row), so a pair's score does not
depend on the other rows of an engine call (other candidates, other requests merged by the
batcher); or, also isolated and cheaper, with one constant scale per tensor calibrated on
training pairs ("calibrated": shoprank.convert.calibrated). ONNX Runtime's own per-tensor
activation scales ("per-tensor") stay available for comparison (`shoprank isolation`,
docs/quality.md). Embedding lookups stay FP32: quantizing them too costs ranking quality for no
speed. The gate (shoprank.quality.gate) scores both engines as served; a refused INT8 leaves no
file.
"""
from __future__ import annotations

from pathlib import Path

from .. import config
from ..errors import BuildError
from ..quality.gate import INT8_MAX_NDCG_DROP, enforce, gate_engines
from .onnx_export import write_report

ACTIVATIONS = ("per-row", "calibrated", "per-tensor")


def write_int8(model_dir: str | Path, fp32_path: str | Path, out_path: str | Path,
               float_layers: tuple[int, ...] = (), activations: str = "per-row") -> dict:
    """Quantize without the gate (quantize_int8 is the build step); returns what was done."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if activations not in ACTIVATIONS:
        raise ValueError(f"unknown activation scaling {activations!r}; choose one of {', '.join(ACTIVATIONS)}")
    fp32_path, out_path = Path(fp32_path), Path(out_path)
    if not fp32_path.exists():
        raise BuildError(f"no FP32 ONNX at {fp32_path}: run `make onnx` first")
    exclude = []
    if float_layers:
        graph = onnx.load(str(fp32_path), load_external_data=False).graph
        marks = tuple(f"/layer.{i}/" for i in float_layers)
        exclude = [n.name for n in graph.node if n.op_type == "MatMul" and any(m in n.name for m in marks)]
        if not exclude:
            raise BuildError(f"no MatMul of encoder layers {float_layers} found in {fp32_path}")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    quantize_dynamic(str(fp32_path), str(out_path), per_channel=True, weight_type=QuantType.QInt8,
                     op_types_to_quantize=["MatMul"], nodes_to_exclude=exclude)
    done = {"activations": activations, "float_layers": list(float_layers)}
    if activations == "per-row":
        from .per_row import calibrate_zero_points, per_row_activations, quantized_tensors

        model = onnx.load(str(out_path))
        zero_points = calibrate_zero_points(fp32_path, model_dir, quantized_tensors(model))
        onnx.save(per_row_activations(model, zero_points), str(out_path))
        done["zero_points"] = zero_points
    elif activations == "calibrated":
        from .calibrated import activation_ranges, calibrated_activations
        from .per_row import quantized_tensors

        model = onnx.load(str(out_path))
        ranges = activation_ranges(fp32_path, model_dir, quantized_tensors(model))
        onnx.save(calibrated_activations(model, ranges), str(out_path))
        done["ranges"] = ranges
    return done


def quantize_int8(model_dir: str | Path, fp32_path: str | Path | None = None, out_path: str | Path | None = None,
                  max_ndcg_drop: float = INT8_MAX_NDCG_DROP, float_layers: tuple[int, ...] = (),
                  activations: str = "per-row") -> dict:
    """INT8 of `fp32_path` into `out_path` (the gate's verdict as report; see module doc).

    float_layers: encoder layers whose MatMuls stay FP32 (a distilled 3-layer student's first
    layer is the one INT8 hurts most: docs/benchmark.md, "Compression").
    activations: "per-row" (isolated, the default), "calibrated" (isolated, constant scales) or
    "per-tensor" (ONNX Runtime's own)."""
    fp32_path = Path(fp32_path or config.onnx_file("fp32"))
    out_path = Path(out_path or config.onnx_file("int8"))
    tmp = out_path.with_suffix(".partial.onnx")
    try:
        done = write_int8(model_dir, fp32_path, tmp, float_layers, activations)
        report = gate_engines(model_dir, fp32_path, tmp, "INT8", max_ndcg_drop)
        report.update(int8=str(out_path), **done)
        enforce(report)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(out_path)
    write_report(out_path, report)
    return report
