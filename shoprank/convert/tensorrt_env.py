"""Whether this host can build and run TensorRT engines: an NVIDIA GPU the driver sees, and a
`tensorrt` Python module with its libraries. Checked first by every engine build and by
evaluation, before anything is read or written.
"""
from __future__ import annotations

import ctypes

from ..errors import TensorRTUnavailable

INSTALL_HINT = (
    "TensorRT engines need an NVIDIA GPU with its driver and the `tensorrt` Python package. Either work "
    "inside NVIDIA's Triton container, which has the GPU stack and a tritonserver with the TensorRT backend "
    "(docker run --gpus all -it -v $PWD:/work -w /work nvcr.io/nvidia/tritonserver:<yy.mm>-py3), and there "
    "`pip install tensorrt==<its TensorRT version>` (dpkg -l 'libnvinfer*' shows it) if `import tensorrt` fails; "
    "or, on any GPU host, `pip install tensorrt` (NVIDIA's wheels come from pypi.nvidia.com). "
    "A plan only loads in the TensorRT version that built it: build with the version your tritonserver uses.")



def gpu_problem() -> str | None:
    """None when the CUDA driver sees an NVIDIA GPU, else what is wrong (checked through the
    driver library itself, so it needs neither nvidia-smi nor any Python CUDA package)."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return "no NVIDIA GPU driver (libcuda.so.1 not found)"
    rc = cuda.cuInit(0)
    if rc != 0:
        return f"the NVIDIA driver finds no usable GPU (cuInit error {rc})"
    count = ctypes.c_int(0)
    rc = cuda.cuDeviceGetCount(ctypes.byref(count))
    if rc != 0 or count.value < 1:
        return "no NVIDIA GPU visible to the driver (check --gpus / CUDA_VISIBLE_DEVICES)"
    return None


def import_tensorrt():
    """(the tensorrt module, None) or (None, why it is not usable here)."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        return None, f"no `tensorrt` Python module ({exc})"
    except Exception as exc:  # a stub wheel without its libraries fails in other ways
        return None, f"the `tensorrt` module does not load ({type(exc).__name__}: {exc})"
    if not hasattr(trt, "Builder"):
        return None, "the installed `tensorrt` package is a stub without TensorRT's libraries"
    return trt, None


def require_tensorrt():
    """The `tensorrt` module, after checking that this host can build engines at all.

    Cheap and first in every engine build: fails before anything is read or written.
    """
    trt, problem = import_tensorrt()
    missing = [p for p in (gpu_problem(), problem) if p]
    if missing:
        raise TensorRTUnavailable("cannot build a TensorRT engine here: " + "; ".join(missing) + ".\n"
                                  + INSTALL_HINT)
    return trt
