"""A tiny Home-Depot-style catalog and the index fitted on it (cheap: a few ms)."""
from __future__ import annotations

import pytest

from shoprank.features import LexicalIndex

TITLES = [
    "Delta Vero 1-Handle Shower Only Faucet Trim Kit in Chrome (Valve Not Included)",
    "Delta Lahara 2-Handle Bathroom Faucet in Chrome",
    "Delta Cassidy Single-Handle Kitchen Faucet in Stainless",
    "Delta Classic 1-Handle Shower Faucet in Chrome",
    "MOEN Brantford 1-Handle Shower Faucet Trim Kit in Chrome",
    "MOEN Hensley Double Robe Hook in Spot Resist Brushed Nickel",
    "MOEN Align Towel Bar in Brushed Nickel",
    "MOEN Banbury Kitchen Faucet in Chrome",
    "Hampton Bay 52 in. Ceiling Fan in Brushed Nickel",
    "Hampton Bay 44 in. Ceiling Fan in White",
    "Hampton Bay 3-Light Vanity Light in Brushed Nickel",
    "Hampton Bay Outdoor Wall Lantern",
    "SharkBite 3/4 in. Brass Push-to-Connect Coupling",
    "SharkBite 1/2 in. Brass Push-to-Connect Coupling",
    "SharkBite 3/4 in. x 1/2 in. Brass Reducing Coupling",
    "Charlotte Pipe 3/4 in. x 10 ft. PVC Sch. 40 Pipe",
    "Oatey 8 oz. PVC Cement",
    "Oatey 16 oz. PVC Cement and Primer",
    "American Standard Cadet 3 Elongated Toilet Seat in White",
    "BEMIS Elongated Closed Front Toilet Seat in White",
    "Everbilt 9 ft. x 9 ft. Drawstring Tarp",
    "Everbilt 3 in. Zinc Door Hinge (3-Pack)",
    "BEHR Premium 1-gal. #SC-141 Tugboat Wood and Concrete Coating",
    "BEHR Premium Plus 5-gal. White Interior Paint",
    "Glidden 1-gal. White Interior Paint",
    "Rust-Oleum 1 Gallon Deck Stain",
    "Veranda Vinyl Fence Post 5 in. x 5 in. x 8 ft.",
    "Veranda White Vinyl Fence Panel 6 ft. x 8 ft.",
    "30 in. x 60 in. Acrylic Bathtub in White",
    "Milwaukee M18 18-Volt Cordless Drill Driver Kit",
    "DEWALT 20-Volt Max Cordless Drill Driver Kit",
    "DEWALT 1/2 in. Drill Bit Set (14-Piece)",
    "Ryobi 18-Volt ONE+ Cordless Drill",
    "Closetmaid 36 in. White Wire Shelf",
    "Rust-Oleum Stops Rust 12 oz. Gloss Black Spray Paint",
    "Amerimax 10 ft. Vinyl Gutter",
    "Wire Mesh Roll 36 in. x 50 ft.",
    "Simpson Strong-Tie 12-Gauge Galvanized Angle",
]
QUERIES = ["delta shower faucet", "pvc cement", "vinyl fence", "cordless drill", "toilet seat",
           "vinyl gutter", "ceiling fan nickel", "pvc pipe 3/4"]


@pytest.fixture(scope="session")
def index() -> LexicalIndex:
    return LexicalIndex.fit(TITLES, QUERIES)
