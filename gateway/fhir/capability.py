"""The CapabilityStatement: generated from the search parameter table, so it lists exactly
what the server does (read + search-type per resource, Patient/$everything)."""
from __future__ import annotations

import datetime as dt

import orjson

from ..clinical.resources import FHIR_VERSION
from .search import INCLUDES, PARAMS

_TYPES = {"token": "token", "string": "string", "date": "date", "reference": "reference",
          "quantity": "quantity"}
STARTED = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def capability_json(base: str, version: str) -> bytes:
    """The statement as sent: it changes only with the base and the software version (the
    FHIR service keeps one per public base)."""
    return orjson.dumps(capability_statement(base, version))


def capability_statement(base: str, version: str) -> dict:
    resources = []
    for kind, params in PARAMS.items():
        entry = {
            "type": kind,
            "interaction": [{"code": "read"}, {"code": "search-type"}],
            "versioning": "versioned",
            "readHistory": False,
            "searchParam": [{"name": p.name, "type": _TYPES[p.type],
                             **({"documentation": p.doc} if p.doc else {})} for p in params.values()],
        }
        includes = [f"{src}:{param}" for (src, param) in INCLUDES if src == kind]
        revincludes = [f"{src}:{param}" for (src, param), target in INCLUDES.items() if target == kind]
        if includes:
            entry["searchInclude"] = includes
        if revincludes:
            entry["searchRevInclude"] = revincludes
        if kind == "Patient":
            entry["operation"] = [{"name": "everything",
                                   "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything"}]
        resources.append(entry)
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": STARTED,
        "publisher": "tcia-gateway",
        "kind": "instance",
        "software": {"name": "tcia-gateway", "version": version},
        "implementation": {"description": "tcia-gateway FHIR R4 API", "url": base},
        "fhirVersion": FHIR_VERSION,
        "format": ["application/fhir+json", "json"],
        "rest": [{
            "mode": "server",
            "documentation": "Read-only. Search parameters as listed; _count, _offset, _include, "
                             "_revinclude, _summary, _elements, _total; Prefer: handling=lenient.",
            "resource": resources,
            "searchParam": [{"name": "_count", "type": "number"}, {"name": "_offset", "type": "number"}],
        }],
    }
