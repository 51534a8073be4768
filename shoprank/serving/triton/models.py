"""The Python-backend models of the `rank` ensemble. Each model.py in model_repository/ only
re-exports one class from here, so the logic is shared, importable and tested in one place;
settings come from each model's config.pbtxt parameters.

Only importable inside Triton's Python stub (it provides triton_python_backend_utils).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from ... import config
from ...errors import RequestError
from ..request import check_top_k, decode_request
from .metrics import ModelMetrics


def _parameters(args) -> dict:
    model_config = json.loads(args["model_config"])
    return {k: v["string_value"] for k, v in model_config.get("parameters", {}).items()}


def _version_dir(args) -> Path:
    return Path(args["model_repository"]) / args["model_version"]


def _invalid(exc: Exception):
    code = getattr(pb_utils.TritonError, "INVALID_ARG", None)
    error = pb_utils.TritonError(str(exc), code) if code is not None else pb_utils.TritonError(str(exc))
    return pb_utils.InferenceResponse(error=error)


def _input(request, name: str) -> np.ndarray:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        raise RequestError(f"missing input {name}")
    return tensor.as_numpy()


class TokenizerModel:
    """QUERY, CANDIDATES (BYTES) -> engine inputs int32 [N, bucket length]."""

    def initialize(self, args):
        from ..tokenizer import PairEncoder

        self.metrics = ModelMetrics(args, errors=True, candidates=True)
        params = _parameters(args)
        self.max_candidates = int(params.get("max_candidates", config.MAX_CANDIDATES))
        # The Python-backend ranker cuts padding itself (OrtEngine's length chunks), so there
        # every request is padded to max_length: one shape, and the dynamic batcher can merge
        # any requests. Engines that run a batch as given (Triton's onnxruntime and TensorRT
        # backends) get the smallest length bucket instead.
        trims = params.get("ranker_target", "python") == "python"
        self.encoder = PairEncoder.from_dir(_version_dir(args), max_length=int(params["max_length"]),
                                            **({"buckets": ()} if trims else {}))
        self.encoder.encode("warm up", ["the first request should not pay for lazy set-up"])
        # With a scoring head: the pair features it reads, from the lexical index beside it.
        self.index = None
        if params.get("features"):
            from ...features.index import LexicalIndex
            from ...features.pairs import pair_features

            self.index = LexicalIndex.load(_version_dir(args) / params["features"])
            self.pair_features = pair_features
            self.index.speller.neighbours("warmup")  # builds the spelling lookup (about a second) now
            self.pair_features(self.index, "warm up", ["the first request should not pay for lazy set-up"])

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                query, texts = decode_request(_input(request, config.QUERY).reshape(-1),
                                              _input(request, config.CANDIDATES).reshape(-1),
                                              self.max_candidates)
            except RequestError as exc:
                self.metrics.error(exc)
                responses.append(_invalid(exc))
                continue
            self.metrics.candidates(len(texts))
            batch = self.encoder.encode(query, texts)
            outputs = [pb_utils.Tensor(name, batch[name]) for name in config.ENGINE_INPUTS]
            if self.index is not None:
                outputs.append(pb_utils.Tensor(config.FEATURES, self.pair_features(self.index, query, texts)))
            responses.append(pb_utils.InferenceResponse(outputs))
        return responses


class RankerModel:
    """ONNX Runtime engine. Runs ONE engine call over all requests the dynamic batcher hands
    to execute(): that is where batching across concurrent requests pays."""

    def initialize(self, args):
        from ..engine import OrtEngine

        self.metrics = ModelMetrics(args)
        params = _parameters(args)
        engine_file = _version_dir(args) / params.get("engine_file", "model.onnx")
        spinning = params.get("engine_spinning", str(int(config.ENGINE_SPINNING))) == "1"
        self.engine = OrtEngine(engine_file, threads=int(params.get("engine_threads", 0)), spinning=spinning)

    def execute(self, requests):
        batches = [{name: _input(r, name) for name in config.ENGINE_INPUTS} for r in requests]
        rows = [len(b[config.ENGINE_INPUTS[0]]) for b in batches]
        logits = self.engine.logits(_concat_padded(batches))
        responses, start = [], 0
        for count in rows:
            out = logits[start:start + count].reshape(count, 1)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor(config.ENGINE_OUTPUT, out)]))
            start += count
        return responses


def _concat_padded(batches: list[dict]) -> dict:
    """Stack requests row-wise, right-padding shorter sequences (masked, so logits unchanged)."""
    if len(batches) == 1:
        return batches[0]
    length = max(b[config.ENGINE_INPUTS[0]].shape[1] for b in batches)
    return {name: np.concatenate([np.pad(b[name], ((0, 0), (0, length - b[name].shape[1])))
                                  for b in batches]) for name in config.ENGINE_INPUTS}


class SorterModel:
    """LOGITS [N, 1], TOP_K (and FEATURES [N, F] with a scoring head) -> INDICES (best first),
    SCORES (click probability)."""

    def initialize(self, args):
        self.metrics = ModelMetrics(args, errors=True, scores=True)
        params = _parameters(args)
        self.head = None
        if params.get("head"):  # final logits from the cross-encoder's and the pair features
            from ..head import ScoringHead

            self.head = ScoringHead.load(_version_dir(args) / params["head"])

    def execute(self, requests):
        from ..sorter import rank_logits

        responses = []
        for request in requests:
            try:
                top_k = check_top_k(_input(request, config.TOP_K).reshape(-1))
            except RequestError as exc:
                self.metrics.error(exc)
                responses.append(_invalid(exc))
                continue
            logits = _input(request, config.RANKER_LOGITS)
            if self.head is not None:
                logits = self.head.logits(logits, _input(request, config.FEATURES))
            indices, scores = rank_logits(logits, top_k)
            self.metrics.logits(logits)
            responses.append(pb_utils.InferenceResponse(
                [pb_utils.Tensor(config.INDICES, indices), pb_utils.Tensor(config.SCORES, scores)]))
        return responses
