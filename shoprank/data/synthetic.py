"""The project's own default data: a SYNTHETIC home-improvement click log.

Nothing here is real. A seeded generator builds a catalogue of about 2,000 products from
category nouns, brands, sizes, colors, materials and attributes ("DEWALT 20V MAX cordless
drill driver kit", "Glacier Bay 30 in. white vanity cabinet"), then about 1,000 queries typed
the way shoppers type them (partial, lowercase, "30 inch" for "30 in.", some misspelled).
Each query is shown 10 candidates: a few that match everything the query asks for, near
misses from the same category and random other products. The click (0/1) is drawn from a
hidden relevance (does the product type match, how many of the query's attributes does it
carry) plus noise: a model can learn it, but it is not trivial and some clicks contradict it.
There is no position bias: candidates are shown in random order.

Columns: query, text, click. It exists so that the project runs, trains and tests on a
machine without the real Home Depot judgments (config.SHARED_DATA).

Determinism: only `random.Random(seed)` and lists/dicts (never iteration over sets, whose
order of strings changes between interpreter runs), so the CSV is byte-identical every run.
"""
from __future__ import annotations

import csv
import os
import random
from dataclasses import dataclass
from pathlib import Path

from .. import config

DEFAULT_FILE = config.DEFAULT_DATA_DIR / "clicks.csv"
CANDIDATES_PER_QUERY = 10
PRODUCTS = 2000  # about this many products in the catalogue

