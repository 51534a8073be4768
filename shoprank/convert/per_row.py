"""Per-row INT8 activations: every row (one token of one pair) is quantized with its own scale,
so a pair's score never depends on the other rows of an engine call.

ONNX Runtime's dynamic quantization (quantize_dynamic) quantizes each MatMul input with ONE
scale and zero point computed over the whole tensor of the call (DynamicQuantizeLinear). On the
ranker that tensor holds every pair the call scores: the candidates of the request, the other
requests Triton's dynamic batcher merged in, and whichever rows OrtEngine grouped into a length
chunk. So a pair's score moved with its neighbours and rankings changed under load
(reports/isolation.md).

`per_row_activations` rewrites such a graph so that each DynamicQuantizeLinear becomes

    scale[row] = max(max(x[row], 0) / (255 - z), -min(x[row], 0) / z)   (z: a constant zero point)
    q[row]     = QuantizeLinear(x[row], scale[row], z)                    (uint8, per axis 0 of a 2-D view)

and each MatMulInteger -> Cast -> Mul(scale * weight scale) becomes ONNX Runtime's
MatMulIntegerToFloat (the integer GEMM with the per-column weight scale, in one kernel) followed
by a Mul by the per-row scale; the bias Add stays where it was, after the scaling. Everything a
row's result depends on is then the row itself and constants.

The zero point z of each quantized tensor is a constant calibrated once on real training pairs
(`calibrate_zero_points`): GELU outputs are one-sided (>= -0.17), LayerNorm outputs lean to one
side, and a symmetric z = 128 would spend up to half the codes on values that never occur. With
no calibration every z is 128 (symmetric).

Why not the alternatives (measured side by side by `shoprank isolation`, docs/quality.md):
static calibrated scales (QDQ) are isolated too but ran as slow as FP32 under ONNX Runtime on
CPU; FP32 is isolated and slower; per-tensor INT8 with one request per call still mixes a
request's own candidates and gives up batching across requests. The price of per-row scales is
the separate ops that find and apply them: slower than per-tensor INT8, faster than FP32.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import config
from ..errors import BuildError

SYMMETRIC_ZERO_POINT = 128
CALIBRATION_PAIRS = 256          # training pairs the zero points are chosen on
_MIN_SCALE = 1e-8                # an all-zero row still gets a usable scale
_PREFIX = "per_row/"             # names of every node and constant this rewrite adds
MS_DOMAIN = "com.microsoft"


def quantized_tensors(model) -> list[str]:
    """The float tensors a dynamically quantized graph quantizes (DynamicQuantizeLinear inputs)."""
    return [n.input[0] for n in model.graph.node if n.op_type == "DynamicQuantizeLinear"]


def is_per_row(model) -> bool:
    """Whether a graph quantizes activations per row: no DynamicQuantizeLinear (per-tensor) left,
    and at least one MatMul in INT8 with a per-row scale (the output of this rewrite)."""
    ops = [n.op_type for n in model.graph.node]
    return "DynamicQuantizeLinear" not in ops and any(n.name.startswith(_PREFIX) and n.op_type == "MatMulIntegerToFloat"
                                                      for n in model.graph.node)


def best_zero_point(row_min: np.ndarray, row_max: np.ndarray) -> int:
    """The uint8 zero point z in 1..254 that gives rows of these ranges the finest step on
    average: each row's step is max(max+ / (255 - z), -min- / z)."""
    pos = np.maximum(np.asarray(row_max, np.float64), 0.0)[:, None]
    neg = np.maximum(-np.asarray(row_min, np.float64), 0.0)[:, None]
    if pos.size == 0:
        return SYMMETRIC_ZERO_POINT
    z = np.arange(1, 255, dtype=np.float64)[None, :]
    step = np.maximum(pos / (255.0 - z), neg / z)
    return int(z[0, np.argmin(step.mean(axis=0))])


def activation_rows(fp32_path: str | Path, model_dir: str | Path, tensors: list[str],
                    n_pairs: int = CALIBRATION_PAIRS, batch_size: int = 32) -> dict[str, list[np.ndarray]]:
    """The FP32 graph's values of `tensors` on `n_pairs` training pairs (never validation rows,
    which the gate scores), per tensor a list of [rows, features] arrays; rows of padding are
    left out. What the INT8 rewrites calibrate their constants on."""
    import onnx
    import onnxruntime as ort

    from ..model_card import model_max_length
    from ..serving.engine import session_options
    from ..serving.tokenizer import PairEncoder
    from .qdq import calibration_pairs

    model = onnx.load(str(fp32_path))
    known = {v.name for v in model.graph.value_info} | {o for n in model.graph.node for o in n.output}
    missing = [t for t in tensors if t not in known]
    if missing:
        raise BuildError(f"{fp32_path} has no tensor {missing[0]!r} that the INT8 graph quantizes")
    del model.graph.output[:]
    model.graph.output.extend(onnx.ValueInfoProto(name=t) for t in tensors)
    session = ort.InferenceSession(model.SerializeToString(), session_options(),
                                   providers=["CPUExecutionProvider"])
    pairs = calibration_pairs(model_dir, n_pairs)
    encoder = PairEncoder.from_dir(model_dir, max_length=model_max_length(model_dir), buckets=None)
    rows: dict[str, list] = {t: [] for t in tensors}
    queries, texts = pairs["query"].tolist(), pairs["text"].tolist()
    for start in range(0, len(pairs), batch_size):
        batch = encoder.encode_pairs(queries[start:start + batch_size], texts[start:start + batch_size])
        feeds = {name: np.ascontiguousarray(batch[name], dtype=config.ID_DTYPE) for name in config.ENGINE_INPUTS}
        keep = batch[config.ENGINE_INPUTS[1]] != 0
        for name, value in zip(tensors, session.run(tensors, feeds)):
            per_token = value.shape[:-1] == keep.shape   # one row per token: drop the padding
            value = value.reshape(-1, value.shape[-1])
            rows[name].append(value[keep.reshape(-1)] if per_token else value)
    return rows


