"""Normalization, stemming, codes, and numbers with units."""
from __future__ import annotations

import pytest

from shoprank.features.text import normalize, stem, unglue, words_and_codes
from shoprank.features.units import Quantity, extract_quantities, same_value


def quantities(text: str) -> list[tuple[float, str | None]]:
    return [(q.value, q.unit) for q in extract_quantities(normalize(text)).quantities]


@pytest.mark.parametrize("text", ["3/4 in. PVC", "3/4 inch pvc", "0.75 in pvc", "3/4in pvc", '3/4" pvc',
                                  "3/4-in. PVC", ".75 inches pvc"])
def test_three_quarter_inch_is_one_quantity_however_written(text):
    assert quantities(text) == [(0.75, "in")]


def test_dimensions_keep_each_number_and_a_bare_number_takes_the_next_unit():
    assert quantities("30 in. x 60 in. Bathtub") == [(30.0, "in"), (60.0, "in")]
    assert quantities("30 x 60 in tub") == [(30.0, "in"), (60.0, "in")]
    assert quantities("30x60 in tub") == [(30.0, "in"), (60.0, "in")]
    assert quantities("16 inch x 20 inch x1 inch filter") == [(16.0, "in"), (20.0, "in"), (1.0, "in")]
    # A bare dimension keeps its numbers, unitless: "2x4" lumber
    assert [q.raw for q in extract_quantities(normalize("2x4x8")).quantities] == [2.0, 4.0, 8.0]


def test_units_convert_within_their_dimension_and_keep_the_written_number():
    (q,) = extract_quantities(normalize("9 ft. tarp")).quantities
    assert q == Quantity(108.0, "in", 9.0)
    assert quantities("6 ft") == quantities("72 in.")
    assert quantities("2 qt") == [(0.5, "gal")]
    assert quantities("1-gal. paint") == quantities("1 gallon paint") == [(1.0, "gal")]
    assert quantities("250ft") == quantities("250 feet") == quantities("250 foot")
    assert quantities("200 sq. ft.") == quantities("200 square feet") == [(200.0, "sqft")]
    assert quantities("12v") == quantities("12-Volt") == [(12.0, "v")]
    assert quantities("15 amp") == [(15.0, "amp")] and quantities("60-Watt") == [(60.0, "w")]
    assert quantities("50 lb.") == quantities("50 lbs") == quantities("50 pounds") == [(50.0, "lb")]


def test_mixed_numbers_fractions_and_thousands():
    assert quantities("2-3/4 in. pull") == quantities("2 3/4 inch pull") == [(2.75, "in")]
    assert quantities("36,000 BTU") == [(36000.0, "btu")]
    assert same_value(5 / 8, 16 / 25.4) and not same_value(0.5, 0.75)


def test_count_units_keep_their_word_and_codes_stay_codes():
    ext = extract_quantities(normalize("Dale Tiffany 3-Light Chandelier (12-Pack)"))
    assert [(q.value, q.unit) for q in ext.quantities] == [(3.0, "light"), (12.0, "pack")]
    assert "light" in words_and_codes(ext.text)[0]
    ext = extract_quantities(normalize("T9 circline Series 230M #SC-141"))
    assert ext.quantities == []
    assert words_and_codes(ext.text)[1] == ["t9", "230m", "sc141"]


def test_normalize_fixes_mojibake_possessives_and_odd_characters():
    assert normalize("PainterÛªs Tape") == "painter tape"
    assert quantities("Paslode 30å¡ Nailer") == [(30.0, "deg")]
    assert normalize("Ｄｅｌｔａ  FAUCET") == "delta  faucet"   # NFKC: full-width letters
    words, codes = words_and_codes(normalize("🙂 émoji — ok"))
    assert codes == [] and "ok" in words


def test_stem_is_light_and_consistent():
    assert stem("drills") == stem("drill") == "drill"
    assert stem("batteries") == "battery" and stem("benches") == "bench" and stem("glasses") == "glass"
    assert stem("ceilings") == stem("ceiling") and stem("fittings") == stem("fitting") == "fit"
    assert stem("glass") == "glass" and stem("cactus") == "cactus" and stem("siding") == "siding"
    assert stem("mounted") == "mount" and stem("speed") == "speed" and stem("t9") == "t9"


def test_unglue_spaces_known_words_from_numbers_only():
    known = {"mirror", "pellet"}.__contains__
    assert unglue("mirror18x20 3pellet", known) == "mirror 18x20 3 pellet"
    assert unglue("hdgr48 250ft", known) == "hdgr48 250ft"
