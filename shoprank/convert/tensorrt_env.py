"""Whether this host can build and run TensorRT engines: an NVIDIA GPU the driver sees, and a
`tensorrt` Python module with its libraries. Checked first by every engine build and by
evaluation, before anything is read or written.
"""
from __future__ import annotations

import ctypes
from pathlib import Path

from ..container import CONTAINER_TENSORRT, TRITON_IMAGE
from ..errors import TensorRTUnavailable

INSTALL_HINT = (
    "TensorRT engines need an NVIDIA GPU with its driver and the `tensorrt` Python package. Either work "
    "inside NVIDIA's Triton container, which has the GPU stack and a tritonserver with the TensorRT backend "
    f"(docker run --gpus all -it -v $PWD:/work -w /work {TRITON_IMAGE}), and there "
    f"`pip install tensorrt=={CONTAINER_TENSORRT}.*` (its TensorRT; dpkg -l 'libnvinfer*' shows it) "
    "if `import tensorrt` fails; "
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


# Where NVIDIA's container and Debian's packages put libnvinfer (the TensorRT that tritonserver's
# TensorRT backend loads plans with).
LIBNVINFER_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/local/tensorrt/lib",
                   "/opt/tritonserver/backends/tensorrt")


def libnvinfer_versions(dirs=LIBNVINFER_DIRS) -> list[str]:
    """TensorRT versions of the libnvinfer libraries found (from names like libnvinfer.so.10.7.0)."""
    found = set()
    for folder in map(Path, dirs):
        for lib in folder.glob("libnvinfer.so.*") if folder.is_dir() else ():
            version = lib.name.removeprefix("libnvinfer.so.")
            if version.count(".") >= 2 and all(part.isdigit() for part in version.split(".")):
                found.add(version)
    return sorted(found, key=lambda v: tuple(map(int, v.split("."))))


def same_tensorrt(a: str, b: str) -> bool:
    """A plan loads only in the TensorRT that built it: major.minor.patch must match."""
    return a.split(".")[:3] == b.split(".")[:3]


def tensorrt_mismatch(python_version: str, server_versions: list[str]) -> str | None:
    """None when the pip `tensorrt` builds plans the server's libnvinfer loads (or no libnvinfer
    was found to compare with), else what to install."""
    if not server_versions or any(same_tensorrt(python_version, v) for v in server_versions):
        return None
    wanted = server_versions[-1]
    return (f"the `tensorrt` Python package is {python_version} but the server's libnvinfer is "
            f"{', '.join(server_versions)}: a plan built with it would fail at load; "
            f"pip install tensorrt=={'.'.join(wanted.split('.')[:3])}.*")


def require_tensorrt():
    """The `tensorrt` module, after checking that this host can build engines at all.

    Cheap and first in every engine build: fails before anything is read or written.
    """
    trt, problem = import_tensorrt()
    mismatch = tensorrt_mismatch(trt.__version__, libnvinfer_versions()) if trt is not None else None
    missing = [p for p in (gpu_problem(), problem, mismatch) if p]
    if missing:
        raise TensorRTUnavailable("cannot build a TensorRT engine here: " + "; ".join(missing) + ".\n"
                                  + INSTALL_HINT)
    return trt
