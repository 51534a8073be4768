"""Ask a running server's `explain` model over gRPC or HTTP (KServe v2).

    with ExplainClient("127.0.0.1:8001", "grpc") as client:
        for e in client.explain("cordless drill", ["DEWALT 20V drill", "white paint"]):
            print(e.position, e.score, e.attribution.top_words(3))
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .. import config
from ..errors import RankError
from ..serving.client import PROTOCOLS, connect, default_url
from .explanation import Explained


class ExplainClient:
    def __init__(self, url: str | None = None, protocol: str = "grpc", timeout_s: float = 60.0,
                 model: str = config.EXPLAIN_MODEL):
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
        self.protocol, self.model, self.timeout_s = protocol, model, timeout_s
        self.url = url or default_url(protocol)
        self._api, self._client = connect(self.url, protocol, timeout_s)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        self._client.close()

    def explain(self, query: str, candidates: Sequence[str]) -> list[Explained]:
        """One Explained per candidate, in the candidates' order (RankError when the server refuses)."""
        api = self._api
        inputs = [api.InferInput(config.QUERY, [1], "BYTES"),
                  api.InferInput(config.CANDIDATES, [len(candidates)], "BYTES")]
        inputs[0].set_data_from_numpy(np.array([query.encode("utf-8")], dtype=np.object_))
        inputs[1].set_data_from_numpy(np.array([c.encode("utf-8") for c in candidates], dtype=np.object_))
        kwargs = {"client_timeout": self.timeout_s} if self.protocol == "grpc" else {}
        try:
            result = self._client.infer(self.model, inputs, outputs=[api.InferRequestedOutput(config.EXPLANATIONS)],
                                        **kwargs)
        except Exception as exc:  # tritonclient raises InferenceServerException
            message = exc.message() if hasattr(exc, "message") and callable(exc.message) else str(exc)
            status = exc.status() if hasattr(exc, "status") and callable(exc.status) else None
            raise RankError(message, None if status is None else str(status)) from None
        return [Explained.from_json(d) for d in result.as_numpy(config.EXPLANATIONS).reshape(-1)]
