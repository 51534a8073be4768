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
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


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
