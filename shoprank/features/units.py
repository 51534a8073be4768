"""Numbers with their units, read out of normalized text ("3/4 in." = "3/4 inch" = "0.75 in").

A quantity is (value, unit): the value a float (fractions, mixed numbers "2-3/4", thousands
"36,000" resolved), the unit a canonical name or None. Units of one dimension convert to one
canonical unit (ft, yd, mm, cm -> in; qt, pt -> gal; kw -> w), so "6 ft" and "72 in." meet.
In a dimension chain ("30 x 60 in.") a bare number takes the unit of the number after it.
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import NamedTuple


class Quantity(NamedTuple):
    value: float        # in the canonical unit of its dimension ("9 ft." -> 108.0)
    unit: str | None    # canonical unit ("in", "gal", "w", "light") or None for a bare number
    raw: float          # the number as written ("9 ft." -> 9.0), what a bare number is compared to


# canonical unit -> (factor to the canonical unit of its dimension, spellings). Spellings are
# matched whole (not followed by a letter or digit), each optionally followed by ".".
_UNITS: dict[str, tuple[str, float, tuple[str, ...]]] = {
    "in": ("in", 1.0, ("in", "inch", "inches", '"', "''", "inche")),
    "ft": ("in", 12.0, ("ft", "foot", "feet", "'", "lin ft", "linear ft", "linear feet")),
    "yd": ("in", 36.0, ("yd", "yds", "yard", "yards")),
    "mm": ("in", 1 / 25.4, ("mm", "millimeter", "millimeters")),
    "cm": ("in", 1 / 2.54, ("cm", "centimeter", "centimeters")),
    "sqft": ("sqft", 1.0, ("sq ft", "sq. ft", "sqft", "square feet", "square foot", "sq feet", "sf")),
    "cuft": ("cuft", 1.0, ("cu ft", "cu. ft", "cuft", "cubic feet", "cubic foot", "cu feet")),
    "gal": ("gal", 1.0, ("gal", "gallon", "gallons", "gals")),
    "qt": ("gal", 0.25, ("qt", "quart", "quarts")),
    "pt": ("gal", 0.125, ("pt", "pint", "pints")),
    "oz": ("oz", 1.0, ("oz", "ounce", "ounces", "fl oz", "fl. oz")),
    "lb": ("lb", 1.0, ("lb", "lbs", "pound", "pounds")),
    "v": ("v", 1.0, ("v", "volt", "volts", "vac", "vdc")),
    "amp": ("amp", 1.0, ("amp", "amps", "ampere", "amperes")),
    "ah": ("ah", 1.0, ("ah", "amp hour", "amp-hour", "amp hours")),
    "w": ("w", 1.0, ("w", "watt", "watts")),
    "kw": ("w", 1000.0, ("kw", "kilowatt", "kilowatts")),
    "btu": ("btu", 1.0, ("btu", "btus")),
    "hp": ("hp", 1.0, ("hp", "horsepower")),
    "psi": ("psi", 1.0, ("psi",)),
    "cfm": ("cfm", 1.0, ("cfm",)),
    "gpm": ("gpm", 1.0, ("gpm",)),
    "gpf": ("gpf", 1.0, ("gpf",)),
    "rpm": ("rpm", 1.0, ("rpm",)),
    "mph": ("mph", 1.0, ("mph",)),
    "deg": ("deg", 1.0, ("°", "deg", "degree", "degrees")),
    "gauge": ("gauge", 1.0, ("ga", "gauge", "gage", "awg")),
    "ton": ("ton", 1.0, ("ton", "tons")),
    "mil": ("mil", 1.0, ("mil", "mils")),
    "grit": ("grit", 1.0, ("grit",)),
    "cc": ("cc", 1.0, ("cc",)),
    "lumen": ("lumen", 1.0, ("lumen", "lumens", "lm")),
    "kelvin": ("kelvin", 1.0, ("k", "kelvin")),
    "year": ("year", 1.0, ("year", "years", "yr", "yrs")),
}
# Counted things: the number gets the unit, and the word stays in the text as a term too, since
# "light" or "door" also names the product ("3-light chandelier", "2-door cabinet").
_COUNTS: dict[str, tuple[str, ...]] = {
    "pack": ("pack", "packs", "pk", "count", "ct"),
    "piece": ("piece", "pieces", "pc", "pcs"),
    "light": ("light", "lights"),
    "door": ("door", "doors"),
    "drawer": ("drawer", "drawers"),
    "shelf": ("shelf", "shelves"),
    "tier": ("tier", "tiers"),
    "gang": ("gang",),
    "pole": ("pole",),
    "handle": ("handle", "handles"),
    "outlet": ("outlet", "outlets"),
    "burner": ("burner", "burners"),
    "panel": ("panel", "panels"),
    "step": ("step", "steps"),
    "speed": ("speed", "speeds"),
    "way": ("way",),
    "person": ("person",),
}

_SPELLING: dict[str, tuple[str, float, bool]] = {}  # spelling -> (canonical unit, factor, is a count)
for _name, (_canon, _factor, _spellings) in _UNITS.items():
    for _s in _spellings:
        _SPELLING[_s] = (_canon, _factor, False)
for _name, _spellings in _COUNTS.items():
    for _s in _spellings:
        _SPELLING[_s] = (_name, 1.0, True)

# Longest spellings first, so "sq ft" wins over nothing and "ft" over "f"; spaces inside a
# spelling match any run of spaces or dots ("sq. ft.").
_UNIT_ALT = "|".join(re.escape(s).replace(r"\ ", r"[\s.]*") for s in sorted(_SPELLING, key=len, reverse=True))
_NUMBER = (r"(?:(?P<whole>\d+)(?:-|\s)(?P<fnum>\d+)/(?P<fden>\d+)"   # 2-3/4, 1 1/2
           r"|(?P<num>\d+)/(?P<den>\d+)"                              # 3/4
           r"|(?P<dec>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d*\.\d+|\d+))")  # 36,000  0.75  .5  12
# Not glued to a letter or digit before (codes like "t9", "sc-141" stay codes), and the match must
# end at a token edge: "230m" is a model code, not 230 of an unknown unit.
_QUANTITY = re.compile(
    r"(?<![a-z0-9.,/])(?<![a-z]-)" + _NUMBER
    + r"(?:\s*-?\s*(?P<unit>" + _UNIT_ALT + r")\.?)?(?![a-z0-9])")
_CHAIN_GAP = re.compile(r"\s*(?:x|by)\s*")


def _value(m: re.Match) -> float | None:
    if m.group("dec") is not None:
        return float(m.group("dec").replace(",", ""))
    if m.group("num") is not None:
        den = int(m.group("den"))
        return int(m.group("num")) / den if den else None
    den = int(m.group("fden"))
    return int(m.group("whole")) + int(m.group("fnum")) / den if den else None


@lru_cache(maxsize=1024)
def _unit_of(spelling: str) -> tuple[str, float, bool]:
    key = re.sub(r"[\s.]+", " ", spelling).strip()
    if key in _SPELLING:
        return _SPELLING[key]
    return _SPELLING.get(key.replace(" ", ""), _SPELLING.get(spelling, ("", 1.0, False)))


class Extraction(NamedTuple):
    quantities: list[Quantity]  # in order of appearance
    text: str                   # the text with them blanked out
    lead_end: int               # where the first one started (len(text) if none): the title's lead


def extract_quantities(text: str) -> Extraction:
    """The quantities of normalized text, and the text without them.

    Physical units are blanked with their number; count units ("3-light") keep their word.
    """
    found: list[tuple[float, str | None, float, int, int]] = []  # value, unit, raw, start, end
    pieces: list[str] = []
    last = 0
    for m in _QUANTITY.finditer(text):
        value = _value(m)
        if value is None:
            continue
        raw, unit, end = value, None, m.end()
        if m.group("unit"):
            canon, factor, is_count = _unit_of(m.group("unit"))
            if canon:
                unit, value = canon, value * factor
                if is_count:
                    end = m.start("unit")  # keep the counted word in the text
        found.append((value, unit, raw, m.start(), m.end()))
        pieces.append(text[last:m.start()])
        pieces.append(" ")
        last = end
    if not found:
        return Extraction([], text, len(text))
    pieces.append(text[last:])
    # Dimension chains, right to left: "30 x 60 in." -> both numbers in inches.
    for i in range(len(found) - 2, -1, -1):
        value, unit, raw, start, end = found[i]
        nxt = found[i + 1]
        if unit is None and nxt[1] is not None and _CHAIN_GAP.fullmatch(text, end, nxt[3]):
            # the next number's unit, with its conversion factor (30 x 60 ft: 30 ft = 360 in)
            factor = nxt[0] / nxt[2] if nxt[2] else 1.0
            found[i] = (value * factor, nxt[1], raw, start, end)
    quantities = [Quantity(round(v, 4), u, round(r, 4)) for v, u, r, _, _ in found]
    return Extraction(quantities, "".join(pieces), found[0][3])


def is_unit(word: str) -> bool:
    """Whether a word is a unit's spelling ("ft", "gallon", "pack")."""
    return word in _SPELLING


def same_value(a: float, b: float) -> bool:
    """Equal up to rounding of unit conversions (16 mm = 0.63 in vs 5/8 in = 0.625 in)."""
    return abs(a - b) <= 0.015 * max(abs(a), abs(b)) + 1e-6
