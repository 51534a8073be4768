"""TensorRT path: what runs without a GPU (QDQ INT8 quality under ONNX Runtime, the FP16 ONNX,
profile shapes, generated configs, polygraphy plumbing, the no-TensorRT failure) and the engine
build itself where an NVIDIA GPU with TensorRT is present."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from shoprank import config
from shoprank.convert.polygraphy_check import TOLERANCES, Tolerance, compare, real_inputs, save_inputs
from shoprank.convert.qdq import QdqRecipe, calibration_pairs, qdq_summary, quantize_qdq, write_qdq
from shoprank.convert.tensorrt import build_engine, build_plan, fp16_onnx, profile_shapes, ranker_max_batch
from shoprank.convert.tensorrt_env import INSTALL_HINT, gpu_problem, require_tensorrt
from shoprank.data.split import model_pairs
from shoprank.errors import AccuracyMiss, GateRefused, TensorRTUnavailable
from shoprank.model_card import model_max_length
from shoprank.serving.triton.repository import render

# The tiny test model's scores are nearly flat, so its NDCG differences are noise; the gate's
# failing side is tested with an impossible margin below.
TINY_MARGIN = 0.05


def _has_tensorrt() -> bool:
    try:
        import tensorrt  # noqa: F401
    except Exception:
        return False
    return gpu_problem() is None


needs_gpu = pytest.mark.skipif(not _has_tensorrt(), reason="needs an NVIDIA GPU with TensorRT")


@pytest.fixture(scope="module")
def qdq(tiny_model, onnx_fp32, build_dir):
    out = build_dir / "qdq" / "model.qdq.onnx"  # not beside the shared FP32/INT8: eval's table must not see it
    report = quantize_qdq(tiny_model, onnx_fp32, out, QdqRecipe(), n_pairs=256, max_ndcg_drop=TINY_MARGIN)
    return out, report


@pytest.fixture(scope="module")
def feeds(tiny_model):
    return real_inputs(tiny_model)


# --- one source of truth: profile, config, contract ------------------------------------------------
def test_profile_covers_every_batch_the_ranker_config_allows(tiny_model):
    max_length = model_max_length(tiny_model)
    shapes = profile_shapes(max_length)
    ranker = text_format.Parse(render(config.RANKER_MODEL, "tensorrt", max_length), model_config_pb2.ModelConfig())
    assert list(shapes) == list(config.ENGINE_INPUTS)
    assert ranker_max_batch() == ranker.max_batch_size >= config.MAX_CANDIDATES
    warmup = ranker.model_warmup[0]
    for name, s in shapes.items():
        assert s.min == (1, 1) and s.max == (ranker.max_batch_size, max_length)
        assert all(lo <= o <= hi for lo, o, hi in zip(s.min, s.opt, s.max))
        assert s.opt == (50, min(32, max_length))  # a rank-50 request in the 32-token bucket
        # Triton's warmup request must fit the engine's profile.
        assert warmup.batch_size <= s.max[0] and list(warmup.inputs[name].dims)[0] <= s.max[1]
    assert profile_shapes(16)[config.ENGINE_INPUTS[0]].opt == (50, 16)
    with pytest.raises(ValueError):
        profile_shapes(0)


def test_tensorrt_ranker_config_matches_the_engine_contract():
    ranker = text_format.Parse(render(config.RANKER_MODEL, "tensorrt"), model_config_pb2.ModelConfig())
    assert ranker.platform == "tensorrt_plan" and ranker.backend == ""
    assert ranker.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    assert ranker.HasField("dynamic_batching")
    id_type = {"int32": model_config_pb2.TYPE_INT32, "int64": model_config_pb2.TYPE_INT64}[config.ID_DTYPE]
    assert [(i.name, i.data_type, list(i.dims)) for i in ranker.input] == [
        (name, id_type, [-1]) for name in config.ENGINE_INPUTS]
    assert [(o.name, o.data_type, list(o.dims)) for o in ranker.output] == [
        (config.ENGINE_OUTPUT, model_config_pb2.TYPE_FP32, [1])]


def test_calibration_pairs_come_from_the_training_split_only(tiny_model):
    calib = calibration_pairs(tiny_model, 128)
    assert len(calib) == 128
    assert not set(calib["query"]) & set(model_pairs(tiny_model, "valid")["query"])
    with pytest.raises(ValueError):
        calibration_pairs(tiny_model, 0)


# --- QDQ INT8 under ONNX Runtime ------------------------------------------------------------------
def test_qdq_is_symmetric_int8_on_matmul_inputs_only(qdq):
    path, report = qdq
    summary = qdq_summary(path)
    # TensorRT takes only symmetric INT8; Q/DQ sit on MatMul/Gemm inputs, everything else is float.
    assert summary["int8"] and summary["symmetric"]
    assert summary["quantized_ops"] == ["Gemm", "MatMul"]
    # What the default recipe leaves float: attention's two activation MatMuls per layer, and
    # the GEMMs fed by an activation - each FFN down-projection (after GELU) and the classifier
    # (after the pooler's tanh).
    nodes = onnx.load(str(path)).graph.node
    n_layers = len({n.name.split("/layer.")[1].split("/")[0] for n in nodes if "/layer." in n.name})
    floats = summary["float_matmuls"]
    assert len(floats) == 3 * n_layers + 1
    assert sum("attention/self/MatMul" in name for name in floats) == 2 * n_layers
    assert sum(name.endswith("/output/dense/MatMul") and "attention" not in name for name in floats) == n_layers
    assert sum("classifier" in name for name in floats) == 1
    assert summary["int8_matmuls"] > 0
    assert report["recipe_name"] == QdqRecipe().name and report["calibration_split"] == "train"


def test_linear_only_and_exclude_leave_the_chosen_matmuls_float(tiny_model, onnx_fp32, tmp_path):
    out = tmp_path / "linear.onnx"
    # Relative paths too (the pre-processing runs in a temporary working directory).
    recipe = QdqRecipe(linear_only=True, float_after_activation=False, exclude=(r"pooler",))
    write_qdq(os.path.relpath(tiny_model), os.path.relpath(onnx_fp32), os.path.relpath(out), recipe, n_pairs=64)
    weights = {i.name for i in onnx.load(str(onnx_fp32)).graph.initializer}
    attention = [n.name for n in onnx.load(str(onnx_fp32)).graph.node
                 if n.op_type == "MatMul" and not any(i in weights for i in n.input)]
    floats = qdq_summary(out)["float_matmuls"]
    assert attention and sorted(floats) == sorted(attention + ["/inner/bert/pooler/dense/Gemm"])


def test_qdq_gate_passes_within_the_margin_and_reports(qdq):
    path, report = qdq
    assert path.exists() and report["ndcg_drop"] <= TINY_MARGIN
    saved = json.loads(path.with_suffix(".json").read_text())
    for key in ("ndcg_reference", "ndcg_candidate", "ndcg_drop", "spearman", "topk_overlap", "queries",
                "max_ndcg_drop", "recipe"):
        assert key in saved
    assert saved["max_ndcg_drop"] == TINY_MARGIN


def test_qdq_gate_fails_on_an_impossible_margin_and_leaves_nothing(tiny_model, onnx_fp32, tmp_path):
    out = tmp_path / "model.qdq.onnx"
    # A negative margin demands INT8 beat FP32 by 1.0 NDCG: impossible, must fail.
    with pytest.raises(GateRefused, match="QDQ INT8"):
        quantize_qdq(tiny_model, onnx_fp32, out, QdqRecipe(), n_pairs=64, max_ndcg_drop=-1.0)
    assert not list(tmp_path.iterdir())


def test_recipe_refuses_unknown_choices():
    with pytest.raises(ValueError, match="calibration method"):
        QdqRecipe(method="mean")
    with pytest.raises(ValueError, match="placement"):
        QdqRecipe(placement="everywhere")


# --- FP16 ONNX (strongly typed builds) ------------------------------------------------------------
def test_fp16_onnx_keeps_normalization_and_softmax_in_fp32(tiny_model, onnx_fp32, feeds, tmp_path):
    path = fp16_onnx(onnx_fp32, tmp_path / "model.fp16.onnx")
    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    types = {v.name: v.type.tensor_type.elem_type for v in
             list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output)}
    types.update({i.name: i.data_type for i in model.graph.initializer})
    guarded = [n for n in model.graph.node if n.op_type in ("LayerNormalization", "Softmax")]
    assert guarded
    for node in guarded:
        assert {types[i] for i in node.input if i} == {onnx.TensorProto.FLOAT}, node.name
    matmul_weights = [types[i] for n in model.graph.node if n.op_type == "MatMul" for i in n.input
                      if i in {init.name for init in model.graph.initializer}]
    assert matmul_weights and set(matmul_weights) == {onnx.TensorProto.FLOAT16}
    assert [i.type.tensor_type.elem_type for i in model.graph.input] == [onnx.TensorProto.INT32] * 3
    report = compare(onnx_fp32, path, feeds, TOLERANCES["fp16"])  # it runs under ONNX Runtime CPU too
    assert report["passed"]


# --- polygraphy -----------------------------------------------------------------------------------
def test_real_inputs_span_the_request_shapes_within_the_profile(tiny_model, feeds):
    max_length = model_max_length(tiny_model)
    shapes = profile_shapes(max_length)[config.ENGINE_INPUTS[0]]
    batch_sizes = {f[config.ENGINE_INPUTS[0]].shape[0] for f in feeds}
    assert {1, 50} <= batch_sizes
    assert max(f[config.ENGINE_INPUTS[0]].shape[1] for f in feeds) == max_length
    for feed in feeds:
        assert list(feed) == list(config.ENGINE_INPUTS)
        for array in feed.values():
            assert array.dtype == np.dtype(config.ID_DTYPE)
            assert all(lo <= d <= hi for lo, d, hi in zip(shapes.min, array.shape, shapes.max))


def test_polygraphy_gate_passes_and_misses(onnx_fp32, qdq, feeds):
    report = compare(onnx_fp32, qdq[0], feeds, TOLERANCES["int8"])
    assert report["passed"] and report["batches"] == len(feeds)
    with pytest.raises(AccuracyMiss, match="beyond atol"):
        compare(onnx_fp32, qdq[0], feeds, Tolerance(atol=1e-9, rtol=1e-9, reference="fp32"))


def test_saved_inputs_drive_the_polygraphy_cli(onnx_fp32, qdq, feeds, tmp_path):
    polygraphy = [sys.executable, "-m", "polygraphy"]
    if subprocess.run([*polygraphy, "-v"], capture_output=True).returncode != 0:
        polygraphy = [str(Path(sys.executable).parent / "polygraphy")]
    inputs = save_inputs(feeds, tmp_path / "inputs.json")
    ref = tmp_path / "ref.json"
    first = subprocess.run([*polygraphy, "run", str(onnx_fp32), "--onnxrt", "--load-inputs", str(inputs),
                            "--save-outputs", str(ref)], capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stdout + first.stderr
    tol = TOLERANCES["int8"]

    def against_reference(atol, rtol):
        return subprocess.run([*polygraphy, "run", str(qdq[0]), "--onnxrt", "--load-inputs", str(inputs),
                               "--load-outputs", str(ref), "--atol", str(atol), "--rtol", str(rtol)],
                              capture_output=True, text=True, timeout=300)

    ok = against_reference(tol.atol, tol.rtol)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert against_reference(1e-9, 1e-9).returncode != 0


# --- no TensorRT / no GPU ---------------------------------------------------------------------------
def test_make_engine_without_tensorrt_stops_at_once_and_leaves_the_repository_alone(tmp_path):
    # A `tensorrt` that cannot be imported, so the check is the same on a GPU host.
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "tensorrt.py").write_text("raise ImportError(\"No module named 'tensorrt'\")\n")
    repo = tmp_path / "repo"
    (repo / config.RANKER_MODEL / "1").mkdir(parents=True)
    (repo / config.RANKER_MODEL / "config.pbtxt").write_text("existing config\n")
    (repo / config.RANKER_MODEL / "1" / "model.onnx").write_bytes(b"existing engine")
    before = {p: p.read_bytes() for p in repo.rglob("*") if p.is_file()}
    env = dict(os.environ, PYTHONPATH=str(shadow))
    for precision in ("fp16", "int8"):
        run = subprocess.run([sys.executable, "-m", "shoprank.cli", "engine", "--precision", precision,
                              "--repo", str(repo), "--plan-dir", str(tmp_path / "plans"),
                              "--model", str(tmp_path / "no-model")],
                             capture_output=True, text=True, env=env, timeout=120)
        assert run.returncode == 3, run.stdout + run.stderr
        assert "no `tensorrt` Python module" in run.stderr
        assert "nvcr.io/nvidia/tritonserver" in run.stderr and "pip install tensorrt" in run.stderr
    assert {p: p.read_bytes() for p in repo.rglob("*") if p.is_file()} == before
    assert not (tmp_path / "plans").exists()


def test_missing_tensorrt_error_names_the_gpu_when_there_is_none(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt -> ImportError
    with pytest.raises(TensorRTUnavailable) as info:
        require_tensorrt()
    message = str(info.value)
    assert "no `tensorrt` Python module" in message and INSTALL_HINT in message
    problem = gpu_problem()
    if problem:  # this machine has no NVIDIA GPU: the message says so too
        assert problem in message


# --- GPU only --------------------------------------------------------------------------------------
@needs_gpu
@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_engine_builds_passes_polygraphy_and_configures_the_ranker(tiny_model, onnx_fp32, qdq, tmp_path, precision):
    repo = tmp_path / "repo"
    report = build_engine(tiny_model, precision, onnx_fp32, qdq[0], repo, plan_dir=tmp_path / "plans",
                          max_ndcg_drop=TINY_MARGIN)
    assert report["polygraphy"]["passed"]
    assert (repo / config.RANKER_MODEL / "1" / "model.plan").stat().st_size > 0
    ranker = text_format.Parse((repo / config.RANKER_MODEL / "config.pbtxt").read_text(),
                               model_config_pb2.ModelConfig())
    assert ranker.platform == "tensorrt_plan"


@needs_gpu
def test_polygraphy_compares_a_plan_with_onnxruntime(tiny_model, onnx_fp32, feeds, tmp_path):
    plan = tmp_path / "model.fp16.plan"
    build_plan(onnx_fp32, plan, "fp16", model_max_length(tiny_model))
    assert compare(onnx_fp32, plan, feeds, TOLERANCES["fp16"])["passed"]
