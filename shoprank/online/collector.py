"""A small HTTP collector for feedback from clients in other languages (`shoprank feedback serve`):
it puts what it receives into a FeedbackStore, with the store's guarantees."""
from __future__ import annotations

import json

from .. import config
from ..serving.client import Shown
from .feedback import FeedbackStore

COLLECTOR_PORT = 8010


def make_collector(store: FeedbackStore, host: str = config.HOST, port: int = COLLECTOR_PORT):
    """ThreadingHTTPServer accepting JSON:
        POST /v1/impressions {"request_id", "query", "shown": [{"candidate_index", "text", "score"}],
                              "user_id"?, "model_version"?, "randomized"?}
        POST /v1/events      {"request_id", "position", "kind"}
    202 when queued, 400 with a message for a bad body, 503 when the record was dropped."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def _reply(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                if self.path == "/v1/impressions":
                    shown = [Shown(int(s["candidate_index"]), str(s["text"]), s.get("score")) for s in body["shown"]]
                    ok = store.record_impression(body["request_id"], body["query"], shown,
                                                 user_id=body.get("user_id"),
                                                 model_version=body.get("model_version"),
                                                 randomized=bool(body.get("randomized", False)))
                elif self.path == "/v1/events":
                    ok = store.record_event(body["request_id"], body["position"], body.get("kind", "click"))
                else:
                    return self._reply(404, {"error": f"unknown path {self.path}; use /v1/impressions or /v1/events"})
            except (KeyError, TypeError, ValueError) as exc:
                return self._reply(400, {"error": f"bad request body: {type(exc).__name__}: {exc}"})
            self._reply(202 if ok else 503, {"queued": ok})

        def do_GET(self):
            if self.path == "/v1/stats":
                return self._reply(200, store.stats())
            self._reply(404, {"error": "GET /v1/stats only"})

        def log_message(self, *args):  # one line per request would flood the console
            pass

    return ThreadingHTTPServer((host, port), Handler)
