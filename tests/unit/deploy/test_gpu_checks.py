"""The GPU path's up-front checks, without TensorRT (not installed here): the container's Python
against the pins, the pip TensorRT against the server's libnvinfer, an ONNX file refused as a
TensorRT plan, and TensorRT 11's typing=auto on an FP32 ONNX."""
from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import onnx
import pytest

from shoprank import config, container
from shoprank.convert import tensorrt
from shoprank.convert.tensorrt_env import libnvinfer_versions, tensorrt_mismatch
from shoprank.errors import DataError
from shoprank.serving.triton.repository import build_repository, is_onnx


def test_python_check_refuses_what_the_pins_cannot_run():
    assert container.python_problem((3, 10, 12)) is not None
    assert "3.10.12 is too old" in container.python_problem((3, 10, 12))
    assert container.TRITON_IMAGE in container.python_problem((3, 10, 12))
    assert container.python_problem((3, 11, 0)) is None
    assert container.python_problem(container.CONTAINER_PYTHON) is None  # the named container fits
    # requirements.txt's own floor agrees with the pinned packages' interpreter here.
    assert container.python_problem(sys.version_info) is None


def test_gpu_check_stops_first_on_an_old_python(tmp_path):
    """scripts/gpu_check.sh runs the Python check before anything else: a fake venv python that
    reports 3.10 makes it exit 3 naming the Python, before TensorRT is even looked for."""
    fake = tmp_path / "venv" / "bin"
    fake.mkdir(parents=True)
    (fake / "python").write_text(
        "#!/bin/sh\n"
        f"exec {sys.executable} -c 'import sys; sys.version_info = (3, 10, 12, \"final\", 0); "
        "sys.argv = sys.argv[1:]; import runpy; "
        "runpy.run_module(sys.argv[1], run_name=\"__main__\") if sys.argv[0] == \"-m\" "
        "else exec(sys.argv[1])' \"$@\"\n")
    (fake / "python").chmod(0o755)
    done = subprocess.run(["bash", str(config.PROJECT_ROOT / "scripts" / "gpu_check.sh")], capture_output=True,
                          text=True, env={"PATH": "/usr/bin:/bin", "SHOPRANK": str(fake / "shoprank"),
                                          "PYTHONPATH": str(config.PROJECT_ROOT)}, timeout=60)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "Python 3.10.12 is too old" in done.stderr and "TensorRT, GPU" not in done.stdout


def test_libnvinfer_versions_come_from_the_library_names(tmp_path):
    for name in ("libnvinfer.so.10", "libnvinfer.so.10.7.0", "libnvinfer.so.10.3.0", "libnvinfer_plugin.so.10.7.0"):
        (tmp_path / name).write_bytes(b"")
    assert libnvinfer_versions([tmp_path, tmp_path / "missing"]) == ["10.3.0", "10.7.0"]


def test_pip_tensorrt_must_match_the_server_libnvinfer():
    assert tensorrt_mismatch("10.7.0.23", ["10.7.0"]) is None
    assert tensorrt_mismatch("10.7.0.23", []) is None  # nothing to compare with (no server library here)
    problem = tensorrt_mismatch("10.8.0.43", ["10.7.0"])
    assert "10.8.0.43" in problem and "pip install tensorrt==10.7.0.*" in problem


def test_repository_for_tensorrt_refuses_an_onnx_file(tiny_model, onnx_fp32, tmp_path):
    assert is_onnx(onnx_fp32)
    renamed = tmp_path / "model.plan"  # an ONNX file under a plan's name
    renamed.write_bytes(onnx_fp32.read_bytes())
    not_onnx = tmp_path / "engine.plan"
    not_onnx.write_bytes(b"ftrt\x00\x01 not an onnx model")
    assert is_onnx(renamed) and not is_onnx(not_onnx)
    for engine in (onnx_fp32, renamed):
        with pytest.raises(DataError, match="is an ONNX file, not a TensorRT plan"):
            build_repository(tiny_model, engine, tmp_path / "repo", target="tensorrt")
    assert not (tmp_path / "repo").exists()


def test_make_repository_tensorrt_with_onnx_is_one_line_and_nonzero(tiny_model, onnx_fp32, tmp_path):
    done = subprocess.run([sys.executable, "-m", "shoprank.cli", "repository", "--model", str(tiny_model),
                           "--engine", str(onnx_fp32), "--repo", str(tmp_path / "repo"), "--target", "tensorrt"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "not a TensorRT plan" in lines[0] and "Traceback" not in done.stderr


def _trt(weak: bool):
    flags = SimpleNamespace(**({"FP16": 1, "OBEY_PRECISION_CONSTRAINTS": 2} if weak else {}))
    return SimpleNamespace(BuilderFlag=flags, __version__="10.7.0" if weak else "11.0.0")


def test_typing_auto_on_tensorrt_11_builds_from_a_mixed_fp16_onnx(onnx_fp32, tmp_path):
    """TensorRT 11 has only strongly typed networks: typing=auto resolves to strong, and an FP32
    ONNX then becomes fp16_onnx()'s mixed copy instead of raising."""
    assert tensorrt.resolve_typing(_trt(weak=False), "auto") == "strong"
    assert tensorrt.resolve_typing(_trt(weak=True), "auto") == "weak"
    source = tensorrt.strong_fp16_source(onnx_fp32, "fp16", "auto", "strong", tmp_path)
    assert source != onnx_fp32 and source.parent == tmp_path
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in onnx.load(str(source)).graph.initializer)
    # Explicit strong typing with an FP32 file stays an error; weak typing and INT8 read the file as is.
    with pytest.raises(ValueError, match="is FP32"):
        tensorrt.strong_fp16_source(onnx_fp32, "fp16", "strong", "strong", tmp_path)
    assert tensorrt.strong_fp16_source(onnx_fp32, "fp16", "auto", "weak", tmp_path) == onnx_fp32
    assert tensorrt.strong_fp16_source(onnx_fp32, "int8", "auto", "strong", tmp_path) == onnx_fp32
    with pytest.raises(FileNotFoundError):
        tensorrt.strong_fp16_source(tmp_path / "none.onnx", "fp16", "auto", "strong", tmp_path)
