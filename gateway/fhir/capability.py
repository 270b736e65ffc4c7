"""The CapabilityStatement: generated from the search parameter table, so it lists exactly
what the server does (read + search-type per resource, Patient/$everything): the parameters,
which reference parameters chain (documentation), the ``_has`` sources and ``_sort`` keys."""
from __future__ import annotations

import datetime as dt

import orjson

from ..clinical.resources import FHIR_VERSION
from . import chains as C
from .search import INCLUDES, PARAMS, STORED, Param

_TYPES = {"token": "token", "string": "string", "date": "date", "reference": "reference",
          "quantity": "quantity", "text": "string", "composite": "composite"}
BULK = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/"
STARTED = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def capability_json(base: str, version: str, joins: bool = True,
                    security: dict | None = None, audit: bool = False) -> bytes:
    """The statement as sent: it changes only with the base, the software version, whether
    ImagingStudy can join clinical data (the embedded archive, not a remote PACS) and the
    access control (``security``: rest.security; ``audit``: /AuditEvent is searchable);
    the FHIR service keeps one per public base."""
    statement = capability_statement(base, version, joins)
    rest = statement["rest"][0]
    if security is not None:
        rest["security"] = security
    if audit:
        rest["resource"].append(AUDIT_EVENT)
    return orjson.dumps(statement)


AUDIT_EVENT = {
    "type": "AuditEvent", "interaction": [{"code": "search-type"}],
    "documentation": "The gateway's audit trail (IHE BALP); needs user/AuditEvent.rs or "
                     "system/AuditEvent.rs",
    "searchParam": [{"name": "patient", "type": "reference"}, {"name": "agent", "type": "reference"},
                    {"name": "date", "type": "date"}, {"name": "outcome", "type": "token"}],
}


def search_params(kind: str, joins: bool = True) -> list[dict]:
    """A type's searchParam list: its parameters, ``_has`` when something refers to it, ``_sort``."""
    chains = joins or kind != "ImagingStudy"
    out = [{"name": p.name, "type": _TYPES[p.type],
            **({"documentation": _documentation(p, chains)} if p.doc or _chainable(p, chains) else {})}
           for p in PARAMS[kind].values()]
    sources = [f"_has:{src}:{p.name}:<{src} parameter>" for src in STORED
               for p in PARAMS[src].values() if p.type == "reference" and kind in p.targets]
    if sources and chains:
        out.append({"name": "_has", "type": "special",
                    "documentation": "Reverse chain (R4 search 3.1.1.4.9): " + ", ".join(sources)})
    out.append({"name": "_sort", "type": "special", "documentation": "Sort keys, comma-separated, "
                "'-' descending, missing values last, then storage order: "
                + ", ".join(C.sort_names(kind))})
    return out


def _chainable(param: Param, chains: bool) -> bool:
    return chains and param.type == "reference" and any(t in C.CHAIN_TARGETS for t in param.targets)


def _documentation(param: Param, chains: bool) -> str:
    if not _chainable(param, chains):
        return param.doc
    chain = f"chains: {param.name}.<{' or '.join(param.targets)} parameter>, including _has"
    return f"{param.doc}; {chain}" if param.doc else chain


def capability_statement(base: str, version: str, joins: bool = True) -> dict:
    resources = []
    for kind in PARAMS:
        entry = {
            "type": kind,
            "interaction": [{"code": "read"}, {"code": "search-type"}],
            "versioning": "versioned",
            "readHistory": False,
            "searchParam": search_params(kind, joins),
        }
        includes = [f"{src}:{param}" for (src, param) in INCLUDES if src == kind]
        revincludes = [f"{src}:{param}" for (src, param), target in INCLUDES.items() if target == kind]
        if includes:
            entry["searchInclude"] = includes
        if revincludes:
            entry["searchRevInclude"] = revincludes
        if kind == "Patient":
            entry["operation"] = [{"name": "everything",
                                   "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything"},
                                  {"name": "export", "definition": BULK + "patient-export"}]
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
            "documentation": "Read-only. Search parameters as listed, chained and reverse-chained "
                             "(_has) as documented on each; _sort, _count, _offset, _include, "
                             "_revinclude, _summary, _elements, _total; Prefer: handling=lenient.",
            "resource": resources,
            "searchParam": [{"name": "_count", "type": "number"}, {"name": "_offset", "type": "number"}],
            # Bulk Data Access 2.0 (export.py); Group/{id}/$export and Group read/create are the
            # cohorts' (fhir/group.py, docs/cohorts.md)
            "operation": [{"name": "export", "definition": BULK + "export"}],
        }],
    }
