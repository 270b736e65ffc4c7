"""A search parameter's values, parsed by type (R4 search 3.1.1.4: token, string, date,
quantity, reference, composite; prefixes and modifiers). Pure: no Flask, no SQL; every error
is a FhirError naming the parameter as the client sent it.
"""
from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Any, Callable

from ..clinical.params import ANY, Clause, Param, date_range, normalise
from .outcome import invalid, not_supported

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
MODIFIERS = {"token": {"not", "missing"}, "string": {"exact", "contains", "missing"},
             "date": {"missing"}, "quantity": {"missing"}, "reference": {"missing"}, "text": set(),
             "composite": set()}


def clause(param: Param, modifier: str | None, raw: str, key: str) -> Clause:
    if param.type == "reference" and modifier in param.targets:
        modifier = None  # subject:Patient=X names the type it already refers to (R4 3.1.1.4.7)
    if modifier and modifier not in MODIFIERS.get(param.type, ()):
        raise not_supported(400, f"Modifier :{modifier} is not supported on {param.name}", key)
    if modifier == "missing":
        if raw not in ("true", "false"):
            raise invalid(f"{key} must be true or false", key)
        return Clause(param, modifier, (raw == "true",))
    if param.type == "composite":
        return composite_clause(param, raw, key)
    parts = split(raw)
    if not parts:
        raise invalid(f"{key} has no value", key)
    parser: Callable[[str, str], Any] = {"token": _token, "string": _string, "text": _string, "date": _date,
              "reference": _reference, "quantity": _quantity}[param.type]
    if param.type == "reference" and param.targets != ("Patient",):
        parser = typed_reference(param.targets)
    return Clause(param, modifier, tuple(parser(p, key) for p in parts))


def split(raw: str) -> list[str]:
    """Comma-separated alternatives; ``\\,`` is a literal comma (FHIR R4 search 3.1.1.5.7)."""
    parts = re.split(r"(?<!\\),", raw)
    return [p.replace("\\,", ",").strip() for p in parts if p.strip()]


def _token(text: str, key: str) -> tuple[Any, Any]:
    if "|" not in text:
        return ANY, text
    system, _, code = text.partition("|")
    return system, (code if code else ANY)


def _string(text: str, key: str) -> str:
    return normalise(text)


def _reference(text: str, key: str) -> str:
    ref = text.rstrip("/")
    parts = ref.split("/")
    if len(parts) >= 2 and parts[-2] != "Patient":
        raise invalid(f"{key}={text} is not a Patient reference", key)
    return parts[-1]


def _prefix(text: str) -> tuple[str, str]:
    if text[:2] in PREFIXES and not text[:2].isdigit():
        return text[:2], text[2:]
    return "eq", text


def _date(text: str, key: str) -> tuple[str, str, str]:
    prefix, value = _prefix(text)
    found = date_range(value)
    if found is None:
        raise invalid(f"{key}={text} is not a FHIR date (YYYY[-MM[-DD[Thh:mm[:ss][zone]]]])", key)
    if prefix == "ap":
        raise not_supported(400, f"prefix ap is not supported on {key}", key)
    return prefix, found[0], found[1]


def date_matches(prefix: str, q_lo: str, q_hi: str, lo: str, hi: str) -> bool:
    """R4 search 3.1.1.4.2: compare the target's range with the value's range."""
    if prefix == "eq":
        return lo >= q_lo and hi <= q_hi
    if prefix == "ne":
        return not (lo >= q_lo and hi <= q_hi)
    if prefix in ("gt", "sa"):
        return hi > q_hi if prefix == "gt" else lo > q_hi
    if prefix in ("lt", "eb"):
        return lo < q_lo if prefix == "lt" else hi < q_lo
    if prefix == "ge":
        return hi >= q_lo
    return lo <= q_hi  # le


def _quantity(text: str, key: str) -> tuple:
    prefix, rest = _prefix(text)
    number, _, unit = rest.partition("|")
    system, _, code = unit.partition("|") if "|" in unit else ("", "", unit)
    try:  # NaN, Infinity and exponents beyond a float's range are no number to compare
        value = Decimal(number)
        finite = value.is_finite()
        exponent = value.as_tuple().exponent  # an int for a finite number
        half = (Decimal(5).scaleb(exponent - 1) if finite and isinstance(exponent, int)
                else Decimal(0))
        found = (float(value), float(half)) if finite else (math.nan, math.nan)
    except ArithmeticError:  # InvalidOperation; Overflow of the half-step for 1e999999999
        found = (math.nan, math.nan)
    if not all(map(math.isfinite, found)):
        raise invalid(f"{key}={text} is not [prefix]number[|system|code]", key)
    return prefix, found[0], found[1], system or None, code or None


# ------------------------------------------------------------------ composite
_DOLLAR = re.compile(r"(?<!\\)\$")


def composite_clause(param: Param, raw: str, key: str) -> Clause:
    """``a$b[,c$d]``: each alternative gives one value per component (R4 search 3.1.1.4.10);
    ``\\$`` is a literal dollar sign."""
    alternatives = split(raw)
    if not alternatives:
        raise invalid(f"{key} has no value", key)
    form = "$".join(c.name for c in param.components)
    values = []
    for text in alternatives:
        pieces = [p.replace("\\$", "$") for p in _DOLLAR.split(text)]
        if len(pieces) != len(param.components) or not all(p.strip() for p in pieces):
            raise invalid(f"{key}={text} is not {form} (one value per component, joined by $)", key)
        parts = []
        for component, piece in zip(param.components, pieces, strict=True):
            parsed = clause(component, None, piece.replace(",", "\\,"), key).values
            parts.append(parsed[0])
        values.append(tuple(parts))
    return Clause(param, None, tuple(values))


def typed_reference(targets: tuple[str, ...]) -> Callable[[str, str], tuple[str | None, str]]:
    """Parser of a reference parameter pointing at ``targets``: ``id``, ``Type/id`` or a URL."""

    def parse(text: str, key: str) -> tuple[str | None, str]:
        parts = text.rstrip("/").split("/")
        if len(parts) >= 2 and parts[-2] not in targets:
            raise invalid(f"{key}={text} is not a reference to {' or '.join(targets)}", key)
        return (parts[-2] if len(parts) >= 2 else None), parts[-1]

    return parse