# Each category: brands, product types ("full name|short name a shopper types"), and slots of
# attribute values. Slots before "*" are written before the type, slots after it behind.
# A slot value of None means "this product does not mention that slot".
CATALOGUE = {
    "power tools": dict(
        brands=["DEWALT", "Milwaukee", "Makita", "RYOBI", "Bosch", "RIDGID"],
        types=["cordless drill driver|drill", "hammer drill|drill", "impact driver|impact driver",
               "circular saw|saw", "reciprocating saw|saw", "oscillating multi-tool|multi tool"],
        pre=[["12V", "18V", "20V MAX", "M18 FUEL", None]],
        post=[["kit", "(tool only)", "with 2 batteries", None]],
    ),
    "vanities": dict(
        brands=["Glacier Bay", "Home Decorators Collection", "Pegasus", "Design House"],
        types=["vanity cabinet|vanity", "vanity with marble top|vanity", "vanity combo|vanity",
               "medicine cabinet|medicine cabinet"],
        pre=[["24 in.", "30 in.", "36 in.", "48 in."], ["white", "gray", "espresso", "navy blue"]],
        post=[["with sink", "in oak", None]],
    ),
    "faucets": dict(
        brands=["Moen", "Delta", "Pfister", "Glacier Bay", "KOHLER"],
        types=["kitchen faucet|faucet", "bathroom faucet|faucet", "shower head|shower head",
               "tub spout|tub spout"],
        pre=[["single-handle", "2-handle", "pull-down", None],
             ["chrome", "brushed nickel", "matte black", "oil rubbed bronze"]],
        post=[["with sprayer", "with drain", None]],
    ),
    "paint": dict(
        brands=["BEHR", "Glidden", "Rust-Oleum", "Valspar"],
        types=["interior paint|paint", "exterior paint|paint", "primer|primer",
               "spray paint|spray paint", "deck stain|stain"],
        pre=[["1 gal.", "5 gal.", "1 qt."], ["ultra pure white", "gray", "beige", "black", None],
             ["flat", "eggshell", "satin", "semi-gloss"]],
        post=[["and primer in one", None]],
    ),
    "lighting": dict(
        brands=["Hampton Bay", "Commercial Electric", "Progress Lighting", "Home Decorators Collection"],
        types=["ceiling fan with light|ceiling fan", "flush mount light|light", "pendant light|light",
               "LED recessed light|recessed light", "vanity light|vanity light"],
        pre=[["52 in.", "44 in.", "6 in.", "4 in.", None], ["brushed nickel", "matte black", "bronze", "white"]],
        post=[["3-light", "with remote", None]],
    ),
    "flooring": dict(
        brands=["LifeProof", "TrafficMaster", "Pergo", "Home Decorators Collection"],
        types=["vinyl plank flooring|vinyl plank", "laminate flooring|laminate", "porcelain tile|tile",
               "ceramic tile|tile", "hardwood flooring|hardwood"],
        pre=[["oak", "gray", "white", "walnut", "hickory"], ["12 in. x 24 in.", "7.1 in. x 48 in.", None]],
        post=[["waterproof", "(20 sq. ft. / case)", None]],
    ),
    "fasteners": dict(
        brands=["Simpson Strong-Tie", "Everbilt", "GRK", "Hillman"],
        types=["wood screws|screws", "deck screws|screws", "angle bracket|bracket",
               "joist hanger|joist hanger", "lag bolts|bolts", "drywall anchors|anchors"],
        pre=[["#8 x 1-1/4 in.", "3 in.", "1/4 in. x 4 in.", None], ["zinc-plated", "stainless steel", "galvanized"]],
        post=[["(100-pack)", "(25-pack)", None]],
    ),
    "lumber": dict(
        brands=["WeatherShield", "Severe Weather", "Columbia Forest", "Builders Choice"],
        types=["stud|stud", "plywood|plywood", "pressure-treated board|board", "fence picket|fence picket",
               "MDF board|board"],
        pre=[["2 in. x 4 in. x 8 ft.", "4 ft. x 8 ft.", "1 in. x 6 in. x 6 ft.", "3/4 in."],
             ["pine", "cedar", "whitewood", "birch"]],
        post=[[None]],
    ),
    "appliances": dict(
        brands=["Samsung", "LG", "Whirlpool", "GE", "Frigidaire"],
        types=["french door refrigerator|refrigerator", "top freezer refrigerator|refrigerator",
               "front load washer|washer", "electric dryer|dryer", "dishwasher|dishwasher",
               "gas range|range", "over the range microwave|microwave"],
        pre=[["36 in.", "30 in.", "24 in.", "25 cu. ft.", None], ["stainless steel", "white", "black stainless"]],
        post=[["with ice maker", "ENERGY STAR", None]],
    ),
    "outdoor power": dict(
        brands=["Husqvarna", "RYOBI", "Toro", "Greenworks", "EGO"],
        types=["lawn mower|mower", "self propelled lawn mower|mower", "string trimmer|trimmer",
               "leaf blower|blower", "chainsaw|chainsaw", "hedge trimmer|trimmer"],
        pre=[["40V", "80V", "gas", "electric"], ["21 in.", "16 in.", "14 in.", None]],
        post=[["with battery and charger", "(tool only)", None]],
    ),
    "door hardware": dict(
        brands=["Kwikset", "Schlage", "Defiant"],
        types=["door knob|door knob", "deadbolt|deadbolt", "smart lock|smart lock",
               "door lever|lever", "door hinge|hinge"],
        pre=[["satin nickel", "matte black", "venetian bronze", "polished brass"]],
        post=[["keyed entry", "privacy", "passage", None]],
    ),
    "storage": dict(
        brands=["Husky", "Milwaukee", "Gladiator", "HDX"],
        types=["tool chest|tool chest", "rolling tool box|tool box", "garage shelving unit|shelving",
               "workbench|workbench", "storage cabinet|cabinet"],
        pre=[["26 in.", "46 in.", "72 in.", None], ["red", "black", "gray"], ["steel", "plastic", None]],
        post=[["with drawers", None]],
    ),
    "plumbing": dict(
        brands=["SharkBite", "Charlotte Pipe", "Everbilt", "NIBCO"],
        types=["push-to-connect coupling|coupling", "PVC pipe|pipe", "copper elbow|elbow",
               "ball valve|valve", "tank water heater|water heater"],
        pre=[["1/2 in.", "3/4 in.", "2 in.", "40 gal."], ["brass", "PVC", "copper", None]],
        post=[[None]],
    ),
    "toilets": dict(
        brands=["American Standard", "Glacier Bay", "TOTO", "KOHLER"],
        types=["two-piece toilet|toilet", "one-piece toilet|toilet", "toilet seat|toilet seat",
               "toilet flapper|flapper"],
        pre=[["elongated", "round", None], ["white", "biscuit", "bone"]],
        post=[["1.28 GPF", "with soft close", None]],
    ),
}

