"""Build steps after fine-tuning: ONNX export (checked against PyTorch) and CPU INT8.

Each step validates its output on real (query, product) pairs from the validation split and
raises BuildError, leaving no output behind, when it misses its tolerance.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from . import config, data, metrics
from .engine import OrtEngine, sigmoid
from .modeling import engine_module, load_cross_encoder, model_max_length, torch_logits
from .quality_gate import DEFAULT_MAX_NDCG_DROP  # noqa: F401  (the margin of the other conversions)
from .tokenize import PairEncoder

ONNX_MAX_ABS_DIFF = 1e-4        # ONNX Runtime FP32 vs PyTorch logits
# Validation NDCG@10, CPU INT8 vs FP32. Looser than DEFAULT_MAX_NDCG_DROP (0.005): the default
# data's 86 judged validation queries make a 0.005 gate noise-bound (the demo model's INT8
# measured -0.0059 there, -0.0005 on 842 Home Depot queries).
INT8_MAX_NDCG_DROP = 0.01
ONNX_DIR = config.ARTIFACTS_DIR / "onnx"
FP32_ONNX = ONNX_DIR / "model.fp32.onnx"
INT8_ONNX = ONNX_DIR / "model.int8.onnx"


class BuildError(RuntimeError):
    """A build output failed its check; nothing was written."""


def validation_pairs(model_dir: str | Path, limit: int | None = None):
    """The validation split of the data the model was trained on (its card names it)."""
    from .modeling import read_model_card

    card = read_model_card(model_dir)
    pairs = data.load_pairs(data.resolve_data(card.get("data")), card.get("mapping", "auto"))
    _, valid = data.split_by_query(pairs, seed=card.get("seed", config.SEED))
    if limit and len(valid) > limit:
        keep = valid["query"].drop_duplicates().iloc[: max(1, limit // 5)]
        valid = valid[valid["query"].isin(keep)].reset_index(drop=True)
    return valid


def export_onnx(model_dir: str | Path, out_path: str | Path = FP32_ONNX, check_pairs: int = 512) -> dict:
    import torch

    model_dir, out_path = Path(model_dir), Path(out_path)
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
    valid = validation_pairs(model_dir, check_pairs)
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
    _write_report(out_path, report)
    shutil.copy(model_dir / "shoprank.json", out_path.parent / "shoprank.json")
    return report


def quantize_int8(model_dir: str | Path, fp32_path: str | Path = FP32_ONNX, out_path: str | Path = INT8_ONNX,
                  max_ndcg_drop: float = INT8_MAX_NDCG_DROP, float_layers: tuple[int, ...] = ()) -> dict:
    """Per-channel dynamic INT8 of the MatMuls (weights INT8, activations quantized on the fly).

    Embedding lookups stay FP32: quantizing them too measured the same speed but lost 0.0059
    validation NDCG@10 on the demo model, against 0.0001 with MatMuls only (reports/bench.md).
    float_layers: encoder layers whose MatMuls stay FP32 (a distilled 3-layer student's first
    layer is the one INT8 hurts: Spearman vs its FP32 0.9927 all INT8, 0.9977 with it in FP32)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp32_path, out_path = Path(fp32_path), Path(out_path)
    tmp = out_path.with_suffix(".partial.onnx")
    exclude = []
    if float_layers:
        graph = onnx.load(str(fp32_path), load_external_data=False).graph
        marks = tuple(f"/layer.{i}/" for i in float_layers)
        exclude = [n.name for n in graph.node if n.op_type == "MatMul" and any(m in n.name for m in marks)]
        if not exclude:
            raise BuildError(f"no MatMul of encoder layers {float_layers} found in {fp32_path}")
    quantize_dynamic(str(fp32_path), str(tmp), per_channel=True, weight_type=QuantType.QInt8,
                     op_types_to_quantize=["MatMul"], nodes_to_exclude=exclude)
    report = compare_engines(model_dir, fp32_path, tmp)
    report.update(int8=str(out_path), max_ndcg_drop=max_ndcg_drop, float_layers=list(float_layers))
    if report["ndcg_drop"] > max_ndcg_drop:
        tmp.unlink()
        raise BuildError(f"INT8 loses {report['ndcg_drop']:.4f} NDCG@10 against FP32 (> {max_ndcg_drop})")
    tmp.replace(out_path)
    _write_report(out_path, report)
    return report


def compare_engines(model_dir, reference_path, candidate_path, limit: int | None = None) -> dict:
    """Agreement of two ONNX engines on validation queries: the quality gate's numbers.

    Each query is scored in its own engine call with its judged products, as a rank request
    is served: dynamic INT8 takes activation scales from the whole call, so scoring many
    queries per call would measure something never served."""
    from .evaluation import per_request_logits

    valid = validation_pairs(model_dir, limit)
    encoder = PairEncoder.from_dir(model_dir, max_length=model_max_length(model_dir))

    def served_like(path):
        engine = OrtEngine(path)
        return sigmoid(per_request_logits(valid, lambda query, texts: engine.logits(encoder.encode(query, texts))))

    ref, cand = served_like(reference_path), served_like(candidate_path)
    ref_q, cand_q = metrics.evaluate(valid, ref), metrics.evaluate(valid, cand)
    agree = metrics.agreement(ref, cand, valid)
    return {"pairs": len(valid), "queries": int(valid["query"].nunique()),
            "ndcg_reference": ref_q["ndcg@10"], "ndcg_candidate": cand_q["ndcg@10"],
            "ndcg_drop": ref_q["ndcg@10"] - cand_q["ndcg@10"], **agree}


def _write_report(onnx_path: Path, report: dict) -> None:
    onnx_path.with_suffix(".json").write_text(json.dumps(report, indent=2, default=float))
