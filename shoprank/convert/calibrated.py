"""Calibrated INT8 activations: every MatMul input quantized with ONE constant scale and zero
point, chosen once on real training pairs, so a pair's score never depends on the other rows of
an engine call, at about the cost of ONNX Runtime's own dynamic INT8.

ONNX Runtime's dynamic quantization computes each activation's scale over the whole tensor of a
call (DynamicQuantizeLinear), which mixes the requests merged into it (reports/isolation.md);
per-row scales (shoprank.convert.per_row) fix that with extra ops per MatMul that find and apply
a scale for every row. Here each DynamicQuantizeLinear becomes a QuantizeLinear with constants,

    scale = (high - low) / 255,  zero point = round(-low / scale)   (uint8)

where [low, high] is the activation's range on the calibration pairs clipped at the
PERCENTILE-th percentile on both sides (an outlier would spend the codes on values that almost
never occur) and always containing 0; and each MatMulInteger -> Cast -> Mul(activation scale x
weight scale) -> Add(bias) becomes one MatMulIntegerToFloat with that bias. A value beyond the
range saturates: the quality gate that every INT8 build passes (shoprank.convert.int8) measures
what that costs. The ranges are part of the model: a re-export is recalibrated by the same build
step.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import BuildError
from .per_row import MS_DOMAIN, activation_rows, dequantization, graph_links, quantized_tensors

PERCENTILE = 99.99      # of the calibration values, each side
_MIN_SCALE = 1e-8


def activation_ranges(fp32_path: str | Path, model_dir: str | Path, tensors: list[str]) -> dict[str, tuple]:
    """(low, high) per tensor from the FP32 graph's values on training pairs (module doc)."""
    rows = activation_rows(fp32_path, model_dir, tensors)
    ranges = {}
    for name in tensors:
        values = np.concatenate([r.ravel() for r in rows[name]])
        low, high = np.percentile(values, [100 - PERCENTILE, PERCENTILE]) if values.size else (0.0, 0.0)
        ranges[name] = (min(float(low), 0.0), max(float(high), 0.0))
    return ranges


def scale_and_zero_point(low: float, high: float) -> tuple[float, int]:
    scale = max((high - low) / 255.0, _MIN_SCALE)
    return scale, int(np.clip(round(-low / scale), 0, 255))


def is_calibrated(model) -> bool:
    """Whether a graph's activations are quantized with constants: no DynamicQuantizeLinear left,
    and its INT8 MatMuls are this rewrite's."""
    ops = [n.op_type for n in model.graph.node]
    return "DynamicQuantizeLinear" not in ops and any(n.name.endswith("/calibrated") for n in model.graph.node)


def calibrated_activations(model, ranges: dict[str, tuple]):
    """The dynamically quantized `model` rewritten with constant activation scales (module doc)."""
    from onnx import helper, numpy_helper

    graph = model.graph
    if not quantized_tensors(model):
        raise BuildError("the graph has no DynamicQuantizeLinear to calibrate (not a dynamic INT8 graph)")
    producer, consumers = graph_links(graph)
    dims = {t.name: list(t.dims) for t in graph.initializer}   # the weights' and biases' shapes
    replaced, nodes = set(), []
    for node in graph.node:
        if node.op_type == "DynamicQuantizeLinear":
            scale, zero_point = scale_and_zero_point(*ranges[node.input[0]])
            graph.initializer.extend([numpy_helper.from_array(np.array(scale, np.float32), node.output[1]),
                                      numpy_helper.from_array(np.array(zero_point, np.uint8), node.output[2])])
            nodes.append(helper.make_node("QuantizeLinear", [node.input[0], *node.output[1:]], [node.output[0]],
                                          f"{node.name}/calibrated"))
        elif node.op_type == "MatMulInteger":
            # The activation scale is now a constant: the GEMM and both scales in one kernel.
            dequantize, weight_scale = dequantization(node, consumers, producer)
            a_scale = producer[node.input[0]].output[1]
            a, b, a_zero, b_zero = (list(node.input) + ["", ""])[:4]
            output, bias_add = dequantize[1].output[0], _bias_add(dequantize[1], b, consumers, dims)
            bias = ""
            if bias_add is not None:
                # The bias too: one kernel instead of a GEMM and an Add over the whole output.
                bias = next(i for i in bias_add.input if i != output)
                output = bias_add.output[0]
                replaced.add(bias_add.name)
            nodes.append(helper.make_node("MatMulIntegerToFloat", [a, b, a_scale, weight_scale, a_zero, b_zero, bias],
                                          [output], f"{node.name}/calibrated", domain=MS_DOMAIN))
            replaced |= {n.name for n in dequantize}
        else:
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(n for n in nodes if n.name not in replaced)
    if not any(o.domain == MS_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    return model


def _bias_add(scaling, weight: str, consumers: dict, dims: dict):
    """The (named) Add of a constant vector, one value per output column of `weight`, that is the
    only consumer of a MatMul's scaled output; None if there is none. `dims`: the shapes of the
    graph's initializers."""
    users = consumers.get(scaling.output[0], [])
    if len(users) != 1 or users[0].op_type != "Add" or not users[0].name:
        return None
    other = [i for i in users[0].input if i != scaling.output[0]]
    columns = dims.get(weight, [None])[-1]
    return users[0] if len(other) == 1 and dims.get(other[0]) == [columns] else None
