"""The explanation page: one self-contained HTML file, every word shaded by its attribution."""
from __future__ import annotations

from html import escape

from .explanation import Explained, by_position
from .shading import colour, scale, strength

LEGEND = {"occlusion": "change in log-odds when the word is removed",
          "integrated_gradients": "integrated gradients, log-odds"}
STYLE = """
body { font-family: sans-serif; margin: 2em; color: #111; background: #fff; }
.item { border: 1px solid #ddd; border-radius: 6px; padding: 0.8em 1em; margin: 0.8em 0; }
.meta { color: #555; font-size: 0.9em; }
.w { padding: 0.1em 0.25em; border-radius: 3px; margin-right: 0.15em; line-height: 2em; }
.row { margin: 0.2em 0; font-size: 1.2em; }
.label { display: inline-block; width: 5em; color: #555; font-size: 0.8em; }
"""


def _word(word: str, value: float, top: float) -> str:
    r, g, b = colour(value)
    return (f'<span class="w" title="{value:+.3f}" data-attribution="{value:.4f}" '
            f'style="background: rgba({r},{g},{b},{strength(value, top):.3f})">{escape(word)}</span>')


def _trace(trace: dict) -> str:
    rules = trace.get("rules")
    before = trace.get("score_before_rules")
    if rules is None and before is None:
        return ""
    before = f"{before:.3f}" if isinstance(before, (int, float)) else escape(str(before))
    moved = ", ".join(map(str, rules)) if isinstance(rules, list) else str(rules)
    place = trace.get("position_before_rules", "?")
    return f" · before rules {before} (#{place}) · moved by: {escape(moved or 'none')}"


def render(query: str, explained: list[Explained], title: str = "Why this order?") -> str:
    top = scale([v for e in explained for v in (e.attribution.query_scores, e.attribution.text_scores)])
    method = explained[0].attribution.method if explained else ""
    items = []
    for e in by_position(explained):
        a = e.attribution
        words = ", ".join(f"{escape(w)} ({v:+.2f})" for _, w, v in a.top_words(3))
        items.append(
            f'<div class="item"><div class="meta">#{e.position} · click probability {e.score:.3f} · '
            f'candidate {e.index}{_trace(e.trace)}</div>'
            f'<div class="row"><span class="label">product</span>'
            + "".join(_word(w, v, top) for w, v in zip(a.text_words, a.text_scores)) + "</div>"
            '<div class="row"><span class="label">query</span>'
            + "".join(_word(w, v, top) for w, v in zip(a.query_words, a.query_scores)) + "</div>"
            f'<div class="meta">mattered most: {words}</div></div>')
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{escape(title)}</h1>"
            f"<p>query: <b>{escape(query)}</b> · method: {escape(method)}"
            f" · green raised the score, red lowered it ({LEGEND.get(method, 'log-odds')})</p>"
            + "\n".join(items) + "</body></html>\n")
