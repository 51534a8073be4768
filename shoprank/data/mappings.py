"""How each source's columns and labels become the judgments frame (see shoprank.data.load).

Ready mappings (MAPPINGS), chosen by name or detected from the columns ("auto"):

    homedepot  Home Depot Product Search Relevance (config.SHARED_DATA): search_term,
               product_title, relevance 1..3 (mean of human ratings).
               gain = relevance - 1 in [0, 2], label = (relevance - 1) / 2,
               relevant when relevance >= 2.5 (gain >= 1.5).
    esci       Amazon Shopping Queries (ESCI): query, product_title, esci_label.
               E(xact) / S(ubstitute) / C(omplement) / I(rrelevant) -> gain 3 / 2 / 1 / 0,
               label = gain / 3, relevant when E.
    wands      Wayfair WANDS: query, product_name, label.
               Exact / Partial / Irrelevant -> gain 2 / 1 / 0, label = gain / 2, relevant when Exact.
    clicks     click logs, the project's synthetic default data among them: query, text, click.
               gain = label = click (0/1), relevant when clicked.

Any other columns: a COLUMNS spec (`make ... COLUMNS=...`, `--columns`, or `--mapping` itself),
one string of comma-separated key:value parts, parsed by parse_columns:

    query:COL                 the query column (required)
    text:COL[+COL...]         the product text column(s), several joined with " " (required)
    label:COL                 the judgment column (required)
    kind:binary               0/1 (also true/false); gain = label. The default kind.
    kind:graded:LOW:HIGH      numbers in [LOW, HIGH]; gain = value - LOW, max gain HIGH - LOW
    kind:classes:A<B<C        named grades, worst first (any case); gain = position (A = 0)
    relevant:VALUE            the lowest label value that counts as relevant (MRR, P@5, AUC).
                              Default: binary 1; graded LOW + 0.75 (HIGH - LOW), the upper
                              quarter (1..3 -> 2.5, as homedepot; 1..5 -> 4); classes the top one.

    e.g. query:search_query,text:item_name,label:clicked
         query:q,text:title+brand,label:stars,kind:graded:1:5,relevant:4
         query:q,text:name,label:grade,kind:classes:Irrelevant<Partial<Exact

The training target is gain / max gain, as for the ready mappings. Column names cannot contain
"," or "+", class names not "," or "<". A custom Mapping's name is its spec written out in full
(canonical), so load_pairs(path, df.attrs["mapping"]) and the model card's "mapping" reload the
same rows the same way. Every mistake in a spec raises errors.DataError naming the bad part.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import DataError


@dataclass(frozen=True)
class Mapping:
    """How one source's columns and labels become query/text/label/gain/relevant."""

    name: str
    query: str
    text: str | tuple[str, ...]  # several columns are joined with " " (e.g. title + brand)
    label: str
    gain: Callable[[object], float]  # raw label value -> gain in [0, max_gain]
    max_gain: float
    relevant_gain: float  # a row is relevant when gain >= this
    doc: str = ""

    @property
    def text_columns(self) -> tuple[str, ...]:
        return (self.text,) if isinstance(self.text, str) else tuple(self.text)

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.query, *self.text_columns, self.label)


def _grade_table(table: dict[str, float]) -> Callable[[object], float]:
    """A gain function for named grades; accepts any case and the first letter alone."""
    lookup = {}
    for name, gain in table.items():
        lookup[name.lower()] = gain
        lookup[name[0].lower()] = gain

    def gain(raw: object) -> float:
        return lookup[str(raw).strip().lower()]  # KeyError -> reported by load_pairs

    return gain


MAPPINGS: dict[str, Mapping] = {
    "homedepot": Mapping(
        "homedepot", "search_term", "product_title", "relevance",
        gain=lambda r: float(r) - 1.0, max_gain=2.0, relevant_gain=1.5,
        doc="Home Depot relevance 1..3 -> gain relevance-1, relevant when relevance >= 2.5"),
    "esci": Mapping(
        "esci", "query", "product_title", "esci_label",
        gain=_grade_table({"Exact": 3.0, "Substitute": 2.0, "Complement": 1.0, "Irrelevant": 0.0}),
        max_gain=3.0, relevant_gain=3.0,
        doc="Amazon ESCI E/S/C/I -> gain 3/2/1/0, relevant when E"),
    "wands": Mapping(
        "wands", "query", "product_name", "label",
        gain=_grade_table({"Exact": 2.0, "Partial": 1.0, "Irrelevant": 0.0}),
        max_gain=2.0, relevant_gain=2.0,
        doc="Wayfair WANDS Exact/Partial/Irrelevant -> gain 2/1/0, relevant when Exact"),
    "clicks": Mapping(
        "clicks", "query", "text", "click",
        gain=lambda c: float(c), max_gain=1.0, relevant_gain=1.0,
        doc="click logs: gain = label = click 0/1, relevant when clicked"),
}


