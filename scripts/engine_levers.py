#!/usr/bin/env python3
"""The engine's speed levers, each switched off in turn, side by side in one process.

OrtEngine (shoprank.serving.engine) runs a call's length chunks side by side on one worker per
core, each chunk on a single-threaded ONNX Runtime session with SkipLayerNormalization fusion
off; the calibrated INT8 build puts each bias inside MatMulIntegerToFloat. This script times, on
the bench's rank-50 requests (shoprank.data.requests.RequestPool, same seed), the engine as
served next to variants that undo one lever each, and the engine as it was before all three:

    served          OrtEngine, as Triton runs it
    threads         each chunk on every core (ONNX Runtime's intra-op threads), one after another
    skip-fusion     SkipLayerNormalization fusion on
    bias-add        each bias in an Add after its GEMM again (calibrated graphs only)
    before          all three undone

Variants run interleaved request by request, the order rotated, so that load from other work on
the shared machine hits all alike; every variant's logits are compared with the served engine's
(0 for the threads variant: the same chunks). Prints p50 and the ratio to `served`.

    .venv/bin/python scripts/engine_levers.py [--engine artifacts/onnx-l3/model.int8.onnx]
        [--model artifacts/model-l3] [--requests 40] [--rounds 3]

About 2 minutes; results and their reading: docs/benchmark.md, "The engine's chunks side by side".
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from shoprank import config
from shoprank.data.requests import RequestPool
from shoprank.model_card import model_max_length
from shoprank.serving.engine import OrtEngine, length_chunks, row_lengths, session_options
from shoprank.serving.tokenizer import PairEncoder


class ThreadedEngine:
    """The engine before: every chunk on all cores (intra-op threads), chunks one after another."""

    def __init__(self, path: Path, fused: bool):
        import onnxruntime as ort

        disabled = [] if fused else list(config.ENGINE_DISABLED_OPTIMIZERS)
        self.session = ort.InferenceSession(str(path), session_options(0), providers=["CPUExecutionProvider"],
                                            disabled_optimizers=disabled)

    def logits(self, batch: dict) -> np.ndarray:
        feeds = {n: np.asarray(batch[n], dtype=config.ID_DTYPE) for n in config.ENGINE_INPUTS}
        lengths = row_lengths(feeds[config.ENGINE_INPUTS[1]])
        out = np.empty(len(lengths), np.float32)
        for idx in length_chunks(lengths, config.ENGINE_CHUNK_TOKENS):
            width = int(lengths[idx[-1]])
            chunk = {k: np.ascontiguousarray(v[idx, :width]) for k, v in feeds.items()}
            out[idx] = self.session.run([config.ENGINE_OUTPUT], chunk)[0].reshape(-1)
        return out


def bias_outside(path: Path, out: Path) -> bool:
    """Write `path` with each MatMulIntegerToFloat's bias moved back to an Add after it; False
    when the graph has no such bias (not a calibrated graph)."""
    import onnx
    from onnx import helper

    model = onnx.load(str(path))
    nodes, moved = [], 0
    for node in model.graph.node:
        inputs = list(node.input)
        if node.op_type == "MatMulIntegerToFloat" and len(inputs) > 6 and inputs[6]:
            bias, result = inputs[6], node.output[0]
            del node.input[6:]
            node.output[0] = f"{result}/before_bias"
            nodes += [node, helper.make_node("Add", [node.output[0], bias], [result], f"{node.name}/bias")]
            moved += 1
        else:
            nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.save(model, str(out))
    return moved > 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", type=Path, default=config.ARTIFACTS_DIR / "onnx-l3" / "model.int8.onnx")
    parser.add_argument("--model", type=Path, default=config.ARTIFACTS_DIR / "model-l3",
                        help="the engine's model folder (its tokenizer)")
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    if not args.engine.exists() or not (args.model / "config.json").exists():
        print(f"engine_levers: {args.engine} or {args.model} not found (make distill)", file=sys.stderr)
        return 2
    if args.requests < 1 or args.rounds < 1:
        print("engine_levers: --requests and --rounds must be >= 1", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="engine_levers_"))
    unfolded = work / "bias_add.onnx"
    has_bias = bias_outside(args.engine, unfolded)
    engines = {"served": OrtEngine(args.engine), "threads": ThreadedEngine(args.engine, fused=False),
               "skip-fusion": OrtEngine(args.engine, disabled_optimizers=())}
    if has_bias:
        engines["bias-add"] = OrtEngine(unfolded)
    engines["before"] = ThreadedEngine(unfolded if has_bias else args.engine, fused=True)

    encoder = PairEncoder.from_dir(args.model, max_length=model_max_length(args.model))
    pool = RequestPool.from_spec("auto")
    batches = [encoder.encode(r.query, list(r.texts)) for r in pool.distinct(config.RANK50, args.requests)]
    reference = np.concatenate([engines["served"].logits(b) for b in batches[:5]])
    for key, engine in engines.items():
        diff = np.abs(np.concatenate([engine.logits(b) for b in batches[:5]]) - reference).max()
        print(f"{key:12s} max |logit - served| {diff:.2g}")
    times = {k: [] for k in engines}
    keys = list(engines)
    for _ in range(args.rounds):
        for i, batch in enumerate(batches):
            for key in keys[i % len(keys):] + keys[:i % len(keys)]:
                began = time.perf_counter()
                engines[key].logits(batch)
                times[key].append(time.perf_counter() - began)
    served = statistics.median(times["served"])
    print(f"\n{args.requests} rank-50 requests x {args.rounds} rounds, interleaved; p50 and x served:")
    for key, t in times.items():
        print(f"  {key:12s} {statistics.median(t) * 1e3:7.2f} ms  {statistics.median(t) / served:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
