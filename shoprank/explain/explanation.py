"""One explained candidate as the `explain` model returns it (a JSON document per candidate) and
as the command line, the page and the report read it.

trace: where the candidate ended up and why. Today the sorter orders by score alone, so the trace
holds the final position and score; `score_before_rules` and `rules` stay null until the sorter
reports them (a rules step is being added to it): the explain model copies every sorter output
named in its config's `trace_outputs` parameter into the trace, under the output's name.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from .words import PairAttribution


def empty_trace(position: int, score: float) -> dict:
    return {"final_position": position, "final_score": score, "score_before_rules": None, "rules": None}


@dataclass
class Explained:
    index: int                  # position in the request's CANDIDATES
    position: int               # 1-based place in the served order
    score: float                # click probability the sorter returned
    attribution: PairAttribution
    trace: dict = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"index": self.index, "position": self.position, "score": self.score,
                           **self.attribution.to_dict(), "trace": self.trace})

    @classmethod
    def from_json(cls, text: str | bytes) -> Explained:
        data = json.loads(text)
        return cls(int(data["index"]), int(data["position"]), float(data["score"]),
                   PairAttribution.from_dict(data), dict(data.get("trace") or {}))


def by_position(explained: list[Explained]) -> list[Explained]:
    return sorted(explained, key=lambda e: e.position)