# How shoppers rewrite parts of a product text (applied to the lowercased attribute).
# " cu. ft." comes before " ft." so that it is rewritten as a whole.
_UNIT_FORMS = {" cu. ft.": [" cu ft", " cu. ft."], " in.": [" in", " inch", "in", "\""],
               " ft.": [" ft", " foot", "'"], " gal.": [" gal", " gallon"], " qt.": [" qt", " quart"]}
_SHORT_FORMS = {"stainless steel": ["stainless", "ss", "stainless steel"], "brushed nickel": ["nickel", "brushed nickel"],
                "oil rubbed bronze": ["oil rubbed bronze", "bronze", "orb"], "20v max": ["20v", "20v max"],
                "ultra pure white": ["white", "ultra white"], "pressure-treated board": ["pressure treated"],
                "single-handle": ["single handle"], "pull-down": ["pull down"], "m18 fuel": ["m18", "m18 fuel"]}


@dataclass
class Product:
    text: str
    category: str
    full_type: str
    short_type: str
    attrs: dict  # slot name ("brand", "pre0", "post0", ...) -> value, only slots the product has


def build_catalogue(rnd: random.Random, per_category: int | None = None) -> list[Product]:
    """About PRODUCTS products (per_category of each category), drawn from `rnd`; generate()
    draws its catalogue first from Random(seed), so Random(0) gives the default data's products."""
    per_category = per_category or PRODUCTS // len(CATALOGUE) + 1
    products: dict[str, Product] = {}  # keyed by text: duplicates are dropped, order kept
    for category, spec in CATALOGUE.items():
        count = 0
        for _ in range(per_category * 3):  # draws may repeat; stop once enough are distinct
            if count >= per_category:
                break
            full, short = rnd.choice(spec["types"]).split("|")
            attrs = {"brand": rnd.choice(spec["brands"])}
            words = [attrs["brand"]]
            for i, slot in enumerate(spec["pre"]):
                value = rnd.choice(slot)
                if value is not None:
                    attrs[f"pre{i}"] = value
                    words.append(value)
            words.append(full)
            for i, slot in enumerate(spec["post"]):
                value = rnd.choice(slot)
                if value is not None:
                    attrs[f"post{i}"] = value
                    words.append(value)
            text = " ".join(words)
            if text not in products:
                products[text] = Product(text, category, full, short, attrs)
                count += 1
    return list(products.values())


def _shopper_form(rnd: random.Random, value: str) -> str:
    """One way a shopper might type an attribute or type name."""
    s = value.lower()
    if s in _SHORT_FORMS:
        s = rnd.choice(_SHORT_FORMS[s])
    for unit, forms in _UNIT_FORMS.items():
        if unit in s:
            s = s.replace(unit, rnd.choice(forms))
    return s.replace("(", "").replace(")", "")


def _typo(rnd: random.Random, query: str) -> str:
    """Misspell one longer word: drop, double or swap letters, as fast typists do."""
    words = query.split(" ")
    long_ones = [i for i, w in enumerate(words) if len(w) >= 5 and w.isalpha()]
    if not long_ones:
        return query
    i = rnd.choice(long_ones)
    w, j = words[i], rnd.randrange(1, len(words[i]) - 1)
    kind = rnd.randrange(3)
    if kind == 0:
        w = w[:j] + w[j + 1:]
    elif kind == 1:
        w = w[:j] + w[j] + w[j:]
    else:
        w = w[:j] + w[j + 1] + w[j] + w[j + 2:]
    words[i] = w
    return " ".join(words)


def relevance(intent: dict, p: Product) -> float:
    """Hidden relevance in [0, 1] of product p for a query intent: the truth the clicks follow."""
    if p.category != intent["category"]:
        # Other categories: only a shared brand earns a little interest (a RYOBI fan
        # searching "ryobi mower" may look at a RYOBI drill).
        return 0.1 if intent["attrs"].get("brand") == p.attrs.get("brand") else 0.0
    if intent["type"] in (p.full_type, p.short_type):
        type_score = 1.0
    else:
        type_score = 0.25  # same category, other kind of product
    wanted = intent["attrs"]
    hits = sum(p.attrs.get(slot) == value for slot, value in wanted.items())
    attr_score = hits / len(wanted) if wanted else 1.0
    return type_score * (0.35 + 0.65 * attr_score)


