"""Explicit INT8: a QDQ ONNX calibrated on real training pairs, for TensorRT and ONNX Runtime.

TensorRT's INT8 path is explicit quantization: QuantizeLinear/DequantizeLinear pairs in the
ONNX fix every scale, so the engine computes what the ONNX says. The same file runs under ONNX
Runtime on CPU, which is where its ranking quality is measured and gated (NDCG@10 on the
validation queries against FP32) on every machine, GPU or not.

TensorRT only takes symmetric INT8 (zero point 0) for weights and activations, and no INT32
bias dequantization, so the recipe fixes those; the rest (per-channel weights, calibration
method, which MatMuls) is the recipe's choice, measured in the report.
"""
from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .. import config
from ..data.split import model_pairs
from ..model_card import MODEL_CARD, model_max_length
from ..quality.gate import MAX_NDCG_DROP, enforce, gate_engines
from ..serving.tokenizer import PairEncoder

CALIBRATION_PAIRS = 512       # real (query, product) pairs from the training split
CALIBRATION_BATCH = 32
METHODS = ("minmax", "percentile", "entropy")
PLACEMENTS = ("inputs", "ort")


@dataclass(frozen=True)
class QdqRecipe:
    """How to quantize. The default is the variant that agreed best with FP32 on the fine-tuned
    MiniLM-L6 (issue 6 note): per-channel weights, MinMax ranges from 512 training pairs, INT8
    on the linear layers' inputs except those fed by an activation; everything else float."""

    per_channel: bool = True
    method: str = "minmax"            # minmax | percentile | entropy
    percentile: float = 99.999        # for method="percentile"
    op_types: tuple[str, ...] = ("MatMul", "Gemm")
    # Only MatMuls with a weight: attention's Q.K^T and P.V stay float (as in NVIDIA ModelOpt's
    # default INT8 recipe; TensorRT then keeps its fused FP16 attention). Softmax outputs in
    # [0, 1] would use only half of symmetric INT8's codes anyway.
    linear_only: bool = True
    # MatMul/Gemm fed by an activation (the FFN down-projection after GELU, the head after tanh)
    # stay float: GELU's output is one-sided (>= -0.17) with a long tail, so symmetric INT8 -
    # TensorRT's only kind - spends half its range on nothing. Measured the most sensitive layer.
    float_after_activation: bool = True
    exclude: tuple[str, ...] = ()     # regexes of further node names left in float
    # "inputs": Q/DQ only on the inputs of the quantized ops (TensorRT's recommended placement);
    # their outputs, the residual adds and every other consumer stay float.
    # "ort": ONNX Runtime's default placement, which also quantizes MatMul/Gemm outputs and hands
    # the quantized tensor to every consumer, residual adds included.
    placement: str = "inputs"
    pre_process: bool = True          # ONNX Runtime's quant_pre_process (shape inference + constant folding)

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown calibration method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.placement not in PLACEMENTS:
            raise ValueError(f"unknown placement {self.placement!r}; choose one of {', '.join(PLACEMENTS)}")

    @property
    def name(self) -> str:
        parts = ["pc" if self.per_channel else "pt", self.method if self.method != "percentile"
                 else f"p{self.percentile:g}", "+".join(self.op_types)]
        if self.linear_only:
            parts.append("linear")
        if self.float_after_activation:
            parts.append("actfloat")
        if self.exclude:
            parts.append("excl(" + "|".join(self.exclude) + ")")
        if self.placement != "inputs":
            parts.append(f"{self.placement}-placement")
        if not self.pre_process:
            parts.append("noprep")
        return "-".join(parts)


class PairCalibrationReader:
    """ONNX Runtime CalibrationDataReader over PairEncoder batches of real pairs.

    Also implements __len__ / set_range so quantize_static can calibrate one batch at a time
    (its CalibStridedMinMax), which keeps the intermediate tensors of one batch in memory
    instead of all of them.
    """

    def __init__(self, encoder: PairEncoder, queries, texts, batch_size: int = CALIBRATION_BATCH):
        self.batches = [encoder.encode_pairs(queries[i:i + batch_size], texts[i:i + batch_size])
                        for i in range(0, len(queries), batch_size)]
        if not self.batches:
            raise ValueError("no calibration pairs")
        self.set_range(0, len(self.batches))

    def __len__(self) -> int:
        return len(self.batches)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._iter = iter(self.batches[start_index:end_index])

    def get_next(self) -> dict | None:
        batch = next(self._iter, None)
        if batch is None:
            return None
        return {name: np.ascontiguousarray(batch[name], dtype=config.ID_DTYPE) for name in config.ENGINE_INPUTS}

    def rewind(self) -> None:
        self.set_range(0, len(self.batches))


