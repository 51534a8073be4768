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
from ..personal import personal_logits
from ..request import check_top_k, decode_ids, decode_request
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


def _optional(request, name: str) -> np.ndarray | None:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy().reshape(-1)


def _input(request, name: str) -> np.ndarray:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        raise RequestError(f"missing input {name}")
    return tensor.as_numpy()


class TokenizerModel:
    """QUERY, CANDIDATES (BYTES) -> engine inputs int32 [N, bucket length]."""

    def initialize(self, args):
        from ..tokenizer import PairEncoder

        params = _parameters(args)
        self.metrics = ModelMetrics(args, errors=True, candidates=True, profiles=bool(params.get("profile_store")))
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
        from ..catalog import Catalog

        self.catalog = Catalog(params["catalog"]) if params.get("catalog") else None
        # With a personal head: USER_ID / USER_CONTEXT -> BEHAVIOUR (serving.personal).
        self.shopper = None
        if params.get("profile_store"):
            from ..personal import ShopperStep

            self.shopper = ShopperStep(params["profile_store"], params["pseudonym_key"])

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                query, texts, attributes = self._decode(request)
                behaviour = self._behaviour(request, texts) if self.shopper is not None else None
            except RequestError as exc:
                self.metrics.error(exc)
                responses.append(_invalid(exc))
                continue
            self.metrics.candidates(len(texts))
            batch = self.encoder.encode(query, texts)
            outputs = [pb_utils.Tensor(name, batch[name]) for name in config.ENGINE_INPUTS]
            if self.index is not None:
                outputs.append(pb_utils.Tensor(config.FEATURES, self.pair_features(self.index, query, texts)))
            if attributes is not None:
                outputs.append(pb_utils.Tensor(config.ATTRIBUTES, attributes))
            if behaviour is not None:  # only for a shopper with behaviour: a cold start sends none
                outputs.append(pb_utils.Tensor(config.BEHAVIOUR, behaviour))
            responses.append(pb_utils.InferenceResponse(outputs))
        return responses

    def _behaviour(self, request, texts) -> np.ndarray | None:
        behaviour, source = self.shopper.behaviour(_optional(request, config.USER_ID),
                                                   _optional(request, config.USER_CONTEXT), texts)
        self.metrics.profile(source)
        return behaviour if behaviour is not None and behaviour.any() else None

    def _decode(self, request) -> tuple[str, list[str], np.ndarray | None]:
        """(query, texts, catalog attributes or None): texts as sent, or resolved from ids."""
        query, texts = _input(request, config.QUERY).reshape(-1), _optional(request, config.CANDIDATES)
        ids = _optional(request, config.CANDIDATE_IDS)
        if ids is None:
            query, texts = decode_request(query, [] if texts is None else texts, self.max_candidates)
            return query, texts, None
        query, sent = (decode_request(query, texts, self.max_candidates) if texts is not None
                       else (decode_request(query, ["-"])[0], None))
        ids = decode_ids(ids, sent, self.max_candidates)
        if self.catalog is None:
            raise RequestError(f"this server has no product catalog: send {config.CANDIDATES} instead of "
                               f"{config.CANDIDATE_IDS}")
        resolved, attributes = self.catalog.lookup(ids)
        return query, sent if sent is not None else resolved, attributes


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
    SCORES (click probability); with RULES or default rules also FINAL_SCORES, TRACE, RANDOMIZED
    (shoprank.serving.rules), reading the catalog's ATTRIBUTES (ids as codes)."""

    def initialize(self, args):
        self.metrics = ModelMetrics(args, errors=True, scores=True)
        params = _parameters(args)
        from ..rules import parse_json, parse_rules, prepare

        prepare()
        # Default rules (config parameter) apply to every request; none: today's path exactly.
        self.rules_defaults = parse_json(params.get("rules_defaults") or "{}", "rules_defaults")
        parse_rules({}, self.rules_defaults)  # a bad default fails loading, not every request
        self.head = None
        if params.get("head"):  # final logits from the cross-encoder's and the pair features
            from ..head import ScoringHead

            self.head = ScoringHead.load(_version_dir(args) / params["head"])
        self.personal = None
        if params.get("personal"):  # the shopper's behaviour on top (serving.personal)
            from ..head import ScoringHead

            self.personal = ScoringHead.load(_version_dir(args) / params["personal"])

    def execute(self, requests):
        from ..sorter import ranked

        responses = []
        for request in requests:
            try:
                top_k = check_top_k(_input(request, config.TOP_K).reshape(-1))
                rules = _optional(request, config.RULES)
                logits = _input(request, config.RANKER_LOGITS)
                if self.head is not None:
                    logits = self.head.logits(logits, _input(request, config.FEATURES))
                if self.personal is not None:
                    behaviour = pb_utils.get_input_tensor_by_name(request, config.BEHAVIOUR)
                    if behaviour is not None:
                        logits = personal_logits(self.personal, logits.reshape(-1), behaviour.as_numpy())
                if rules is None and not self.rules_defaults:  # today's path, untouched
                    indices, scores, probabilities = ranked(logits, top_k)
                    outputs = [pb_utils.Tensor(config.INDICES, indices), pb_utils.Tensor(config.SCORES, scores)]
                    self.metrics.probabilities(probabilities)
                else:
                    outputs = self._with_rules(request, logits, top_k, None if rules is None else rules[0])
            except RequestError as exc:
                self.metrics.error(exc)
                responses.append(_invalid(exc))
                continue
            responses.append(pb_utils.InferenceResponse(outputs))
        return responses

    def _with_rules(self, request, logits: np.ndarray, top_k: int, rules_json) -> list:
        from ..rules import apply_rules, parse_json, parse_rules, trace_json

        rules = parse_rules(parse_json(None if rules_json is None else bytes(rules_json)), self.rules_defaults)
        # Rules match ids by their codes in ATTRIBUTES: the id strings never reach the sorter (a
        # BYTES input is unpacked in Python by the stub, 1,000 ids cost more than the rules).
        attributes = pb_utils.get_input_tensor_by_name(request, config.ATTRIBUTES)
        page = apply_rules(logits, top_k, rules, None if attributes is None else attributes.as_numpy())
        self.metrics.probabilities(page.probabilities)  # the rules computed every candidate's already
        outputs = [pb_utils.Tensor(config.INDICES, page.indices), pb_utils.Tensor(config.SCORES, page.relevance),
                   pb_utils.Tensor(config.FINAL_SCORES, page.final)]
        if page.trace is not None:
            outputs.append(pb_utils.Tensor(config.TRACE, np.array([trace_json(page.trace)], dtype=np.object_)))
        if rules.explore is not None:
            outputs.append(pb_utils.Tensor(config.RANDOMIZED, np.array([page.randomized], dtype=bool)))
        return outputs
