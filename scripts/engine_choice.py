#!/usr/bin/env python3
"""Which engine serves the gated 3-layer student fastest on this CPU, with isolated scores?

Issue 17 asks for a default served rank-50 p50 <= 0.10x naive PyTorch. This script measures,
in ONE run on the bench's rank-50 requests (shoprank.data.requests.RequestPool, the same seed),
the bench's naive PyTorch FP32 (the denominator) next to every engine variant of the student
(artifacts/model-l3, artifacts/onnx-l3), each as the bare engine measures it (PairEncoder +
engine + sort, in-process), interleaved request by request with the order rotated so that load
from other work on the shared machine hits all alike. For each variant also:

- isolation, as `make isolation` checks it (shoprank.measure.isolation): the largest change of a
  click probability when a request is scored merged with another one, and when half of its
  other candidates change; isolated means both <= 1e-5 (float rounding, not mixing);
- the quality gate against the full model's FP32 (shoprank.quality.gate, 0.005 NDCG@10), as
  `make distill` gates the student, and how many validation queries get tied scores.

Variants: ONNX Runtime (today's per-row INT8; FP32; per-row INT8 of a graph fused with
MultiHeadAttention, whose Q/K/V MatMuls stay quantizable) and PyTorch (FP32; bf16 weights and
activations on the CPU's AMX; bf16 GEMMs only; torch.compile (inductor); torch's native
TransformerEncoder fast path). bf16 GEMM results depend on the number of rows of the call, so
the isolated bf16 variants run every call at one fixed shape per length bucket ("fixed-16":
16 rows, padded). Writes reports/engine_choice.md and .json.

    .venv/bin/python scripts/engine_choice.py [--requests 10] [--rounds 2]
        [--variants ort-int8,torch-bf16] [--no-compile]

About 4-6 minutes on 2 busy cores, most of it torch.compile and the gate's scoring; results and
their reading: docs/benchmark.md, "Engine choice for the student".
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from shoprank import config
from shoprank.data.requests import RequestPool
from shoprank.data.split import model_pairs, query_groups
from shoprank.measure.bench.systems import naive_pytorch
from shoprank.measure.isolation import ISOLATION_TOL, cross_request, within_request
from shoprank.model_card import model_max_length
from shoprank.quality.gate import MAX_NDCG_DROP, engine_scores, judge, logits_as_served
from shoprank.serving.engine import OrtEngine, length_chunks, row_lengths, sigmoid
from shoprank.serving.sorter import rank_logits
from shoprank.serving.tokenizer import PairEncoder

TEACHER, STUDENT, STUDENT_ONNX = config.MODEL_DIR, config.ARTIFACTS_DIR / "model-l3", config.ARTIFACTS_DIR / "onnx-l3"
WORK = config.ARTIFACTS_DIR / "engine_choice"
WIDTHS = (16, 24, 32, 48, 64)     # fixed call widths of the fixed-shape torch variants (<= max length 64)


# --- PyTorch engines (measurement only: logits(batch) -> float32 [N], as OrtEngine) ------------------

class Bf16Linear(torch.nn.Module):
    """nn.Linear with bf16 weights; FP32 in and out (only the GEMM runs in bf16)."""

    def __init__(self, linear: torch.nn.Linear):
        super().__init__()
        self.weight = torch.nn.Parameter(linear.weight.detach().to(torch.bfloat16), requires_grad=False)
        self.bias = torch.nn.Parameter(linear.bias.detach().clone(), requires_grad=False)

    def forward(self, x):
        return torch.nn.functional.linear(x.to(torch.bfloat16), self.weight).float() + self.bias


def _bf16_linears(module) -> None:
    for name, child in module.named_children():
        if isinstance(child, torch.nn.Linear):
            setattr(module, name, Bf16Linear(child))
        else:
            _bf16_linears(child)


class TorchEngine:
    """The student under PyTorch. precision: fp32 | bf16 (weights and activations) | bf16-gemm;
    calls: "chunk-N" (OrtEngine's length chunks of <= N tokens) or "fixed-R" (R rows per call at
    the row's own width bucket, padded: one shape per bucket); compile: torch.compile (inductor)."""

    def __init__(self, model_dir: Path, precision: str = "fp32", calls: str = "chunk-256", compile: bool = False,
                 fast_path: bool = False, threads: int = 2):
        from transformers import AutoModelForSequenceClassification

        torch.set_num_threads(threads)
        model = AutoModelForSequenceClassification.from_pretrained(str(model_dir), attn_implementation="sdpa").eval()
        self.model, self.fast_path = model, None
        self.dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        if fast_path:
            self.fast_path = _fast_path_encoder(model, self.dtype)
        elif precision == "bf16":
            model.to(torch.bfloat16)
        elif precision == "bf16-gemm":
            _bf16_linears(model.bert.encoder)
        kind, size = calls.split("-")
        self.fixed_rows = int(size) if kind == "fixed" else 0
        self.chunk_tokens = int(size) if kind == "chunk" else 0
        self.forward = model
        if compile:
            import torch._inductor.config as inductor

            inductor.freezing = True   # weights as constants: lets inductor pre-pack them for oneDNN
            self.forward = torch.compile(model, dynamic=True)

    def _run(self, feeds: dict) -> np.ndarray:
        ids, mask, types = (torch.from_numpy(np.ascontiguousarray(feeds[n])).long() for n in config.ENGINE_INPUTS)
        with torch.inference_mode():
            if self.fast_path is None:
                logits = self.forward(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
            else:
                m = self.model
                hidden = m.bert.embeddings(input_ids=ids, token_type_ids=types).to(self.dtype)
                hidden = self.fast_path(hidden, src_key_padding_mask=mask == 0)
                if hidden.is_nested:
                    hidden = torch.nested.to_padded_tensor(hidden, 0.0)
                logits = m.classifier(m.bert.pooler(hidden.float()))
        return logits.float().reshape(-1).numpy()

    def logits(self, batch: dict) -> np.ndarray:
        feeds = {n: np.asarray(batch[n], dtype=np.int32) for n in config.ENGINE_INPUTS}
        rows = len(feeds[config.ENGINE_INPUTS[0]])
        lengths = row_lengths(feeds[config.ENGINE_INPUTS[1]])
        out = np.empty(rows, np.float32)
        if self.fixed_rows:
            for width, idx in fixed_calls(lengths, self.fixed_rows):
                out[idx] = self._run(_padded(feeds, idx, width, self.fixed_rows))[:len(idx)]
        elif self.chunk_tokens:
            for idx in length_chunks(lengths, self.chunk_tokens):
                width = int(lengths[idx[-1]])
                out[idx] = self._run({k: v[idx, :width] for k, v in feeds.items()})
        else:
            out[:] = self._run(feeds)
        return out


def fixed_calls(lengths: np.ndarray, rows: int):
    """(width, row indices) per call: rows grouped by their width bucket, at most `rows` a call."""
    widths = np.array([next((w for w in WIDTHS if w >= n), int(n)) for n in lengths])
    for width in sorted(set(widths.tolist())):
        idx = np.flatnonzero(widths == width)
        for start in range(0, len(idx), rows):
            yield width, idx[start:start + rows]


def _padded(feeds: dict, idx: np.ndarray, width: int, rows: int) -> dict:
    call = {}
    for name, value in feeds.items():
        part = np.zeros((rows, width), np.int32)
        cut = min(width, value.shape[1])
        part[:len(idx), :cut] = value[idx, :cut]
        if name == config.ENGINE_INPUTS[1]:
            part[len(idx):, 0] = 1   # filler rows attend to one [PAD] token; never read back
        call[name] = part
    return call


def _fast_path_encoder(model, dtype):
    """The BERT layers as torch.nn.TransformerEncoder (post-norm, exact GELU): torch's native
    fast path, which skips padding with nested tensors."""
    cfg = model.config
    layer = torch.nn.TransformerEncoderLayer(cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size, 0.0,
                                             "gelu", cfg.layer_norm_eps, batch_first=True, norm_first=False)
    encoder = torch.nn.TransformerEncoder(layer, cfg.num_hidden_layers, enable_nested_tensor=True)
    for src, dst in zip(model.bert.encoder.layer, encoder.layers):
        attn = src.attention
        with torch.no_grad():
            dst.self_attn.in_proj_weight.copy_(torch.cat([attn.self.query.weight, attn.self.key.weight,
                                                          attn.self.value.weight]))
            dst.self_attn.in_proj_bias.copy_(torch.cat([attn.self.query.bias, attn.self.key.bias,
                                                        attn.self.value.bias]))
        dst.self_attn.out_proj.load_state_dict(attn.output.dense.state_dict())
        dst.norm1.load_state_dict(attn.output.LayerNorm.state_dict())
        dst.linear1.load_state_dict(src.intermediate.dense.state_dict())
        dst.linear2.load_state_dict(src.output.dense.state_dict())
        dst.norm2.load_state_dict(src.output.LayerNorm.state_dict())
    return encoder.eval().to(dtype)


# --- ONNX Runtime variant built here --------------------------------------------------------------

def build_mha_int8(out_dir: Path) -> Path:
    """Per-row INT8 of the student's graph fused by ONNX Runtime's transformer optimizer with
    MultiHeadAttention (Q, K, V stay MatMuls, so the per-row rewrite quantizes them too)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers import optimizer
    from onnxruntime.transformers.fusion_options import FusionOptions

    from shoprank.convert.per_row import calibrate_zero_points, per_row_activations, quantized_tensors

    out_dir.mkdir(parents=True, exist_ok=True)
    fused, dynamic, out = out_dir / "mha.fp32.onnx", out_dir / "mha.dynamic.onnx", out_dir / "mha.int8.onnx"
    cfg = json.loads((STUDENT / "config.json").read_text())
    options = FusionOptions("bert")
    options.use_multi_head_attention = True
    options.enable_embed_layer_norm = False
    model = optimizer.optimize_model(str(STUDENT_ONNX / "model.fp32.onnx"), model_type="bert",
                                     num_heads=cfg["num_attention_heads"], hidden_size=cfg["hidden_size"],
                                     optimization_options=options, opt_level=0)
    model.save_model_to_file(str(fused))
    quantize_dynamic(str(fused), str(dynamic), per_channel=True, weight_type=QuantType.QInt8,
                     op_types_to_quantize=["MatMul"], extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    graph = onnx.load(str(dynamic))
    zero_points = calibrate_zero_points(fused, STUDENT, quantized_tensors(graph))
    onnx.save(per_row_activations(graph, zero_points), str(out))
    return out


def build_static_int8(out_dir: Path) -> Path:
    """The student's INT8 with constant calibrated activation scales, as `shoprank int8
    --activations calibrated` builds it (shoprank.convert.calibrated): isolated by construction."""
    from shoprank.convert.int8 import write_int8

    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / "static.int8.onnx"
    write_int8(STUDENT, STUDENT_ONNX / "model.fp32.onnx", out, activations="calibrated")
    return out


# --- the variants ---------------------------------------------------------------------------------

@dataclass
class Variant:
    key: str
    label: str
    make: Callable[[], object]     # -> an engine with logits(batch)
    compiles: bool = False


def variants(compile: bool) -> list[Variant]:
    t = TorchEngine
    out = [
        Variant("ort-int8", "ORT per-row INT8 (served today)", lambda: OrtEngine(STUDENT_ONNX / "model.int8.onnx")),
        Variant("ort-mha-int8", "ORT per-row INT8, MultiHeadAttention-fused graph",
                lambda: OrtEngine(build_mha_int8(WORK))),
        Variant("ort-static-int8", "ORT INT8, constant (calibrated) activation scales",
                lambda: OrtEngine(build_static_int8(WORK))),
        Variant("ort-fp32", "ORT FP32", lambda: OrtEngine(STUDENT_ONNX / "model.fp32.onnx")),
        Variant("torch-fp32", "torch FP32, SDPA attention", lambda: t(STUDENT)),
        Variant("torch-bf16", "torch bf16 (AMX), SDPA, length chunks of 1024 tokens",
                lambda: t(STUDENT, "bf16", "chunk-1024")),
        Variant("torch-bf16-fixed", "torch bf16 GEMMs only, fixed shapes (16 rows per width bucket)",
                lambda: t(STUDENT, "bf16-gemm", "fixed-16")),
        Variant("torch-fastpath-fp32", "torch nn.TransformerEncoder fast path FP32 (nested tensors)",
                lambda: t(STUDENT, "fp32", "chunk-0", fast_path=True)),
        Variant("torch-fastpath-bf16", "torch nn.TransformerEncoder fast path bf16, chunks of 256",
                lambda: t(STUDENT, "bf16", "chunk-256", fast_path=True)),
    ]
    if compile:
        out += [
            Variant("compile-bf16", "torch.compile (inductor, freezing) bf16, chunks of 256",
                    lambda: t(STUDENT, "bf16", "chunk-256", compile=True), compiles=True),
            Variant("compile-bf16-fixed", "torch.compile bf16 GEMMs only, fixed shapes (16 rows)",
                    lambda: t(STUDENT, "bf16-gemm", "fixed-16", compile=True), compiles=True),
        ]
    return out


_AMX_PROBE = """
import ctypes, numpy as np, onnxruntime as ort
from shoprank import config
s = ort.InferenceSession(%r, providers=["CPUExecutionProvider"])
s.run(None, {n: np.ones((2, 8), np.int32) for n in config.ENGINE_INPUTS})
perm = ctypes.c_ulong(0)
ok = ctypes.CDLL(None).syscall(158, 0x1022, ctypes.byref(perm)) == 0   # arch_prctl(ARCH_GET_XCOMP_PERM)
print(int(bool(perm.value & (1 << 18))) if ok else -1)                 # bit 18: XTILEDATA (AMX tiles)
"""


def ort_requests_amx(onnx_path: Path) -> bool | None:
    """Whether ONNX Runtime alone (a fresh process: torch's oneDNN would ask too) obtained Linux's
    permission for AMX tiles: MLAS asks for it when it finds AMX-INT8, for its U8S8 QGEMM."""
    import subprocess

    with contextlib.suppress(Exception):
        out = subprocess.run([sys.executable, "-c", _AMX_PROBE % str(onnx_path)], capture_output=True, text=True,
                             timeout=120).stdout.split()
        return None if not out or out[-1] == "-1" else out[-1] == "1"
    return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=10, help="distinct rank-50 requests timed (default 10)")
    parser.add_argument("--rounds", type=int, default=2, help="timed passes over them (default 2)")
    parser.add_argument("--variants", default="", help="comma-separated keys (default: all)")
    parser.add_argument("--no-compile", action="store_true", help="leave out the torch.compile variants")
    parser.add_argument("--out", type=Path, default=Path("reports/engine_choice.md"))
    args = parser.parse_args(argv)
    every = variants(not args.no_compile)
    wanted = [k for k in args.variants.split(",") if k]
    unknown = sorted(set(wanted) - {v.key for v in every})
    if unknown or args.requests < 1 or args.rounds < 1:
        print(f"engine_choice: {'unknown variant ' + unknown[0] if unknown else '--requests/--rounds must be >= 1'}"
              f" (variants: {', '.join(v.key for v in every)})", file=sys.stderr)
        return 2
    chosen = [v for v in every if not wanted or v.key in wanted]
    for path in (TEACHER, STUDENT, STUDENT_ONNX / "model.int8.onnx", config.onnx_file("fp32")):
        if not Path(path).exists():
            print(f"engine_choice: {path} not found (make onnx, make distill)", file=sys.stderr)
            return 2
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(WORK / "inductor"))
    started = {"utc": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "load": os.getloadavg(),
               "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}
    max_length = model_max_length(TEACHER)
    pool = RequestPool.from_spec("auto")
    requests = pool.distinct(config.RANK50, args.requests)
    warmup = pool.distinct(config.RANK50, 5, seed=config.SEED + 7)
    encoder = PairEncoder.from_dir(STUDENT, max_length=max_length)

    def ranker(engine):
        def rank(query, texts):
            logits = engine.logits(encoder.encode(query, texts))
            return rank_logits(logits, 0)[0], sigmoid(logits)
        return rank

    engines, rank_fns, setup_s = {}, {"naive": naive_pytorch(TEACHER, max_length).make_client()}, {}
    for v in chosen:
        began = time.perf_counter()
        engines[v.key] = v.make()
        rank_fns[v.key] = ranker(engines[v.key])
        for r in warmup:   # compiles here for the torch.compile variants
            rank_fns[v.key](r.query, list(r.texts))
        setup_s[v.key] = round(time.perf_counter() - began, 1)
        print(f"engine_choice: {v.key} ready in {setup_s[v.key]} s", flush=True)
    for r in warmup[:2]:
        rank_fns["naive"](r.query, list(r.texts))

    times = {k: [] for k in rank_fns}
    keys = list(rank_fns)
    for rnd in range(args.rounds):
        for i, r in enumerate(requests):
            shift = (i + rnd) % len(keys)
            for key in keys[shift:] + keys[:shift]:
                began = time.perf_counter()
                rank_fns[key](r.query, list(r.texts))
                times[key].append((time.perf_counter() - began) * 1000)
    p50 = {k: statistics.median(v) for k, v in times.items()}
    during = os.getloadavg()
    print("engine_choice: latency done; isolation and quality", flush=True)

    valid = model_pairs(TEACHER, "valid")
    reference = engine_scores(valid, TEACHER, config.onnx_file("fp32"))
    padded = PairEncoder.from_dir(STUDENT, max_length=max_length, buckets=())   # as the Python-backend tokenizer pads
    iso_requests = RequestPool(valid).distinct(config.RANK50, 12)
    batches = [padded.encode(r.query, list(r.texts)) for r in iso_requests]
    rows = {}
    for v in chosen:
        engine = engines[v.key]
        cross, within = cross_request(engine, batches), within_request(engine, padded, iso_requests)
        scores = sigmoid(logits_as_served(valid, lambda q, texts, e=engine: e.logits(encoder.encode(q, texts))))
        verdict = judge(valid, reference, scores, v.key, MAX_NDCG_DROP, "the full model's FP32")
        ties = sum(len(np.unique(scores[idx])) < len(idx) for _, idx in query_groups(valid))
        rows[v.key] = {
            "label": v.label, "p50_ms": p50[v.key], "x_naive": p50[v.key] / p50["naive"],
            "speed_vs_ort_int8": p50.get("ort-int8", float("nan")) / p50[v.key], "setup_s": setup_s[v.key],
            "cross_request_max_dp": cross["max_abs_diff"], "cross_reordered": cross["reordered"],
            "within_request_max_dp": within["max_abs_diff"], "within_reordered": within["reordered"],
            "isolated": max(cross["max_abs_diff"], within["max_abs_diff"]) <= ISOLATION_TOL,
            "ndcg": verdict["ndcg_candidate"], "ndcg_drop": verdict["ndcg_drop"], "gate": verdict["passed"],
            "tied_queries": int(ties), "queries": verdict["queries"]}
    report = {"start": started, "end_load": os.getloadavg(), "load_after_latency": during,
              "ort_amx_permission": ort_requests_amx(STUDENT_ONNX / "model.int8.onnx"),
              "requests": args.requests, "rounds": args.rounds,
              "naive_p50_ms": p50["naive"], "ndcg_reference": verdict["ndcg_reference"], "variants": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2, default=float))
    args.out.write_text(render(report))
    print(f"engine_choice: wrote {args.out}")
    return 0


def render(report: dict) -> str:
    rows = report["variants"]
    lines = [
        "# Engine choice for the 3-layer student (issue 17)", "",
        f"Run {report['start']['utc']}; `scripts/engine_choice.py`, {report['requests']} bench rank-50 requests x "
        f"{report['rounds']} rounds, all systems interleaved in one process (tokenizer + engine + sort, 2 threads); "
        f"OMP_WAIT_POLICY={report['start']['omp_wait_policy']}. Load average at start "
        f"{', '.join(f'{x:.2f}' for x in report['start']['load'])}, after the timing "
        f"{', '.join(f'{x:.2f}' for x in report['load_after_latency'])} (2 cores, shared).", "",
        f"Naive PyTorch FP32 (HF, 6 layers, the bench's denominator): p50 {report['naive_p50_ms']:.1f} ms. "
        f"ONNX Runtime may use AMX tiles in this process: {report['ort_amx_permission']} (MLAS asks for them "
        "for its INT8 GEMM).", "",
        "| variant | p50 ms | x naive | speed vs ORT INT8 | isolated | max dp merged / others changed "
        f"(reordered) | NDCG@10 (ref {report['ndcg_reference']:.4f}) | gate | queries with tied scores | set-up s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, r in rows.items():
        lines.append(
            f"| {r['label']} (`{key}`) | {r['p50_ms']:.1f} | {r['x_naive']:.3f} | {r['speed_vs_ort_int8']:.2f}x | "
            f"{'yes' if r['isolated'] else 'no'} | {r['cross_request_max_dp']:.1e} ({r['cross_reordered']}) / "
            f"{r['within_request_max_dp']:.1e} ({r['within_reordered']}) | {r['ndcg']:.4f} | "
            f"{'pass' if r['gate'] else 'refused'} | {r['tied_queries']}/{r['queries']} | {r['setup_s']} |")
    lines += ["", "Isolated: both probability changes <= 1e-5 on 12 rank-50 requests (as `make isolation`). Gate: "
              "NDCG@10 at most 0.005 below the full model's FP32 on its validation queries, scored as served. "
              "Set-up: load plus 5 warm-up requests (torch.compile compiles there).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
