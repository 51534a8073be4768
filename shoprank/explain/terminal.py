"""Words shaded by attribution in a terminal (24-bit ANSI background colours)."""
from __future__ import annotations

from .explanation import Explained, by_position
from .shading import blend, scale

RESET = "\x1b[0m"


def shade(word: str, value: float, top: float, colour: bool = True) -> str:
    if not colour:
        return f"{word}({value:+.2f})"
    r, g, b = blend(value, top)
    return f"\x1b[48;2;{r};{g};{b}m\x1b[38;2;0;0;0m{word}{RESET}"


def render(query: str, explained: list[Explained], colour: bool = True) -> str:
    """One block per candidate in served order: position, score, the query's and the product's
    words shaded, and the three words that mattered most."""
    top = scale([v for e in explained for v in (e.attribution.query_scores, e.attribution.text_scores)])
    lines = [f"query: {query}   (green raised the score, red lowered it; log-odds)"]
    for e in by_position(explained):
        a = e.attribution
        lines.append(f"{e.position:>2}. score {e.score:.3f}  [candidate {e.index}]")
        for label, words, scores in (("query:  ", a.query_words, a.query_scores),
                                     ("product:", a.text_words, a.text_scores)):
            lines.append(f"    {label} " + " ".join(shade(w, v, top, colour) for w, v in zip(words, scores)))
        lines.append("    top words: " + ", ".join(f"{w} ({v:+.2f})" for _, w, v in a.top_words(3)))
    return "\n".join(lines)