# --- a user's own columns: the COLUMNS spec -------------------------------------------------

SPEC_KEYS = ("query", "text", "label", "kind", "relevant")
KINDS = "kind:binary, kind:graded:LOW:HIGH or kind:classes:A<B<C"
GRADED_RELEVANT_SHARE = 0.75  # graded default: relevant in the upper quarter of the scale
SPEC_HELP = "COLUMNS=query:COL,text:COL[+COL],label:COL[,kind:...][,relevant:...] (docs/data.md)"


def _spec_error(spec: str, problem: str) -> DataError:
    return DataError(f"bad COLUMNS {spec!r}: {problem}; expected {SPEC_HELP}")


def _number(text: str, spec: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise _spec_error(spec, f"{what} {text!r} is not a number")
    return value


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def _binary_gain(raw: object) -> float:
    if isinstance(raw, bool):
        return float(raw)
    text = str(raw).strip().lower()
    if text in ("true", "false"):
        return float(text == "true")
    value = float(text)  # ValueError -> reported by load_pairs
    if value not in (0.0, 1.0):
        raise ValueError(f"{raw!r} is not 0 or 1")
    return value


def _graded_gain(low: float) -> Callable[[object], float]:
    def gain(raw: object) -> float:
        return float(str(raw).strip()) - low  # out of range or not a number -> load_pairs reports it

    return gain


def _classes_gain(names: list[str]) -> Callable[[object], float]:
    lookup = {name.lower(): float(i) for i, name in enumerate(names)}

    def gain(raw: object) -> float:
        return lookup[str(raw).strip().lower()]  # KeyError -> reported by load_pairs

    return gain


def parse_columns(spec: str) -> Mapping:
    """A Mapping from a COLUMNS spec (syntax: the module doc). Raises DataError naming the bad part.

    The Mapping's name is the spec written out in full (every part, the defaults made explicit),
    so parse_columns(m.name) gives the same mapping again.
    """
    parts: dict[str, str] = {}
    for part in (p.strip() for p in str(spec).split(",")):
        if not part:
            continue  # a trailing or doubled comma
        key, sep, value = part.partition(":")
        key, value = key.strip().lower(), value.strip()
        if not sep:
            raise _spec_error(spec, f"part {part!r} is not key:value")
        if key not in SPEC_KEYS:
            raise _spec_error(spec, f"unknown key {key!r} in {part!r} (keys: {', '.join(SPEC_KEYS)})")
        if key in parts:
            raise _spec_error(spec, f"{key!r} given twice")
        if not value:
            raise _spec_error(spec, f"{part!r} names nothing after the colon")
        parts[key] = value
    missing = [k for k in ("query", "text", "label") if k not in parts]
    if missing:
        raise _spec_error(spec, f"no {' or '.join(missing)} column")
    texts = tuple(t.strip() for t in parts["text"].split("+"))
    if not all(texts):
        raise _spec_error(spec, f"text:{parts['text']} has an empty column name (join columns as text:a+b)")

    kind_text = parts.get("kind", "binary")
    kind, _, rest = kind_text.partition(":")
    kind = kind.strip().lower()
    relevant = parts.get("relevant")
    if kind == "binary" and not rest:
        if relevant is not None and _number(relevant, spec, "relevant") != 1.0:
            raise _spec_error(spec, f"relevant:{relevant} for kind:binary (a binary label is relevant when 1)")
        kind_text, gain, max_gain, relevant_gain = "binary", _binary_gain, 1.0, 1.0
        relevant_text, doc = None, "binary 0/1 (or true/false), relevant when 1"
    elif kind == "graded":
        bounds = rest.split(":")
        if len(bounds) != 2:
            raise _spec_error(spec, f"kind:{kind_text} needs a range, as kind:graded:LOW:HIGH (e.g. graded:1:3)")
        low, high = (_number(b.strip(), spec, f"kind:{kind_text}: bound") for b in bounds)
        if not low < high:
            raise _spec_error(spec, f"kind:{kind_text}: LOW must be below HIGH")
        max_gain = high - low
        if relevant is None:
            relevant_gain = GRADED_RELEVANT_SHARE * max_gain
        else:
            threshold = _number(relevant, spec, "relevant")
            if not low <= threshold <= high:
                raise _spec_error(spec, f"relevant:{relevant} is outside the range {_fmt(low)}..{_fmt(high)}")
            relevant_gain = threshold - low
        kind_text, gain = f"graded:{_fmt(low)}:{_fmt(high)}", _graded_gain(low)
        relevant_text = _fmt(low + relevant_gain)
        doc = f"graded {_fmt(low)}..{_fmt(high)}, relevant when >= {relevant_text}"
    elif kind == "classes":
        names = [n.strip() for n in rest.split("<")]
        if len(names) < 2 or not all(names):
            raise _spec_error(spec, f"kind:{kind_text} needs two or more class names, worst first, "
                                    "as kind:classes:Irrelevant<Partial<Exact")
        lower = [n.lower() for n in names]
        if len(set(lower)) != len(lower):
            raise _spec_error(spec, f"kind:{kind_text} names a class twice")
        if relevant is None:
            relevant_gain = float(len(names) - 1)
        elif relevant.lower() in lower:
            relevant_gain = float(lower.index(relevant.lower()))
        else:
            raise _spec_error(spec, f"relevant:{relevant} is not one of the classes {'<'.join(names)}")
        kind_text, gain, max_gain = "classes:" + "<".join(names), _classes_gain(names), float(len(names) - 1)
        relevant_text = names[int(relevant_gain)]
        doc = f"classes {'<'.join(names)} (gain 0..{len(names) - 1}), relevant from {relevant_text}"
    else:
        raise _spec_error(spec, f"unknown kind:{kind_text} (kinds: {KINDS})")

    name = f"query:{parts['query']},text:{'+'.join(texts)},label:{parts['label']},kind:{kind_text}"
    if relevant_text is not None:
        name += f",relevant:{relevant_text}"
    return Mapping(name, parts["query"], texts[0] if len(texts) == 1 else texts, parts["label"],
                   gain=gain, max_gain=max_gain, relevant_gain=relevant_gain, doc=doc)


def is_spec(mapping: str) -> bool:
    """Whether a --mapping value is a COLUMNS spec (it has key:value parts) rather than a name."""
    return ":" in mapping


def get_mapping(mapping: str | Mapping) -> Mapping | None:
    """The Mapping a --mapping / --columns value names: None for "auto" (detect from the columns),
    a ready mapping by name, a Mapping as is, else a COLUMNS spec (parse_columns)."""
    if isinstance(mapping, Mapping):
        return mapping
    text = str(mapping).strip()
    if text in ("", "auto"):
        return None
    if text in MAPPINGS:
        return MAPPINGS[text]
    if is_spec(text):
        return parse_columns(text)
    raise DataError(f"unknown mapping {text!r}; known: {', '.join(MAPPINGS)}, 'auto', or your columns as "
                    "query:COL,text:COL,label:COL (COLUMNS=, docs/data.md)")


def guess_columns(columns: list[str]) -> str:
    """A COLUMNS spec to suggest for a file's columns: a guess by the usual words, for the error
    message to show in the file's own names (the user checks it, nothing loads with it)."""
    left = [str(c) for c in columns]

    def take(words: tuple[str, ...], placeholder: str) -> str:
        for c in left:
            if any(w in c.lower() for w in words):
                left.remove(c)
                return c
        return placeholder

    query = take(("query", "search", "term", "keyword"), "QUERY_COLUMN")
    label = take(("label", "click", "relevan", "rating", "grade", "score", "judg", "target"), "LABEL_COLUMN")
    text = take(("title", "name", "text", "product", "item", "desc"), left[0] if left else "TEXT_COLUMN")
    return f"query:{query},text:{text},label:{label}"