def calibrate_zero_points(fp32_path: str | Path, model_dir: str | Path, tensors: list[str],
                          n_pairs: int = CALIBRATION_PAIRS, batch_size: int = 32) -> dict[str, int]:
    """One zero point per tensor, from the rows' extremes on training pairs (activation_rows)."""
    rows = activation_rows(fp32_path, model_dir, tensors, n_pairs, batch_size)
    return {t: best_zero_point(np.concatenate([r.min(axis=1) for r in rows[t]]),
                               np.concatenate([r.max(axis=1) for r in rows[t]])) for t in tensors}


def graph_links(graph) -> tuple[dict, dict[str, list]]:
    """(producer of each tensor, consumers of each tensor) of a graph's nodes."""
    producer: dict = {}
    consumers: dict[str, list] = {}
    for node in graph.node:
        producer.update((out, node) for out in node.output)
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    return producer, consumers


def per_row_activations(model, zero_points: dict[str, int] | None = None):
    """The graph of ONNX Runtime's quantize_dynamic, rewritten to per-row activation scales (see
    module doc). `zero_points`: tensor -> uint8 zero point (calibrate_zero_points); a tensor not
    named gets the symmetric 128. Raises BuildError on a graph of another shape."""
    import onnx
    from onnx import helper, numpy_helper

    graph = model.graph
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    producer, consumers = graph_links(graph)
    initializers = {i.name: i for i in graph.initializer}
    zero_points = dict(zero_points or {})
    constants = {f"{_PREFIX}flat": np.array([-1], np.int64), f"{_PREFIX}one": np.array(1.0, np.float32),
                 f"{_PREFIX}min_scale": np.array(_MIN_SCALE, np.float32)}
    if opset >= 18:
        constants[f"{_PREFIX}last_axis"] = np.array([-1], np.int64)
    replaced = set()   # names of the nodes that go
    new = {}           # name of a node that goes -> the nodes in its place
    for node in graph.node:
        if node.op_type != "DynamicQuantizeLinear":
            continue
        x, z = node.input[0], int(zero_points.get(node.input[0], SYMMETRIC_ZERO_POINT))
        if not 1 <= z <= 254:
            raise BuildError(f"zero point {z} for {x} is outside 1..254")
        users = consumers.get(node.output[0], [])
        for user in users:
            if user.op_type != "MatMulInteger" or user.input[0] != node.output[0]:
                raise BuildError(f"{node.output[0]} feeds {user.op_type} {user.name}, not a MatMulInteger's A input")
            new[user.name] = _fuse_matmul(user, node.output[1], consumers, producer, replaced, helper)
        new[node.name] = _row_quantizer(node, z, _inner_size(users, initializers, x), opset, constants, helper)
        replaced.add(node.name)
    if not new:
        raise BuildError("no DynamicQuantizeLinear in the graph: not ONNX Runtime's dynamic INT8")
    rewritten = []
    for node in graph.node:
        if node.name in new:
            rewritten.extend(new[node.name])
        elif node.name not in replaced:
            rewritten.append(node)
    del graph.node[:]
    graph.node.extend(rewritten)
    graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in constants.items())
    if not any(o.domain == MS_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    onnx.checker.check_model(model)
    return model


def _row_quantizer(node, z: int, k: int, opset: int, constants: dict, helper) -> list:
    """The nodes in place of one DynamicQuantizeLinear: its three outputs (uint8 tensor, scale,
    zero point) with one scale per row, the scale shaped [..., 1] to scale the MatMul output rows."""
    x, q, scale, zp = node.input[0], *node.output
    p = f"{_PREFIX}{x}"
    constants.update({f"{p}/shape2d": np.array([-1, k], np.int64), f"{p}/z": np.array(z, np.uint8),
                      f"{p}/pos_levels": np.array(255 - z, np.float32),
                      f"{p}/neg_levels": np.array(-z, np.float32)})   # -min / z as min / -z
    return [
        _reduce("ReduceMax", x, f"{p}/max", opset, helper),
        _reduce("ReduceMin", x, f"{p}/min", opset, helper),
        helper.make_node("Div", [f"{p}/max", f"{p}/pos_levels"], [f"{p}/pos_step"], f"{p}/PosStep"),
        helper.make_node("Div", [f"{p}/min", f"{p}/neg_levels"], [f"{p}/neg_step"], f"{p}/NegStep"),
        # The floor also covers a row without values of one sign, or all zero.
        helper.make_node("Max", [f"{p}/pos_step", f"{p}/neg_step", f"{_PREFIX}min_scale"], [scale], f"{p}/Scale"),
        # QuantizeLinear takes a per-row scale only per axis of a 2-D tensor: [rows, K] (cheaper
        # than dividing x by the scale first: views instead of a pass over the tensor).
        helper.make_node("Shape", [x], [f"{p}/shape"], f"{p}/Shape"),
        helper.make_node("Reshape", [x, f"{p}/shape2d"], [f"{p}/x2d"], f"{p}/X2d"),
        helper.make_node("Reshape", [scale, f"{_PREFIX}flat"], [f"{p}/scale1d"], f"{p}/Scale1d"),
        helper.make_node("Shape", [f"{p}/scale1d"], [f"{p}/rows"], f"{p}/Rows"),
        helper.make_node("Expand", [f"{p}/z", f"{p}/rows"], [f"{p}/z1d"], f"{p}/Z1d"),
        helper.make_node("QuantizeLinear", [f"{p}/x2d", f"{p}/scale1d", f"{p}/z1d"], [f"{p}/q2d"],
                         f"{p}/Quantize", axis=0),
        helper.make_node("Reshape", [f"{p}/q2d", f"{p}/shape"], [q], f"{p}/Q"),
        helper.make_node("Identity", [f"{p}/z"], [zp], f"{p}/ZeroPoint"),
    ]


def _inner_size(users: list, initializers: dict, x: str) -> int:
    """K of the MatMuls a quantized tensor feeds: the rows of their constant weights."""
    weights = [initializers.get(u.input[1]) for u in users]
    sizes = {int(w.dims[0]) for w in weights if w is not None and len(w.dims) == 2}
    if len(sizes) != 1 or None in weights:
        raise BuildError(f"{x}: expected MatMuls with 2-D constant weights of one inner size, found {sorted(sizes)}")
    return sizes.pop()


def _reduce(op: str, x: str, out: str, opset: int, helper):
    """op over the last axis, keeping it (axes is an attribute before opset 18, an input from 18)."""
    if opset >= 18:
        return helper.make_node(op, [x, f"{_PREFIX}last_axis"], [out], out, keepdims=1)
    return helper.make_node(op, [x], [out], out, axes=[-1], keepdims=1)


def dequantization(matmul, consumers, producer) -> tuple[list, str]:
    """What ONNX Runtime's dynamic INT8 puts after a MatMulInteger, checked: the nodes of
    Cast -> Mul(Mul(activation scale, weight scale)) (that Mul's output is the float result) and
    the constant weight scale's name."""
    casts = consumers.get(matmul.output[0], [])
    if len(casts) != 1 or casts[0].op_type != "Cast":
        raise BuildError(f"{matmul.name}: expected one Cast after the MatMulInteger")
    muls = consumers.get(casts[0].output[0], [])
    if len(muls) != 1 or muls[0].op_type != "Mul":
        raise BuildError(f"{matmul.name}: expected one Mul (the dequantization) after its Cast")
    scales = producer.get(next(i for i in muls[0].input if i != casts[0].output[0]))
    if scales is None or scales.op_type != "Mul" or len(consumers.get(scales.output[0], [])) != 1:
        raise BuildError(f"{matmul.name}: expected its dequantization scale to be tensor scale x weight scale")
    weight_scale = next((i for i in scales.input if producer.get(i) is None), None)
    if weight_scale is None:
        raise BuildError(f"{matmul.name}: no constant weight scale")
    return [casts[0], muls[0], scales], weight_scale


def _fuse_matmul(matmul, row_scale: str, consumers, producer, replaced: set, helper) -> list:
    """MatMulInteger -> Cast -> Mul(Mul(tensor scale, weight scale)) as ONNX Runtime's
    MatMulIntegerToFloat (the integer GEMM and the per-column weight scale in one kernel, A scale
    1) and a Mul by the per-row scale, into the old Mul's output (the bias Add after it stays)."""
    nodes, weight_scale = dequantization(matmul, consumers, producer)
    replaced.update({matmul.name, *(n.name for n in nodes)})
    a, b, a_zp, b_zp = (list(matmul.input) + ["", ""])[:4]
    out = nodes[1].output[0]
    # The row scale is applied by a Mul of its own, not as the kernel's A scale: a non-scalar A
    # scale is outside MatMulIntegerToFloat's documented contract (and would also scale a bias).
    return [helper.make_node("MatMulIntegerToFloat", [a, b, f"{_PREFIX}one", weight_scale, a_zp, b_zp],
                             [f"{out}/unscaled"], f"{_PREFIX}{matmul.name}", domain=MS_DOMAIN),
            helper.make_node("Mul", [f"{out}/unscaled", row_scale], [out], f"{_PREFIX}{matmul.name}/RowScale")]