def make_query(rnd: random.Random, target: Product) -> tuple[str, dict]:
    use_full = rnd.random() < 0.4
    type_name = target.full_type if use_full else target.short_type
    # 0..3 of the target's attributes, the brand most often; shoppers rarely type all of them.
    slots = list(target.attrs)
    n_attrs = rnd.choices([0, 1, 2, 3], weights=[2, 4, 3, 1])[0]
    chosen = rnd.sample(slots, min(n_attrs, len(slots)))
    chosen.sort(key=slots.index)  # mostly in catalogue order ("moen brushed nickel faucet") ...
    before = [_shopper_form(rnd, target.attrs[s]) for s in chosen if not s.startswith("post")]
    after = [_shopper_form(rnd, target.attrs[s]) for s in chosen if s.startswith("post")]
    type_words = _shopper_form(rnd, type_name)
    if before and rnd.random() < 0.3:
        parts = [type_words] + before + after  # ... sometimes type first ("faucet moen")
    else:
        parts = before + [type_words] + after
    query = " ".join(parts)
    if rnd.random() < 0.12:
        query = _typo(rnd, query)
    intent = {"category": target.category, "type": type_name,
              "attrs": {s: target.attrs[s] for s in chosen}}
    return query, intent


def candidate_set(rnd: random.Random, intent, same_category: list[Product], products: list[Product],
                  matches_range: tuple[int, int], near_range: tuple[int, int], size: int) -> list[Product]:
    """What retrieval would hand over for a query: a few true matches and several near misses
    of the target's category (counts drawn from the ranges), then random products up to `size`.
    Distinct texts, in drawing order (callers shuffle)."""
    scored = [(p, relevance(intent, p)) for p in same_category]
    matches = [p for p, r in scored if r >= 0.99]
    near = [p for p, r in scored if r < 0.99]
    shown: dict[str, Product] = {}
    for p in rnd.sample(matches, min(len(matches), rnd.randint(*matches_range))):
        shown[p.text] = p
    for p in rnd.sample(near, min(len(near), rnd.randint(*near_range))):
        shown[p.text] = p
    while len(shown) < size:
        p = rnd.choice(products)
        shown.setdefault(p.text, p)
    return list(shown.values())


def click_probability(relevance_: float) -> float:
    """P(click | examined): rises steeply with relevance; a 3 % floor models stray clicks, and even
    a perfect match is skipped a quarter of the time."""
    return 0.03 + 0.72 * relevance_ * relevance_


def generate(path: str | Path = DEFAULT_FILE, n_queries: int = 1000, seed: int = 0) -> Path:
    """Write the synthetic click log (query,text,click) to `path` as CSV and return the path.

    Same arguments, same bytes: the file is a pure function of (n_queries, seed).
    """
    rnd = random.Random(seed)
    products = build_catalogue(rnd)
    by_category: dict[str, list[Product]] = {}
    for p in products:
        by_category.setdefault(p.category, []).append(p)

    rows: list[tuple[str, str, int]] = []
    seen_queries: set[str] = set()  # membership only; never iterated
    while len(seen_queries) < n_queries:
        target = rnd.choice(products)
        query, intent = make_query(rnd, target)
        if query in seen_queries:
            continue  # one impression per query, so a query is one ranking group
        seen_queries.add(query)
        candidates = candidate_set(rnd, intent, by_category[target.category], products, (1, 3), (3, 5),
                                   CANDIDATES_PER_QUERY)
        rnd.shuffle(candidates)  # no position bias: shown order carries no signal
        for p in candidates:
            r = relevance(intent, p)
            rows.append((query, p.text, int(rnd.random() < click_probability(r))))

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # atomic: readers never see half a file
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["query", "text", "click"])
        writer.writerows(rows)
    os.replace(tmp, path)
    return path


def ensure_default_data() -> Path:
    """The default data file, generated on first use (it is a pure function of the code)."""
    if not DEFAULT_FILE.exists():
        generate(DEFAULT_FILE)
    return DEFAULT_FILE
