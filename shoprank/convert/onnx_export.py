"""ONNX export of a fine-tuned cross-encoder, checked against PyTorch.

The export must match PyTorch on real (query, product) pairs of the validation split (max
|Δlogit| <= ONNX_MAX_ABS_DIFF) on shapes other than the example's; otherwise BuildError, and
no file is left behind.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from .. import config
from ..data.split import model_pairs
from ..errors import BuildError
from ..model_card import MODEL_CARD, model_max_length
from ..serving.engine import OrtEngine
from ..serving.tokenizer import PairEncoder
from ..training.model import engine_module, load_cross_encoder, torch_logits

ONNX_MAX_ABS_DIFF = 1e-4        # ONNX Runtime FP32 vs PyTorch logits
CHECK_QUERIES = 100             # validation queries the parity check runs on


def export_onnx(model_dir: str | Path, out_path: str | Path | None = None,
                check_queries: int = CHECK_QUERIES) -> dict:
    import torch

    model_dir, out_path = Path(model_dir), Path(out_path or config.onnx_file("fp32"))
    max_length = model_max_length(model_dir)
    encoder = PairEncoder.from_dir(model_dir, max_length=max_length, buckets=None)
    model = load_cross_encoder(model_dir).eval()
    wrapper = engine_module(model)
    example = encoder.encode("cordless drill", ["20v max cordless drill driver kit", "white paint"])
    args = tuple(torch.from_numpy(example[name]) for name in config.ENGINE_INPUTS)
    axes = {name: {0: "batch", 1: "sequence"} for name in config.ENGINE_INPUTS}
    axes[config.ENGINE_OUTPUT] = {0: "batch"}
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(".partial.onnx")
    # The TorchScript exporter keeps batch and sequence dynamic on this model (checked below
    # on shapes other than the example's).
    torch.onnx.export(wrapper, args, str(tmp), input_names=list(config.ENGINE_INPUTS),
                      output_names=[config.ENGINE_OUTPUT], dynamic_axes=axes,
                      opset_version=config.ONNX_OPSET, do_constant_folding=True, dynamo=False)
    import onnx

    onnx.checker.check_model(str(tmp))
    valid = model_pairs(model_dir, "valid", limit_queries=check_queries)
    engine = OrtEngine(tmp)
    worst = 0.0
    queries, texts = valid["query"].tolist(), valid["text"].tolist()
    for start in range(0, len(valid), 64):
        batch = encoder.encode_pairs(queries[start:start + 64], texts[start:start + 64])
        worst = max(worst, float(np.abs(engine.logits(batch) - torch_logits(model, batch)).max()))
    if not worst <= ONNX_MAX_ABS_DIFF:
        tmp.unlink()
        raise BuildError(f"ONNX Runtime differs from PyTorch by {worst:.2e} > {ONNX_MAX_ABS_DIFF:.0e} on real pairs")
    tmp.replace(out_path)
    report = {"onnx": str(out_path), "opset": config.ONNX_OPSET, "pairs_checked": len(valid),
              "max_abs_logit_diff": worst, "tolerance": ONNX_MAX_ABS_DIFF}
    write_report(out_path, report)
    shutil.copy(model_dir / MODEL_CARD, out_path.parent / MODEL_CARD)
    return report


def write_report(onnx_path: Path, report: dict) -> None:
    onnx_path.with_suffix(".json").write_text(json.dumps(report, indent=2, default=float))
