"""Pure value transforms for clinical sheet cells: text in, a typed value or an ``Absent`` out.

A cell is never guessed at: blanks and "unknown" are reported as such, anything unparsable
or out of range as ``invalid``/``out_of_range``; the engine decides (skip, omit, or
dataAbsentReason) and counts a warning. Nothing here raises on bad input.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable

UNKNOWN_WORDS = frozenset({"unknown", "unk", "n/a", "na", "not known", "?", "nk", "none recorded"})


@dataclass(frozen=True)
class Absent:
    """Why a cell gives no value. ``kind``: blank, unknown, invalid, out_of_range, unmatched."""

    kind: str
    detail: str = ""

    def __bool__(self) -> bool:
        return False


BLANK = Absent("blank")

Transform = Callable[[Any, dict], Any]


def _text(cell: Any) -> str | Absent:
    if cell is None or (isinstance(cell, float) and math.isnan(cell)):
        return BLANK
    text = str(cell).strip()
    if not text:
        return BLANK
    if text.lower() in UNKNOWN_WORDS:
        return Absent("unknown", text)
    return text


def text(cell: Any, args: dict) -> str | Absent:
    """Trimmed free text; blanks and 'unknown' are absent."""
    return _text(cell)


def upper(cell: Any, args: dict) -> str | Absent:
    """Upper-case code-like text with inner whitespace collapsed ('black  or african american')."""
    value = _text(cell)
    return value if isinstance(value, Absent) else " ".join(value.upper().split())


_YES = frozenset({"Y", "YES", "TRUE", "1", "T"})
_NO = frozenset({"N", "NO", "FALSE", "0", "F"})


def yes_no(cell: Any, args: dict) -> bool | Absent:
    """Y/N flags (also Yes/No, True/False, 1/0 as spreadsheets store them)."""
    if isinstance(cell, bool):
        return cell
    value = upper(cell, args)
    if isinstance(value, Absent):
        return value
    if value.endswith(".0"):
        value = value[:-2]
    if value in _YES:
        return True
    if value in _NO:
        return False
    return Absent("invalid", f"not Y/N: {value!r}")


_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")
_THOUSANDS = re.compile(r"^\d{1,3}(,\d{3})+(\.\d+)?(\s*\S+)?$")


def _number(cell: Any, args: dict) -> float | Absent:
    if isinstance(cell, bool):
        return Absent("invalid", f"not a number: {cell!r}")
    if isinstance(cell, (int, float)):
        if isinstance(cell, float) and not math.isfinite(cell):
            return BLANK if math.isnan(cell) else Absent("invalid", "not finite")
        return float(cell)
    value = _text(cell)
    if isinstance(value, Absent):
        return value
    cleaned = value.strip()
    if _THOUSANDS.match(cleaned):  # '1,200' is 1200; '1,5' is ambiguous and stays invalid
        cleaned = cleaned.replace(",", "")
    for suffix in sorted(args.get("suffix", ()), key=len, reverse=True):
        if cleaned.lower().endswith(str(suffix).lower()):
            cleaned = cleaned[: -len(str(suffix))].strip()
            break
    if not _NUMBER.match(cleaned):
        return Absent("invalid", f"not a number: {value!r}")
    return float(cleaned)


def _in_range(number: float, args: dict, shown: Any) -> Any:
    low, high = args.get("range", (None, None))
    if (low is not None and number < low) or (high is not None and number > high):
        return Absent("out_of_range", f"{shown} outside [{low}, {high}]")
    return shown


def decimal(cell: Any, args: dict) -> float | Absent:
    """A decimal number, optionally with a unit suffix the mapping allows ('180 lbs', '40%')."""
    number = _number(cell, args)
    if isinstance(number, Absent):
        return number
    return _in_range(number, args, number)


def integer(cell: Any, args: dict) -> int | Absent:
    """A whole number; '3', 3 and 3.0 are 3, but 2.5 is invalid rather than rounded."""
    number = _number(cell, args)
    if isinstance(number, Absent):
        return number
    if number != int(number):
        return Absent("invalid", f"not a whole number: {number}")
    return _in_range(number, args, int(number))


_FEET_INCHES = re.compile(
    r"^(?P<ft>\d+(?:\.\d+)?)\s*(?:'|’|ft\.?|feet|foot)\s*"
    r"(?:(?P<in>\d+(?:\.\d+)?)\s*(?:\"|”|''|in\.?|inch(?:es)?)?)?$", re.IGNORECASE)
_INCHES = re.compile(r"^(?P<in>\d+(?:\.\d+)?)\s*(?:\"|”|''|in\.?|inch(?:es)?)?$", re.IGNORECASE)


def height_inches(cell: Any, args: dict) -> float | Absent:
    """Height in inches from `5' 7"`, `5'7`, `5 ft 7 in`, `67`, `67 in` (the sheet holds both)."""
    if isinstance(cell, (int, float)) and not isinstance(cell, bool):
        return decimal(cell, args)
    value = _text(cell)
    if isinstance(value, Absent):
        return value
    match = _FEET_INCHES.match(value)
    if match:
        inches = float(match["in"] or 0)
        if inches >= 12:
            return Absent("invalid", f"more than 11 inches after the feet: {value!r}")
        total = float(match["ft"]) * 12 + inches
    elif inches_only := _INCHES.match(value):
        total = float(inches_only["in"])
    else:
        return Absent("invalid", f"not a height in feet/inches or inches: {value!r}")
    return _in_range(total, args, total)


def digits(cell: Any, args: dict) -> str | Absent:
    """A fixed-length digit code (ZIP prefix); spreadsheets drop leading zeros, so pad integers."""
    length = int(args.get("length", 0)) or None
    if isinstance(cell, float) and math.isfinite(cell) and cell == int(cell):
        cell = int(cell)
    if isinstance(cell, int) and not isinstance(cell, bool):
        cell = str(cell).zfill(length or 0)
    value = _text(cell)
    if isinstance(value, Absent):
        return value
    if not (value.isascii() and value.isdigit()) or (length and len(value) != length):
        return Absent("invalid", f"not a {length or ''}-digit code: {value!r}".replace("  ", " "))
    return value


_ACCESSION = re.compile(r"^[A-Z]{1,2}_?\d{5,8}(\.\d+)?$")


def accessions(cell: Any, args: dict) -> list[str] | Absent:
    """GenBank accession(s), separated by commas, semicolons or spaces ('MW123456.1; MW123457')."""
    value = _text(cell)
    if isinstance(value, Absent):
        return value
    items = [x.upper() for x in re.split(r"[,;\s]+", value) if x]
    bad = [x for x in items if not _ACCESSION.match(x)]
    if bad:
        return Absent("invalid", f"not a GenBank accession: {', '.join(bad)}")
    return list(dict.fromkeys(items))


TRANSFORMS: dict[str, Transform] = {
    "text": text, "upper": upper, "yes_no": yes_no, "decimal": decimal, "integer": integer,
    "height_inches": height_inches, "digits": digits, "accessions": accessions,
}
# Arguments each transform understands (the loader rejects others, with file and line).
ARGUMENTS: dict[str, frozenset[str]] = {
    "decimal": frozenset({"range", "suffix"}), "integer": frozenset({"range", "suffix"}),
    "height_inches": frozenset({"range"}), "digits": frozenset({"length"}),
}


def apply(name: str, cell: Any, args: dict) -> Any:
    """Run one transform; a bug in a transform is reported as an invalid cell, never a crash."""
    try:
        return TRANSFORMS[name](cell, args)
    except Exception as exc:  # pragma: no cover - defensive: the data must not stop an import
        return Absent("invalid", f"{name} failed: {exc.__class__.__name__}")
