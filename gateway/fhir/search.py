"""The parsing of a search request into clauses (R4 search).

The supported parameters are the table of :mod:`gateway.clinical.params` (re-exported here);
anything else is a 400 naming the parameter, unless ``Prefer: handling=lenient``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Iterable

from ..clinical.params import (ANY, INCLUDES, PARAMS, STORED, Clause, Param, date_range,
                               normalise)
from .outcome import invalid, not_supported

__all__ = ["ANY", "INCLUDES", "PARAMS", "STORED", "Clause", "Param", "SearchRequest", "date_range",
           "normalise", "parse"]

RESULT_PARAMS = frozenset({"_count", "_offset", "_include", "_revinclude", "_summary", "_elements",
                           "_total", "_totalMethod", "_format", "_pretty"})
PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
MODIFIERS = {"token": {"not", "missing"}, "string": {"exact", "contains", "missing"},
             "date": {"missing"}, "quantity": {"missing"}, "reference": {"missing"}}
DEFAULT_COUNT, MAX_COUNT = 50, 1000  # MAX_COUNT: the default of MAX_FHIR_COUNT
MAX_OFFSET = 10**18  # below SQL's 64-bit integers, with room for offset + _count
_DIGITS = re.compile(r"^[0-9]+$")  # ASCII only: str.isdigit() also takes "²"


@dataclass
class SearchRequest:
    type: str
    clauses: list[Clause] = field(default_factory=list)
    count: int = DEFAULT_COUNT
    offset: int = 0
    includes: list[tuple[str, str]] = field(default_factory=list)
    revincludes: list[tuple[str, str]] = field(default_factory=list)
    summary: str | None = None
    elements: tuple[str, ...] = ()
    total: bool = True
    ignored: list[str] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)  # (parameter, what was done)
    link_params: list[tuple[str, str]] = field(default_factory=list)  # for self/next links


def parse(kind: str, args: Iterable[tuple[str, str]], *, lenient: bool = False,
          max_count: int = MAX_COUNT) -> SearchRequest:
    """Validate and parse a search's query parameters (raises FhirError 400 naming the parameter)."""
    request = SearchRequest(kind)
    for key, raw in args:
        name, _, modifier = key.partition(":")
        if name in RESULT_PARAMS:
            _result_param(request, name, modifier, raw, max_count)
        elif name in PARAMS[kind]:
            param = PARAMS[kind][name]
            request.clauses.append(_clause(param, modifier or None, raw, key))
        elif lenient:
            request.ignored.append(key)
            continue
        else:
            raise invalid(f"Unknown search parameter {key!r} for {kind}", key)
        if name not in ("_offset", "_format"):
            request.link_params.append((key, raw))
    return request


def _result_param(request: SearchRequest, name: str, modifier: str, raw: str,
                  max_count: int) -> None:
    if modifier:
        raise invalid(f"{name} takes no modifier", f"{name}:{modifier}")
    if name in ("_count", "_offset"):
        value = paging_number(name, raw)
        if name == "_count":
            request.count = min(value, max_count)
            if value > max_count:  # R4 search, _count: a server may return fewer
                request.warnings.append((name, f"_count={raw[:40]} reduced to {max_count}, "
                                               "this server's maximum (MAX_FHIR_COUNT); "
                                               "follow the next link for more"))
        else:
            request.offset = value
    elif name in ("_include", "_revinclude"):
        source, _, target_param = raw.partition(":")
        param = target_param.split(":")[0]
        if (source, param) not in INCLUDES:
            raise not_supported(400, f"{name}={raw} is not supported", name)
        if name == "_include" and source != request.type:
            raise invalid(f"_include={raw} does not start from {request.type}", name)
        if name == "_revinclude" and INCLUDES[(source, param)] != request.type:
            raise invalid(f"_revinclude={raw} does not point at {request.type}", name)
        (request.includes if name == "_include" else request.revincludes).append((source, param))
    elif name == "_summary":
        if raw not in ("true", "false", "count", "text", "data"):
            raise invalid(f"_summary={raw} is not one of true, false, count, text, data", name)
        request.summary = None if raw == "false" else raw
    elif name == "_elements":
        request.elements = tuple(e.strip() for e in raw.split(",") if e.strip())
    elif name == "_total":
        if raw not in ("none", "estimate", "accurate"):
            raise invalid(f"_total={raw} is not one of none, estimate, accurate", name)
        request.total = raw != "none"


def paging_number(name: str, raw: str) -> int:
    """``_count`` or ``_offset``: ASCII digits; an offset no SQL integer holds is a 400 (a
    count that large is merely reduced to the maximum)."""
    if not _DIGITS.match(raw):
        raise invalid(f"{name} must be a non-negative integer, not {raw[:40]!r}", name)
    digits = raw.lstrip("0") or "0"
    value = int(digits) if len(digits) <= 19 else 10**19
    if name == "_offset" and value > MAX_OFFSET:
        raise invalid(f"{name}={raw[:40]} is larger than {MAX_OFFSET}", name)
    return value


def _clause(param: Param, modifier: str | None, raw: str, key: str) -> Clause:
    if modifier and modifier not in MODIFIERS.get(param.type, ()):
        raise not_supported(400, f"Modifier :{modifier} is not supported on {param.name}", key)
    if modifier == "missing":
        if raw not in ("true", "false"):
            raise invalid(f"{key} must be true or false", key)
        return Clause(param, modifier, (raw == "true",))
    parts = _split(raw)
    if not parts:
        raise invalid(f"{key} has no value", key)
    parser = {"token": _token, "string": _string, "date": _date, "reference": _reference,
              "quantity": _quantity}[param.type]
    return Clause(param, modifier, tuple(parser(p, key) for p in parts))


def _split(raw: str) -> list[str]:
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
    try:
        value = Decimal(number)
    except InvalidOperation:
        raise invalid(f"{key}={text} is not [prefix]number[|system|code]", key) from None
    exponent = value.as_tuple().exponent
    half = Decimal(5).scaleb(exponent - 1) if isinstance(exponent, int) else Decimal(0)
    return prefix, float(value), float(half), system or None, code or None
