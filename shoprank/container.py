"""NVIDIA's Triton container and how a cluster runs it: one set of facts.

Read by the GPU check (scripts/gpu_check.sh through `shoprank gpu-env`), the TensorRT build,
the health checks of shoprank.serving.server, the multi-replica run (shoprank.deploy) and the
tests that check deploy/kubernetes/ against them (tests/unit/deploy/). Change a version here and
those tests name every manifest that no longer agrees.
"""
from __future__ import annotations

from . import __version__

# --- the container --------------------------------------------------------------------------------
# 24.12 is the first release on Ubuntu 24.04, whose Python (3.12) meets requirements.txt; 24.10
# (the Triton 2.51 of the pip wheel) is Ubuntu 22.04 with Python 3.10, too old for the pins.
# Versions from NVIDIA's release notes for Triton 24.12 (support matrix: Triton 2.53.0, CUDA 12.6.3,
# TensorRT 10.7.0).
TRITON_RELEASE = "24.12"
TRITON_SERVER_VERSION = "2.53.0"
TRITON_IMAGE = f"nvcr.io/nvidia/tritonserver:{TRITON_RELEASE}-py3"
CONTAINER_PYTHON = (3, 12)
CONTAINER_TENSORRT = "10.7.0"
# requirements.txt needs this much Python (transformers, onnxruntime, contextlib.chdir in qdq.py).
MIN_PYTHON = (3, 11)

# Our image: the container above + requirements.txt + shoprank (deploy/kubernetes/Dockerfile).
IMAGE_NAME = "shoprank-triton"
IMAGE_TAG = f"{__version__}-triton{TRITON_RELEASE}"
IMAGE = f"{IMAGE_NAME}:{IMAGE_TAG}"


# --- the server's health and the autoscaling signal ----------------------------------------------------
READY_PATH = "/v2/health/ready"
LIVE_PATH = "/v2/health/live"
# Triton's queue-time counter (µs, per model): the HPA scales on its rate per request, as Triton's
# own Kubernetes examples do (the metric name below is what prometheus-adapter exposes it as).
QUEUE_COUNTER = "nv_inference_queue_duration_us"
SUCCESS_COUNTER = "nv_inference_request_success"
HPA_METRIC = "shoprank_ranker_queue_us_per_request"
HPA_MODEL = "ranker"  # the step where requests wait for an engine (the ensemble itself never queues)
# Average queue time per ranker request above which the HPA adds a replica: a fifth of the
# 100 ms p99 the cpu load profile targets.
HPA_TARGET_QUEUE_US = 20_000


def python_problem(version: tuple[int, ...]) -> str | None:
    """None when a Python of `version` can run requirements.txt, else why not."""
    if tuple(version[:2]) >= MIN_PYTHON:
        return None
    have = ".".join(map(str, version[:3]))
    need = ".".join(map(str, MIN_PYTHON))
    return (f"Python {have} is too old: requirements.txt needs >= {need}; use {TRITON_IMAGE} "
            f"(Python {'.'.join(map(str, CONTAINER_PYTHON))})")


if __name__ == "__main__":  # `python -m shoprank.container image|tag|python|tensorrt`: for scripts and docker build
    import sys

    facts = {"image": TRITON_IMAGE, "tag": IMAGE, "python": ".".join(map(str, CONTAINER_PYTHON)),
             "min-python": ".".join(map(str, MIN_PYTHON)), "tensorrt": CONTAINER_TENSORRT}
    if len(sys.argv) != 2 or sys.argv[1] not in facts:
        sys.exit(f"usage: python -m shoprank.container {'|'.join(facts)}")
    print(facts[sys.argv[1]])
