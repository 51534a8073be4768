"""Ask a running server's `explain` model over gRPC or HTTP (KServe v2).

    with ExplainClient("127.0.0.1:8001", "grpc") as client:
        for e in client.explain("cordless drill", ["DEWALT 20V drill", "white paint"]):
            print(e.position, e.score, e.attribution.top_words(3))
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .. import config
from ..serving.client import TritonClient, infer_inputs
from .explanation import Explained


class ExplainClient(TritonClient):
    def __init__(self, url: str | None = None, protocol: str = "grpc", timeout_s: float = 60.0,
                 model: str = config.EXPLAIN_MODEL):
        super().__init__(url, protocol, timeout_s, model)

    def explain(self, query: str, candidates: Sequence[str]) -> list[Explained]:
        """One Explained per candidate, in the candidates' order (RankError when the server refuses)."""
        api = self._api
        inputs = infer_inputs(api, [
            (config.QUERY, np.array([query.encode("utf-8")], dtype=np.object_), "BYTES"),
            (config.CANDIDATES, np.array([c.encode("utf-8") for c in candidates], dtype=np.object_), "BYTES")])
        result = self._infer(inputs, [api.InferRequestedOutput(config.EXPLANATIONS)])
        return [Explained.from_json(d) for d in result.as_numpy(config.EXPLANATIONS).reshape(-1)]
