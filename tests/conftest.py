"""Shared fixtures: one tiny fine-tuned model built through the real pipeline (fine-tune ->
ONNX -> INT8 -> model repository). The server that serves it: integration/conftest.py."""
from __future__ import annotations

from pathlib import Path

import pytest

TEST_MAX_LENGTH = 48  # below the default, so truncation and bucket capping are exercised


@pytest.fixture(scope="session")
def build_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("build")


@pytest.fixture(scope="session")
def tiny_model(build_dir) -> Path:
    """A tiny BERT (real MiniLM tokenizer) fine-tuned a few steps on the default data."""
    from shoprank.training.finetune import TrainConfig, finetune
    from shoprank.training.model import build_tiny_model

    base = build_tiny_model(build_dir / "tiny-base")
    out = build_dir / "model"
    finetune(TrainConfig(base_model=str(base), out_dir=str(out), max_steps=60, batch_size=32,
                         lr=1e-3, max_length=TEST_MAX_LENGTH, evals_per_epoch=1, threads=2))
    return out


@pytest.fixture(scope="session")
def onnx_fp32(tiny_model, build_dir) -> Path:
    from shoprank.convert.onnx_export import export_onnx

    return Path(export_onnx(tiny_model, build_dir / "onnx" / "model.fp32.onnx")["onnx"])


@pytest.fixture(scope="session")
def onnx_int8(tiny_model, onnx_fp32, build_dir) -> Path:
    from shoprank.convert.int8 import quantize_int8

    # What `make int8` builds: per-row activation scales (isolated scores, tests/unit/convert/
    # test_per_row.py). The tiny model's scores are nearly flat, so its NDCG is noise; the real
    # gate is tested on its own in unit/convert/test_onnx_int8.py.
    return Path(quantize_int8(tiny_model, onnx_fp32, build_dir / "onnx" / "model.int8.onnx",
                              max_ndcg_drop=0.05, activations="per-row")["int8"])


@pytest.fixture(scope="session")
def repository(tiny_model, onnx_int8, build_dir) -> Path:
    from shoprank.serving.triton.repository import build_repository

    return build_repository(tiny_model, onnx_int8, build_dir / "model_repository", target="python")


@pytest.fixture(scope="session")
def valid_pairs(tiny_model):
    from shoprank.data.split import model_pairs

    return model_pairs(tiny_model, "valid")
