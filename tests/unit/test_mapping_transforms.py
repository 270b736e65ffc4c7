"""Cell transforms: what a sheet cell becomes, and what is refused (never guessed)."""
from __future__ import annotations

import pytest

from gateway.mapping.transforms import Absent, accessions, decimal, digits, height_inches, integer, text, upper, yes_no

HEIGHT = {"range": [36, 96]}


@pytest.mark.parametrize("cell, inches", [
    ("5' 7\"", 67.0), ("5'7", 67.0), ("5' 7", 67.0), ("5 ft 7 in", 67.0), ("6'", 72.0),
    ("5’ 11”", 71.0), ("67", 67.0), (67, 67.0), (66.5, 66.5), ("67 in", 67.0), ("5'0\"", 60.0),
])
def test_height_feet_inches_or_inches(cell, inches):
    assert height_inches(cell, HEIGHT) == inches


@pytest.mark.parametrize("cell, kind", [
    ("", "blank"), (None, "blank"), ("   ", "blank"), ("unknown", "unknown"), ("UNK", "unknown"),
    ("tall", "invalid"), ("170 cm", "invalid"), ("5' 13\"", "invalid"), ("12' 0\"", "out_of_range"),
    ("20", "out_of_range"),
])
def test_height_refuses_what_it_cannot_read(cell, kind):
    result = height_inches(cell, HEIGHT)
    assert isinstance(result, Absent) and result.kind == kind


@pytest.mark.parametrize("cell, value", [("Y", True), ("y", True), ("Yes", True), (" N ", False),
                                         ("no", False), (True, True), (1, True), ("0", False)])
def test_yes_no(cell, value):
    assert yes_no(cell, {}) is value


@pytest.mark.parametrize("cell, kind", [("maybe", "invalid"), ("", "blank"), ("Unknown", "unknown"),
                                        ("2", "invalid")])
def test_yes_no_refuses(cell, kind):
    assert yes_no(cell, {}).kind == kind


def test_numbers_units_and_ranges():
    assert decimal("31.2", {}) == 31.2
    assert decimal(" 180 lbs", {"suffix": ["lbs", "lb"]}) == 180.0
    assert decimal("40%", {"suffix": ["%"]}) == 40.0
    assert decimal("1,200", {}) == 1200.0
    assert decimal("1,5", {}).kind == "invalid"          # decimal comma or thousands? refuse
    assert decimal("40%", {}).kind == "invalid"           # unit not allowed by the mapping
    assert decimal("900", {"range": [8, 150]}).kind == "out_of_range"
    assert decimal(float("nan"), {}).kind == "blank"
    assert integer("3", {}) == 3 and integer(3.0, {}) == 3 and isinstance(integer(3.0, {}), int)
    assert integer("2.5", {}).kind == "invalid"            # never rounded
    assert integer("-1", {"range": [0, 50]}).kind == "out_of_range"


def test_text_codes_zip_and_accessions():
    assert text("  Bilateral opacities ", {}) == "Bilateral opacities"
    assert upper("black  or african american", {}) == "BLACK OR AFRICAN AMERICAN"
    assert digits(720, {"length": 3}) == "720" and digits(72.0, {"length": 3}) == "072"
    assert digits("7201", {"length": 3}).kind == "invalid"
    assert accessions("mw123456.1; MW654321", {}) == ["MW123456.1", "MW654321"]
    assert accessions("not-an-accession", {}).kind == "invalid"
    assert accessions("", {}).kind == "blank"
