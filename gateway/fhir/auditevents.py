"""`GET /fhir/AuditEvent`: the audit trail searched by `patient`, `agent`, `date`, `outcome`
(FHIR R4 AuditEvent search parameters), newest first, paged with `_count`/`_offset`.
The store (gateway/audit/store.py) answers; this module parses and wraps in a Bundle."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import orjson

from ..audit.store import AuditQuery, AuditStore
from . import bundle
from . import search as S
from .outcome import invalid

PARAMS = frozenset({"patient", "agent", "date", "outcome", "_count", "_offset", "_format",
                    "_pretty"})
DEFAULT_COUNT, MAX_COUNT = 100, 1000


def search(store: AuditStore, args: Iterable[tuple[str, str]], base: str) -> bytes:
    items = list(args)
    query = parse(items)
    found = store.search(query)
    total = store.count(query)
    params = [(k, v) for k, v in items if k not in ("_offset", "_format")]
    links = [("self", bundle.link_url(base, "AuditEvent", params, query.offset))]
    if query.offset + query.limit < total:
        links.append(("next", bundle.link_url(base, "AuditEvent", params,
                                              query.offset + query.limit)))
    entries = [bundle.entry(base, "AuditEvent", e["id"], orjson.dumps(e)) for e in found]
    return bundle.searchset(entries, total=total, links=links)


def parse(items: list[tuple[str, str]]) -> AuditQuery:
    values: dict = {"limit": DEFAULT_COUNT, "offset": 0}
    outcomes: list[int] = []
    for key, raw in items:
        if key not in PARAMS:
            raise invalid(f"Unknown search parameter {key!r} for AuditEvent", key)
        if key == "patient":
            values["patient"] = raw.removeprefix("Patient/")
        elif key == "agent":
            values["agent"] = raw
        elif key == "outcome":
            for code in raw.split(","):
                if code.strip() not in ("0", "4", "8", "12"):
                    raise invalid(f"outcome={raw} is not one of 0, 4, 8, 12", key)
                outcomes.append(int(code))
        elif key == "date":
            _date(values, raw)
        elif key == "_count":
            values["limit"] = min(S.paging_number(key, raw), MAX_COUNT)
        elif key == "_offset":
            values["offset"] = S.paging_number(key, raw)
    return AuditQuery(outcome=tuple(outcomes), **values)


def _date(values: dict, raw: str) -> None:
    """`date=ge2026-01-01`, `lt...T12:00:00Z`, or a day/moment without a prefix (eq)."""
    prefix, text = (raw[:2], raw[2:]) if raw[:2] in ("ge", "gt", "le", "lt", "eq") else ("eq", raw)
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise invalid(f"date={raw} is not a FHIR date or dateTime", "date") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    day_only = len(text) == 10
    end = moment + (dt.timedelta(days=1) if day_only else dt.timedelta(milliseconds=1))
    if prefix in ("ge", "eq"):
        values["since"] = moment
    if prefix == "gt":
        values["since"] = end
    if prefix in ("lt",):
        values["until"] = moment
    if prefix in ("le", "eq"):
        values["until"] = end