def calibration_pairs(model_dir: str | Path, n: int = CALIBRATION_PAIRS, seed: int = config.SEED):
    """n pairs drawn (seeded) from the TRAINING split of the model's data: never validation rows,
    which the gate scores."""
    if n <= 0:
        raise ValueError(f"calibration needs at least one pair, got {n}")
    train = model_pairs(model_dir, "train")
    return train.sample(n=min(n, len(train)), random_state=seed).reset_index(drop=True)


def _extra_options(recipe: QdqRecipe) -> dict:
    options = {
        # TensorRT: symmetric INT8 only, and bias stays float (it fuses the bias add itself).
        "ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False,
        "CalibStridedMinMax": 1,  # one batch of intermediate tensors in memory at a time
    }
    if recipe.method == "percentile":
        options["CalibPercentile"] = recipe.percentile
    if recipe.placement == "inputs":
        options["OpTypesToExcludeOutputQuantization"] = list(recipe.op_types)
    return options


ACTIVATIONS = {"Erf", "Gelu", "FastGelu", "BiasGelu", "Relu", "Tanh", "Sigmoid"}
_ELEMENTWISE = {"Mul", "Add", "Div", "Sub", "Cast"}  # what an exported GELU is made of around its Erf


def _fed_by_activation(name: str, producer: dict, depth: int = 4) -> bool:
    node = producer.get(name)
    if node is None or depth == 0:
        return False
    if node.op_type in ACTIVATIONS:
        return True
    return node.op_type in _ELEMENTWISE and any(_fed_by_activation(i, producer, depth - 1) for i in node.input)


