"""What the `explain` model computes, apart from Triton: occlusion over a scorer that runs one
rank request's steps, the served order and the trace, one JSON document per candidate.

The Triton glue (shoprank.explain.triton_model) supplies `run_steps(query, texts)`, which calls
the served tokenizer -> ranker -> sorter (BLS) and returns the sorter's outputs; so the scores
attributed are the sorter's SCORES: the cross-encoder's, through the scoring head when one is
installed, before any business rules (the sorter's FINAL_SCORES, with rules, are what ordered
the page and go into the trace).
"""
from __future__ import annotations

import json
from collections.abc import Callable, Sequence

import numpy as np

from .. import config
from .explanation import Explained, empty_trace
from .occlusion import attributions, occlusion_groups

# (query, texts, traced) -> the sorter's outputs by name (INDICES order); traced: the served
# request itself, whose trace the sorter should report (variants need scores only).
RunSteps = Callable[[str, Sequence[str], bool], dict]


def probability_logit(p: np.ndarray) -> np.ndarray:
    """Log-odds of click probabilities (the sorter returns probabilities; attributions are in logits)."""
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-12, 1 - 1e-7)
    return np.log(p) - np.log1p(-p)


def unsorted_scores(outputs: dict, count: int, name: str = config.SCORES) -> np.ndarray:
    """A per-candidate output back in CANDIDATES order (the sorter returns it best first)."""
    scores = np.full(count, np.nan)
    scores[np.asarray(outputs[config.INDICES]).reshape(-1)] = np.asarray(outputs[name], dtype=np.float64).reshape(-1)
    return scores


def chunks(texts: Sequence[str], max_rows: int = config.MAX_CANDIDATES) -> list[list[str]]:
    """A group's texts cut to what one rank request may hold."""
    return [list(texts[i:i + max_rows]) for i in range(0, len(texts), max_rows)] or [[]]


def group_logits(outputs: Sequence[dict], texts: Sequence[str]) -> np.ndarray:
    """Logits of a group's texts from the sorter outputs of its chunks."""
    return np.concatenate([probability_logit(unsorted_scores(o, len(c))) for o, c in zip(outputs, chunks(texts))])


def _decode(value):
    value = value.decode("utf-8") if isinstance(value, bytes) else value
    try:
        return json.loads(value) if isinstance(value, str) else value
    except ValueError:
        return value


def _rules_item(trace: dict, item: dict) -> None:
    """The sorter's rule trace of one returned item (shoprank.serving.rules) into our trace."""
    moved = item.get("moved_by", item.get("rules"))
    trace["rules"] = [r for r in moved.split("+") if r] if isinstance(moved, str) else moved
    if "relevance" in item:
        trace["score_before_rules"] = float(item["relevance"])
    if "final" in item:
        trace["final_score"] = float(item["final"])
    if "randomized" in item:  # the page was shuffled for exploration: its order is not the scores'
        trace["randomized"] = bool(item["randomized"])
    if isinstance(item.get("relevance_position"), (int, np.integer)):
        trace["position_before_rules"] = int(item["relevance_position"]) + 1


def _per_item(items, count: int) -> list | None:
    """A per-item list from a list of `count` values or a dict of `count`-long columns; None otherwise."""
    if isinstance(items, (list, np.ndarray)) and len(items) == count:
        return list(items)
    if isinstance(items, dict):
        columns = {k: v for k, v in items.items() if isinstance(v, list) and len(v) == count}
        if columns:
            scalars = {k: v for k, v in items.items() if k not in columns}
            return [{**scalars, **{k: v[i] for k, v in columns.items()}} for i in range(count)]
    return None


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return _decode(value)


def trace_of(outputs: dict, trace_outputs: Sequence[str], count: int) -> list[dict]:
    """Per candidate: final position and score, and every trace output the sorter returned.
    Per-item outputs (one value per returned candidate, best first, or one JSON document holding
    such a list or such columns) are given to their candidate; anything else to every candidate.
    The sorter's rules trace is read into score_before_rules, rules (what moved the item) and
    position_before_rules."""
    indices = np.asarray(outputs[config.INDICES]).reshape(-1)
    scores = unsorted_scores(outputs, count)
    traces = [empty_trace(0, float(s)) for s in scores]
    for place, index in enumerate(indices, 1):
        traces[int(index)]["final_position"] = place
    for name in trace_outputs:
        value = outputs.get(name)
        if value is None:
            continue
        value = np.asarray(value).reshape(-1)
        items = _decode(value[0]) if len(value) == 1 and value.dtype == object else value
        per_item = _per_item(items, len(indices))
        for place, index in enumerate(indices):
            item = _plain(per_item[place] if per_item is not None else items)
            target = traces[int(index)]
            if name == config.TRACE and isinstance(item, dict):
                _rules_item(target, item)
            elif name == config.FINAL_SCORES:  # rules ran: SCORES is the score they started from
                target.update(final_score=float(item), score_before_rules=float(scores[int(index)]))
            else:
                target[name] = item
    return traces


def explanations(query: str, texts: Sequence[str], served: dict, logits: Sequence[np.ndarray],
                 trace_outputs: Sequence[str] = ()) -> list[str]:
    """The EXPLANATIONS of one request, a JSON document per candidate in CANDIDATES order, from the
    sorter's outputs for the request itself (traced) and the logits of occlusion_groups()."""
    texts = list(texts)
    traces = trace_of(served, trace_outputs, len(texts))
    scores = unsorted_scores(served, len(texts))
    return [Explained(i, trace["final_position"], float(scores[i]), attribution, trace).to_json()
            for i, (attribution, trace) in enumerate(zip(attributions(query, texts, logits), traces))]


def explain_request(query: str, texts: Sequence[str], run_steps: RunSteps,
                    trace_outputs: Sequence[str] = ()) -> list[str]:
    """explanations() with every step run one after another (the Triton model runs them at once)."""
    logits = [group_logits([run_steps(q, c, False) for c in chunks(ts)], ts)
              for q, ts in occlusion_groups(query, texts)]
    return explanations(query, texts, run_steps(query, list(texts), True), logits, trace_outputs)
