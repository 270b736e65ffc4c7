"""What a resource contributes to the search tables: pure functions of its JSON.

Read from the parameter table (params.PARAMS): each parameter's element paths give index rows
(token system/code, normalised string, number, date range, reference type/id) and, for text
parameters, whole normalised texts. The patient compartment and the id are columns of the
resource row instead, and a composite is searched through its components' rows.
"""
from __future__ import annotations

import json
from typing import Any, Iterable

from . import params as S


def patient_of(resource: dict) -> str | None:
    """The patient compartment a resource belongs to (the Patient itself, or its subject)."""
    if resource["resourceType"] == "Patient":
        return resource["id"]
    for key in ("subject", "patient", "individual"):  # individual: ResearchSubject
        ref = (resource.get(key) or {}).get("reference", "")
        if ref.startswith("Patient/"):
            return ref.split("/", 1)[1]
    return None


def index_rows(resource: dict) -> list[dict]:
    """The search-index rows of a resource, from the parameter table (params.PARAMS)."""
    rows: list[dict] = []
    for param, value in _param_values(resource):
        if param.type != "text":
            rows += [{"param": param.name, **r} for r in _index_values(param.type, value)]
    return rows


def text_rows(resource: dict) -> list[dict]:
    """The text-search rows of a resource (parameters of type text, e.g. ``_content``)."""
    return [{"param": param.name, "value": S.normalise(value)}
            for param, value in _param_values(resource)
            if param.type == "text" and isinstance(value, str) and value.strip()]


def _param_values(resource: dict) -> Iterable[tuple[S.Param, Any]]:
    """(parameter, element value) pairs; the patient compartment and ids are columns, and a
    composite is searched through its components' rows."""
    for param in S.PARAMS.get(resource["resourceType"], {}).values():
        if param.name == "_id" or param.type == "composite" or (
                param.type == "reference" and param.targets == ("Patient",)):
            continue
        for path in param.paths:
            for value in _values(resource, path.split("."), param.url):
                yield param, value


def _values(node: Any, parts: list[str], url: str | None = None) -> Iterable[Any]:
    if isinstance(node, list):
        for item in node:
            yield from _values(item, parts, url)
    elif not parts:
        yield node
    elif isinstance(node, dict) and parts[0] in node:
        child = node[parts[0]]
        if url is not None and parts[0] == "extension":  # extension(url): that one only
            child = [e for e in child if isinstance(e, dict) and e.get("url") == url]
            url = None
        yield from _values(child, parts[1:], url)


def _index_values(kind: str, value: Any) -> list[dict]:
    if kind == "token":
        if isinstance(value, dict) and "coding" in value:
            return [{"system": c.get("system"), "value": c.get("code")} for c in value["coding"]]
        if isinstance(value, dict):  # Coding or Identifier
            return [{"system": value.get("system"), "value": value.get("code", value.get("value"))}]
        return [{"system": None, "value": json.dumps(value) if isinstance(value, bool) else str(value)}]
    if kind == "string":
        if isinstance(value, dict):  # HumanName
            parts = [value.get("text"), value.get("family"), *value.get("given", [])]
            return [{"value": S.normalise(p)} for p in parts if p]
        return [{"value": S.normalise(value)}]
    if kind == "date":
        if isinstance(value, dict):  # Period: an open end is unbounded (R4 search 3.1.1.4.2)
            start, end = _date_index(value.get("start")), _date_index(value.get("end"))
            if start is None and end is None:
                return []
            return [{"lo": start[0] if start else _MIN_DATE, "hi": end[1] if end else _MAX_DATE}]
        found = _date_index(value)
        return [{"lo": found[0], "hi": found[1]}] if found else []
    if kind == "reference" and isinstance(value, dict):
        target, _, rid = str(value.get("reference", "")).rpartition("/")
        return [{"system": target.rpartition("/")[2], "value": rid}] if target and rid else []
    if kind == "quantity" and isinstance(value, dict) and "value" in value:
        return [{"num": float(value["value"]), "system": value.get("system"), "value": value.get("code")}]
    return []


_MIN_DATE, _MAX_DATE = "0001-01-01T00:00:00.000000", "9999-12-31T23:59:59.999999"


def _date_index(value: Any) -> tuple[str, str] | None:
    if value is None:
        return None
    return S.date_range(str(value)[:19] if "T" in str(value) else str(value))