def _excluded_nodes(model_path: Path, recipe: QdqRecipe) -> list[str]:
    """Nodes to leave in float: see QdqRecipe (linear_only by hand: ONNX Runtime ignores its
    MatMulConstBOnly option in QDQ format)."""
    import re

    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    weights = {i.name for i in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    names = []
    for node in graph.node:
        if node.op_type not in recipe.op_types:
            continue
        if ((recipe.linear_only and node.op_type == "MatMul" and not any(i in weights for i in node.input))
                or (recipe.float_after_activation and _fed_by_activation(node.input[0], producer))
                or any(re.search(pattern, node.name) for pattern in recipe.exclude)):
            names.append(node.name)
    return names


def _float_side_paths(model, op_types) -> int:
    """Give every consumer of a quantized activation that is not one of `op_types` (residual
    Add, Shape, ...) the float tensor again; returns how many inputs were rewired.

    ONNX Runtime hands the dequantized tensor to all consumers; for the residual stream that
    adds INT8 rounding to every layer's skip connection, which the quantized ops do not need.
    """
    producer = {out: node for node in model.graph.node for out in node.output}
    float_of = {}  # DQ output -> the float tensor its Q quantized
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear":
            q = producer.get(node.input[0])
            if q is not None and q.op_type == "QuantizeLinear":
                float_of[node.output[0]] = q.input[0]
    rewired = 0
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") or node.op_type in op_types:
            continue
        for i, name in enumerate(node.input):
            if name in float_of:
                node.input[i] = float_of[name]
                rewired += 1
    return rewired


def _calibration_method(method: str):
    from onnxruntime.quantization import CalibrationMethod

    return {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
            "entropy": CalibrationMethod.Entropy}[method]


def write_qdq(model_dir: str | Path, fp32_path: str | Path, out_path: str | Path,
              recipe: QdqRecipe = QdqRecipe(), n_pairs: int = CALIBRATION_PAIRS) -> None:
    """Quantize without the gate (quantize_qdq is the build step)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quant_pre_process, quantize_static

    # Absolute: the pre-processing below runs in another working directory.
    model_dir, fp32_path, out_path = Path(model_dir).resolve(), Path(fp32_path).resolve(), Path(out_path).resolve()
    if not fp32_path.exists():
        raise FileNotFoundError(f"no FP32 ONNX at {fp32_path}: run `make onnx` first")
    pairs = calibration_pairs(model_dir, n_pairs)
    encoder = PairEncoder.from_dir(model_dir, max_length=model_max_length(model_dir))
    reader = PairCalibrationReader(encoder, pairs["query"].tolist(), pairs["text"].tolist())
    with tempfile.TemporaryDirectory(prefix="qdq-") as work:
        source = fp32_path
        if recipe.pre_process:
            source = Path(work) / "pre.onnx"
            # auto_merge: the exported graph's batch/sequence symbols need merging to infer fully.
            # Run inside `work`: on failure the shape inference dumps a model into the cwd.
            with contextlib.chdir(work):
                quant_pre_process(str(fp32_path), str(source), auto_merge=True)
        quantize_static(str(source), str(out_path), reader, quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=list(recipe.op_types), per_channel=recipe.per_channel,
                        nodes_to_exclude=_excluded_nodes(source, recipe),
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        calibrate_method=_calibration_method(recipe.method),
                        extra_options=_extra_options(recipe))
    if recipe.placement == "inputs":
        import onnx

        model = onnx.load(str(out_path))
        _float_side_paths(model, recipe.op_types)
        onnx.checker.check_model(model)
        onnx.save(model, str(out_path))


def quantize_qdq(model_dir: str | Path, fp32_path: str | Path, out_path: str | Path | None = None,
                 recipe: QdqRecipe = QdqRecipe(), n_pairs: int = CALIBRATION_PAIRS,
                 max_ndcg_drop: float = MAX_NDCG_DROP) -> dict:
    """Calibrate, quantize, then gate on validation NDCG@10 vs FP32 under ONNX Runtime CPU.

    Raises GateRefused and leaves nothing (no model, no report) when the gate refuses; on
    success writes out_path and its .json report.
    """
    out_path = Path(out_path or config.onnx_file("qdq"))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(".partial.onnx")
    try:
        write_qdq(model_dir, fp32_path, tmp, recipe, n_pairs)
        report = gate_engines(model_dir, fp32_path, tmp, f"QDQ INT8 ({recipe.name})", max_ndcg_drop)
        report.update(qdq=str(out_path), recipe=asdict(recipe), recipe_name=recipe.name,
                      calibration_pairs=n_pairs, calibration_split="train")
        enforce(report)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(out_path)
    out_path.with_suffix(".json").write_text(json.dumps(report, indent=2, default=float))
    card = Path(fp32_path).parent / MODEL_CARD
    if card.exists() and card.resolve() != (out_path.parent / MODEL_CARD).resolve():
        shutil.copy(card, out_path.parent / MODEL_CARD)
    return report


def qdq_summary(onnx_path: str | Path) -> dict:
    """What a QDQ ONNX holds: counts of Q/DQ nodes and whether every scale is symmetric INT8
    (zero point 0), which TensorRT requires."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(onnx_path))
    inits = {i.name: i for i in model.graph.initializer}
    q = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    dq = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    zero_points, int8 = [], True
    for node in q + dq:
        if len(node.input) > 2 and node.input[2] in inits:
            zp = inits[node.input[2]]
            int8 &= zp.data_type == onnx.TensorProto.INT8
            zero_points.append(np.abs(numpy_helper.to_array(zp)).max())
    dq_outputs = {out for node in dq for out in node.output}
    quantized = sorted({n.op_type for n in model.graph.node
                        if n.op_type != "QuantizeLinear" and any(i in dq_outputs for i in n.input)})
    gemms = [n for n in model.graph.node if n.op_type in ("MatMul", "Gemm")]
    float_gemms = [n.name for n in gemms if not all(i in dq_outputs for i in n.input[:2])]
    return {"quantize": len(q), "dequantize": len(dq), "int8": bool(int8),
            "symmetric": bool(zero_points) and float(max(zero_points)) == 0.0, "quantized_ops": quantized,
            "int8_matmuls": len(gemms) - len(float_gemms), "float_matmuls": float_gemms}
