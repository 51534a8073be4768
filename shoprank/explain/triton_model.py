"""The `explain` model (Triton Python backend): QUERY, CANDIDATES (at most
config.EXPLAIN_MAX_CANDIDATES) -> EXPLANATIONS, one JSON document per candidate.

It scores nothing itself: every variant goes through the served tokenizer -> ranker -> sorter
models by BLS, so it explains whatever engine the ranker runs (ONNX Runtime, TensorRT) and the
scoring head when installed. The `rank` ensemble never calls it: explanations cost nothing
until asked for. Settings come from its config.pbtxt (generated, templates/explain.pbtxt).

Only importable inside Triton's Python stub (it provides triton_python_backend_utils).
"""
from __future__ import annotations

import asyncio

import numpy as np
import triton_python_backend_utils as pb_utils

from .. import config
from ..errors import RequestError
from ..serving.request import decode_request
from ..serving.triton.models import _input, _invalid, _parameters
from .occlusion import occlusion_groups
from .served import chunks, explanations, group_logits

# Step requests one explanation keeps in flight: enough to keep the ranker's instances busy, well
# inside the tokenizer's and ranker's bounded queues (config.TOKENIZER_MAX_QUEUE, RANKER_MAX_QUEUE).
IN_FLIGHT = 3


class StepFailed(RuntimeError):
    """A served step refused or failed a BLS request (overloaded, unloaded): passed on as is."""


class ExplainModel:
    def initialize(self, args):
        params = _parameters(args)
        self.tokenizer, self.ranker, self.sorter = (params[k] for k in ("tokenizer_model", "ranker_model",
                                                                        "sorter_model"))
        self.max_candidates = int(params.get("max_candidates", config.EXPLAIN_MAX_CANDIDATES))
        self.features = params.get("features") == "1"  # the tokenizer computes FEATURES for a scoring head
        self.trace_outputs = [n for n in params.get("trace_outputs", "").split(",") if n]
        # RULES sent with the served request's own sorter call so the sorter reports its trace
        # (its default rules still apply; shoprank.serving.rules); empty: none sent.
        self.trace_rules = params.get("trace_rules", "")

    async def _call(self, model: str, inputs: dict, outputs: list[str], optional: tuple = ()) -> dict:
        request = pb_utils.InferenceRequest(model_name=model, requested_output_names=outputs + list(optional),
                                            inputs=[pb_utils.Tensor(k, v) for k, v in inputs.items()])
        response = await request.async_exec()
        if response.has_error():
            raise StepFailed(f"{model}: {response.error().message()}")
        got = {}
        for name in outputs + list(optional):
            tensor = pb_utils.get_output_tensor_by_name(response, name)
            if tensor is None and name in outputs:
                raise StepFailed(f"{model} returned no {name}")
            got[name] = None if tensor is None else tensor.as_numpy()
        return got

    async def run_steps(self, query: str, texts, traced: bool = False) -> dict:
        """One rank request's steps, every candidate kept (TOP_K 0): the sorter's outputs."""
        wanted = list(config.ENGINE_INPUTS) + ([config.FEATURES] if self.features else [])
        encoded = await self._call(self.tokenizer, {
            config.QUERY: np.array([query.encode("utf-8")], dtype=np.object_),
            config.CANDIDATES: np.array([t.encode("utf-8") for t in texts], dtype=np.object_)}, wanted)
        logits = await self._call(self.ranker, {n: encoded[n] for n in config.ENGINE_INPUTS}, [config.ENGINE_OUTPUT])
        sorter_inputs = {config.RANKER_LOGITS: logits[config.ENGINE_OUTPUT].reshape(-1, 1).astype(np.float32),
                         config.TOP_K: np.array([0], dtype=np.int32)}
        if self.features:
            sorter_inputs[config.FEATURES] = encoded[config.FEATURES]
        if traced and self.trace_rules:
            sorter_inputs[config.RULES] = np.array([self.trace_rules.encode("utf-8")], dtype=np.object_)
        return await self._call(self.sorter, sorter_inputs, [config.INDICES, config.SCORES],
                          tuple(self.trace_outputs) if traced else ())

    async def explain(self, query: str, texts: list[str]) -> list[str]:
        """Every rank request occlusion needs, sent at once: the ranker's dynamic batcher and its
        instances work on them together while the tokenizer and sorter handle the next."""
        groups = occlusion_groups(query, texts)
        limit = asyncio.Semaphore(IN_FLIGHT)

        async def bounded(q, ts, traced=False):
            async with limit:
                return await self.run_steps(q, ts, traced)

        calls = [bounded(query, texts, True)] + [bounded(q, c) for q, ts in groups for c in chunks(ts)]
        served, *outputs = await asyncio.gather(*calls)
        logits, start = [], 0
        for _, ts in groups:
            count = len(chunks(ts))
            logits.append(group_logits(outputs[start:start + count], ts))
            start += count
        return explanations(query, texts, served, logits, self.trace_outputs)

    async def execute(self, requests):
        responses = []
        for request in requests:
            try:
                query, texts = decode_request(_input(request, config.QUERY).reshape(-1),
                                              _input(request, config.CANDIDATES).reshape(-1), self.max_candidates)
                documents = await self.explain(query, texts)
            except RequestError as exc:
                responses.append(_invalid(exc))
                continue
            except StepFailed as exc:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc))))
                continue
            out = np.array([d.encode("utf-8") for d in documents], dtype=np.object_)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor(config.EXPLANATIONS, out)]))
        return responses
