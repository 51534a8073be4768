"""TensorRT plans for the ranker (NVIDIA GPU only): FP16 with FP32 safeguards, INT8 from the QDQ ONNX.

`tensorrt` is imported lazily: everything else in shoprank works without it, and asking for an
engine without it (or without an NVIDIA GPU) raises shoprank.errors.TensorRTUnavailable, naming
what is missing.

Two ways to tell TensorRT the precision of each layer:
  weak    (TensorRT 10): builder flags FP16 (+ INT8 for a QDQ network) let TensorRT pick FP16
          kernels; normalization, softmax, pow and reductions are pinned to FP32 with layer
          precision constraints (OBEY_PRECISION_CONSTRAINTS), where FP16 would overflow.
  strong  (TensorRT >= 10, the only mode left in 11): the ONNX itself carries the types. FP16
          uses `fp16_onnx`, a mixed-precision ONNX with the same ops kept in FP32; INT8 uses
          the QDQ ONNX as is (its float parts run in FP32).
"auto" picks weak where the TensorRT still offers it, strong otherwise.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from .. import config
from ..errors import TensorRTUnavailable
from ..model_card import model_max_length
from ..quality.gate import MAX_NDCG_DROP, enforce, gate_engines
from ..serving.triton.repository import build_repository
from .polygraphy_check import TOLERANCES, compare, real_inputs, save_inputs
from .qdq import quantize_qdq
from .tensorrt_env import require_tensorrt

PRECISIONS = ("fp16", "int8")
TYPINGS = ("auto", "weak", "strong")
# The profile's optimum: a rank-50 request (one query, 50 candidates) in the 32-token bucket.
OPT_BATCH = 50
OPT_SEQ = 32
WORKSPACE_BYTES = 4 << 30
# Ops FP16 must not run: LayerNormalization (one op from opset 17 on; Pow/ReduceMean when
# decomposed), Softmax (attention scores) - their sums and squares overflow 65504.
FP32_ONNX_OPS = ("LayerNormalization", "Softmax", "Pow", "ReduceMean", "ReduceSum", "Sqrt")
def ranker_max_batch() -> int:
    """Rows per ranker execution: the generated ranker config's max_batch_size (same rule as
    shoprank.serving.triton.repository.render), so the engine accepts every batch Triton may form."""
    return max(config.RANKER_MAX_BATCH, config.MAX_CANDIDATES)


@dataclass(frozen=True)
class Shapes:
    min: tuple[int, int]
    opt: tuple[int, int]
    max: tuple[int, int]


def profile_shapes(max_length: int = config.MAX_SEQ_LEN) -> dict[str, Shapes]:
    """The optimization profile of every engine input: [batch, sequence] from 1 x 1 to
    ranker_max_batch() x max_length (the model card's length), optimal at a rank-50 request."""
    if max_length < 1:
        raise ValueError(f"max_length must be >= 1, got {max_length}")
    top = ranker_max_batch()
    shapes = Shapes((1, 1), (min(OPT_BATCH, top), min(OPT_SEQ, max_length)), (top, max_length))
    return dict.fromkeys(config.ENGINE_INPUTS, shapes)


# --- FP16 ONNX for strongly typed builds (runs on CPU too, so its quality is measured here) ----
def fp16_onnx(fp32_path: str | Path, out_path: str | Path, keep_fp32: tuple[str, ...] = FP32_ONNX_OPS) -> Path:
    """A mixed-precision copy of the FP32 ONNX: FP16 everywhere except `keep_fp32` ops, which
    get FP32 inputs and outputs through Casts; inputs and outputs keep their types."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    out_path = Path(out_path)
    model = convert_float_to_float16(onnx.load(str(fp32_path)), keep_io_types=True, op_block_list=list(keep_fp32))
    _topological_sort(model.graph)  # the converter appends its Casts at the end of the node list
    onnx.checker.check_model(model)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(".partial.onnx")
    onnx.save(model, str(tmp))
    tmp.replace(out_path)
    return out_path


def _has_fp16_weights(onnx_path: Path) -> bool:
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    return any(i.data_type == onnx.TensorProto.FLOAT16 for i in graph.initializer)


def _topological_sort(graph) -> None:
    ready = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        left = []
        for node in pending:
            if all(name in ready for name in node.input):
                ordered.append(node)
                ready.update(node.output)
            else:
                left.append(node)
        if len(left) == len(pending):
            raise ValueError(f"graph has unresolvable inputs at node {left[0].name!r}")
        pending = left
    del graph.node[:]
    graph.node.extend(ordered)


# --- engine build --------------------------------------------------------------------------------
def resolve_typing(trt, typing: str = "auto") -> str:
    if typing not in TYPINGS:
        raise ValueError(f"unknown typing {typing!r}; choose one of {', '.join(TYPINGS)}")
    weak_available = hasattr(trt.BuilderFlag, "FP16") and hasattr(trt.BuilderFlag, "OBEY_PRECISION_CONSTRAINTS")
    if typing == "auto":
        return "weak" if weak_available else "strong"
    if typing == "weak" and not weak_available:
        raise TensorRTUnavailable(f"TensorRT {trt.__version__} has no weakly typed networks; use typing='strong'")
    return typing


def strong_fp16_source(onnx_path: Path, precision: str, requested: str, typing: str, work_dir: Path) -> Path:
    """The ONNX a build reads. A strongly typed FP16 engine takes its types from the ONNX, so an
    FP32 ONNX must become fp16_onnx()'s mixed copy first: done here when the typing was left to
    "auto" (TensorRT 11 has only strong typing, and the FP32 ONNX is what callers hand over);
    refused when the caller asked for "strong" explicitly with an FP32 file."""
    if not onnx_path.exists():
        raise FileNotFoundError(f"no ONNX at {onnx_path}")
    if typing != "strong" or precision != "fp16" or _has_fp16_weights(onnx_path):
        return onnx_path
    if requested == "strong":
        raise ValueError(f"{onnx_path} is FP32: a strongly typed FP16 engine needs fp16_onnx()'s output")
    return fp16_onnx(onnx_path, Path(work_dir) / f"{onnx_path.stem}.fp16-strong.onnx")


def _pin_fp32_layers(trt, network) -> list[str]:
    """Weak typing: keep normalization, softmax, reductions and pow in FP32 (with FP32 outputs)."""
    pinned = []
    fp32_types = {trt.LayerType.NORMALIZATION, trt.LayerType.SOFTMAX, trt.LayerType.REDUCE}
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        keep = layer.type in fp32_types
        if layer.type == trt.LayerType.ELEMENTWISE:
            layer.__class__ = trt.IElementWiseLayer  # the Python binding hands out the base ILayer
            keep = layer.op == trt.ElementWiseOperation.POW
        if not keep:
            continue
        layer.precision = trt.float32
        for j in range(layer.num_outputs):
            if layer.get_output(j).dtype in (trt.float32, trt.float16):
                layer.set_output_type(j, trt.float32)
        pinned.append(layer.name)
    return pinned


def _check_contract(trt, network) -> None:
    """The engine's tensors are the contract's (names, INT32 ids, FP32 logits)."""
    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    outputs = [network.get_output(i) for i in range(network.num_outputs)]
    if [t.name for t in inputs] != list(config.ENGINE_INPUTS) or [t.name for t in outputs] != [config.ENGINE_OUTPUT]:
        raise ValueError(f"ONNX tensors {[t.name for t in inputs]} -> {[t.name for t in outputs]} do not match "
                         f"{list(config.ENGINE_INPUTS)} -> {config.ENGINE_OUTPUT}")
    id_type = {"int32": trt.int32, "int64": trt.int64}[config.ID_DTYPE]
    wrong = [t.name for t in inputs if t.dtype != id_type] + [t.name for t in outputs if t.dtype != trt.float32]
    if wrong:
        raise ValueError(f"tensors {wrong} do not have the contract's dtypes ({config.ID_DTYPE} ids, float32 logits)")


def build_plan(onnx_path: str | Path, out_path: str | Path, precision: str, max_length: int,
               typing: str = "auto", workspace_bytes: int = WORKSPACE_BYTES, verbose: bool = False) -> dict:
    """Build a serialized TensorRT engine from `onnx_path` into `out_path`.

    onnx_path: the FP32 ONNX (fp16, weak typing), `fp16_onnx`'s output (fp16, strong typing) or
    the QDQ ONNX (int8). The plan is written to a temporary file beside out_path and renamed
    only once complete; any failure leaves no file.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    trt = require_tensorrt()
    requested, typing = typing, resolve_typing(trt, typing)
    onnx_path, out_path = Path(onnx_path), Path(out_path)
    onnx_path = strong_fp16_source(onnx_path, precision, requested, typing, out_path.parent)
    started = time.time()
    logger = trt.Logger(trt.Logger.VERBOSE if verbose else trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if typing == "strong" else 0
    network = builder.create_network(flags)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "\n".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT's ONNX parser rejected {onnx_path}:\n{errors}")
    _check_contract(trt, network)

    builder_config = builder.create_builder_config()
    builder_config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    profile = builder.create_optimization_profile()
    shapes = profile_shapes(max_length)
    for name, s in shapes.items():
        profile.set_shape(name, s.min, s.opt, s.max)
    builder_config.add_optimization_profile(profile)
    pinned = []
    if typing == "weak":
        builder_config.set_flag(trt.BuilderFlag.FP16)
        if precision == "int8":
            builder_config.set_flag(trt.BuilderFlag.INT8)  # Q/DQ layers set the scales; no calibrator
        pinned = _pin_fp32_layers(trt, network)
        builder_config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)

    serialized = builder.build_serialized_network(network, builder_config)
    if serialized is None:
        raise RuntimeError(f"TensorRT could not build the {precision} engine from {onnx_path} (see its log above)")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.{os.getpid()}.partial")
    try:
        with open(tmp, "wb") as f:
            f.write(serialized)
        tmp.replace(out_path)
    finally:
        tmp.unlink(missing_ok=True)
    return {"plan": str(out_path), "onnx": str(onnx_path), "precision": precision, "typing": typing,
            "tensorrt": trt.__version__, "fp32_layers": len(pinned), "build_seconds": round(time.time() - started, 1),
            "profile": {n: {"min": s.min, "opt": s.opt, "max": s.max} for n, s in shapes.items()}}


def build_engine(model_dir: str | Path, precision: str, fp32_onnx: str | Path | None = None,
                 qdq_onnx: str | Path | None = None, repo: str | Path = config.MODEL_REPOSITORY, version: int = 1,
                 plan_dir: str | Path = config.PLAN_DIR, typing: str = "auto",
                 max_ndcg_drop: float = MAX_NDCG_DROP) -> dict:
    """`make engine`: plan -> polygraphy gate -> ranker config for target tensorrt in `repo`.

    Checks TensorRT and the GPU before reading or writing anything. The repository is touched
    only after the plan passed its accuracy gate; a failed gate deletes the plan.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    trt = require_tensorrt()
    typing = resolve_typing(trt, typing)
    model_dir, plan_dir = Path(model_dir), Path(plan_dir)
    fp32_onnx = Path(fp32_onnx or config.onnx_file("fp32"))
    if not fp32_onnx.exists():
        raise FileNotFoundError(f"no FP32 ONNX at {fp32_onnx}: run `make onnx` first")
    quality = None
    if precision == "int8":
        source = reference = Path(qdq_onnx or config.onnx_file("qdq"))
        if not source.exists():  # the gated QDQ build (`make qdq`) first
            quality = quantize_qdq(model_dir, fp32_onnx, source, max_ndcg_drop=max_ndcg_drop)
    else:
        reference, source = fp32_onnx, fp32_onnx
        if typing == "strong":  # the types live in the ONNX: FP16 with the FP32 islands, gated like INT8
            source = fp16_onnx(fp32_onnx, plan_dir / "model.fp16.onnx")
            quality = gate_engines(model_dir, fp32_onnx, source, "FP16 ONNX", max_ndcg_drop)
            if not quality["passed"]:
                source.unlink()
                enforce(quality)
    plan = plan_dir / f"model.{precision}.plan"
    report = build_plan(source, plan, precision, model_max_length(model_dir), typing)
    feeds = real_inputs(model_dir)
    inputs_path = save_inputs(feeds, plan_dir / "inputs.json")
    try:
        report["polygraphy"] = compare(reference, plan, feeds, TOLERANCES[precision])
    except BaseException:
        plan.unlink(missing_ok=True)
        raise
    report.update(inputs=str(inputs_path), onnx_quality=quality, repository=str(repo), version=version)
    build_repository(model_dir, plan, repo, target="tensorrt", version=version)
    plan.with_suffix(".json").write_text(json.dumps(report, indent=2, default=float))
    return report
