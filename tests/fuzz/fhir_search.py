"""Fuzz the FHIR R4 search parser (FHIR R4 3.1.1: parameters, modifiers, prefixes).

Input: byte 0 picks the resource type and lenient handling, the rest is the query
string (0xFF: the rest is one date value, 0xFE: one quantity). Contract: a SearchRequest whose paging is in range and whose date and quantity
values are well-formed, or FhirError with a 4xx status; never another exception.
"""
from __future__ import annotations

import datetime as dt
import math
from typing import Any
from urllib.parse import parse_qsl

from tests.fuzz._harness import instrumented, ints, main

with instrumented(__name__):
    from gateway.fhir import chains, search
    from gateway.fhir.outcome import FhirError

KINDS = tuple(search.PARAMS)


def check(data: bytes) -> None:
    (selector,), rest = ints(data, 1)
    if selector == 0xFF:  # one date value, with or without prefix, straight to the parser
        _one_value("birthdate", rest.decode("utf-8", "replace"))
        return
    if selector == 0xFE:
        _one_value("value-quantity", rest.decode("utf-8", "replace"))
        return
    kind = KINDS[(selector >> 1) % len(KINDS)]
    args = parse_qsl(rest.decode("utf-8", "replace"), keep_blank_values=True, errors="replace")
    try:
        request = search.parse(kind, args, lenient=bool(selector & 1))
    except FhirError as exc:
        assert 400 <= exc.status < 500 and exc.message, (exc.status, exc.message)
        return
    assert 0 <= request.count <= search.MAX_COUNT and request.offset >= 0
    for criterion in request.clauses:
        clause = _innermost(criterion)
        for value in clause.values:
            _valid(clause.param.type, clause.modifier, value)


def _innermost(criterion: object) -> Any:
    """A chain or ``_has`` ends in one plain clause (chains.Criterion)."""
    while isinstance(criterion, (chains.Chain, chains.Has)):
        criterion = criterion.inner
    return criterion


def _one_value(name: str, value: str) -> None:
    kind = "Patient" if name == "birthdate" else "Observation"
    try:
        request = search.parse(kind, [(name, value)])
    except FhirError as exc:
        assert 400 <= exc.status < 500 and exc.message, (exc.status, exc.message)
        return
    for clause in request.clauses:
        for item in clause.values:
            _valid(clause.param.type, clause.modifier, item)


def _valid(kind: str, modifier: str | None, value: object) -> None:
    if modifier == "missing":
        assert value in (True, False)
    elif kind == "date":
        prefix, lo, hi = value  # type: ignore[misc]
        assert prefix in search.PREFIXES and dt.datetime.fromisoformat(lo) <= \
            dt.datetime.fromisoformat(hi), value
    elif kind == "quantity":
        prefix, number, half, _system, _code = value  # type: ignore[misc]
        assert prefix in search.PREFIXES and math.isfinite(number) and math.isfinite(half), value


if __name__ == "__main__":
    main(check)
