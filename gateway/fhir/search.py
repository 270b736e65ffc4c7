"""The parsing of a search request into clauses (R4 search): the result parameters here, a
parameter's values in values.py, chains and ``_has`` in chains.py.

The supported parameters are the table of :mod:`gateway.clinical.params` (re-exported here);
anything else is a 400 naming the parameter, unless ``Prefer: handling=lenient``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable

from ..clinical.params import (ANY, INCLUDES, PARAMS, STORED, US_CORE_RACE, Clause, Param,
                               date_range, normalise)
from . import chains as C
from .outcome import invalid, not_supported
from .values import MODIFIERS, PREFIXES, clause, date_matches

__all__ = ["ANY", "INCLUDES", "MODIFIERS", "PARAMS", "PREFIXES", "STORED", "US_CORE_RACE",
           "Clause", "Param", "SearchRequest", "date_matches", "date_range", "normalise", "parse"]

RESULT_PARAMS = frozenset({"_count", "_offset", "_include", "_revinclude", "_summary", "_elements",
                           "_total", "_totalMethod", "_format", "_pretty", "_sort"})
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
    sort: tuple = ()  # chains.SortKey, most significant first
    link_params: list[tuple[str, str]] = field(default_factory=list)  # for self/next links
    # Set by the access policy, never by parameters: the patient compartment of a patient/
    # token and the categories of granular scopes (SMART 2.x), applied inside the SQL.
    compartment: str | None = None
    categories: frozenset[str] | None = None
    hidden: frozenset[str] = frozenset()  # restricted collections the caller may not see


def parse(kind: str, args: Iterable[tuple[str, str]], *, lenient: bool = False,
          max_count: int = MAX_COUNT) -> SearchRequest:
    """Validate and parse a search's query parameters (raises FhirError 400 naming the parameter)."""
    request = SearchRequest(kind)
    for key, raw in args:
        name, _, modifier = key.partition(":")
        if name in RESULT_PARAMS:
            _result_param(request, name, modifier, raw, max_count)
        elif C.is_chained(key):
            try:
                request.clauses.append(C.parse_key(kind, key, raw))
            except C.UnknownParameter:
                if not lenient:
                    raise
                request.ignored.append(key)
                continue
        elif name in PARAMS[kind]:
            param = PARAMS[kind][name]
            request.clauses.append(clause(param, modifier or None, raw, key))
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
    if modifier and not (name == "_sort" and modifier in ("asc", "desc")):
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
    elif name == "_sort":
        request.sort = C.add_sort(request.type, request.sort, raw, modifier)
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
