"""What the FHIR routes ask for: read, search (with includes and paging), $everything.

Stored resources come from the repository; ImagingStudy and Endpoint from the archive
(imaging.py). Every answer is bytes ready to send, or a FhirError.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, NamedTuple

import orjson

from ..archive.protocol import Archive
from . import bundle
from .capability import capability_json
from . import search as S
from ..cache import BoundedCache
from .results import ResultCache
from .imaging import ImagingBuilder
from .outcome import invalid, not_found
from .plan import Planner, SearchPlan
from ..clinical.repository import Repository, Stored
from ..clinical.resources import is_resource_type
from .studies import StudyIndex

ARCHIVE_TYPES = ("ImagingStudy", "Endpoint")
EVERYTHING_PARAMS = frozenset({"_count", "_offset", "_type", "_format", "_pretty"})


class Match(NamedTuple):
    """A resource in a result; the repository's search rows have the same shape (plain tuples)."""

    type: str
    id: str
    body: bytes
    patient_id: str | None


@dataclass(frozen=True)
class ReadResult:
    body: bytes
    version: str
    last_updated: str | None
    patient_id: str | None = None


@dataclass(frozen=True)
class Caller:
    """What the access policy lets this caller see (docs/security.md): a patient
    compartment, the categories of granular scopes, and which types it may read (for
    _include, _revinclude and $everything). The default sees everything."""

    patient: str | None = None
    categories: frozenset[str] | None = None
    may_read: Callable[[str], bool] | None = None
    hidden: frozenset[str] = frozenset()

    @property
    def restriction(self) -> tuple[str | None, frozenset[str] | None, frozenset[str]]:
        return self.patient, self.categories, self.hidden

    def sees(self, match: Match) -> bool:
        """Whether an included or $everything resource is this caller's to see."""
        if self.patient is not None and match.type != "Endpoint" \
                and match.patient_id != self.patient:
            return False
        return self.may_read is None or self.may_read(match.type)

    def sees_read(self, kind: str, patient_id: str | None, body: bytes) -> bool:
        if self.patient is not None and kind != "Endpoint" and patient_id != self.patient:
            return False
        return self.categories is None or _in_categories(body, self.categories)


EVERYONE = Caller()


def _in_categories(body: bytes, categories: frozenset[str]) -> bool:
    """Whether a resource has one of ``categories`` (FHIR token: system|code or code)."""
    resource = orjson.loads(body)
    found = [f"{c.get('system', '')}|{c.get('code', '')}"
             for concept in resource.get("category") or [] for c in concept.get("coding") or []]
    return any(t == token or ("|" not in token and t.rsplit("|", 1)[1] == token)
               for t in found for token in categories)


def _from_stored(row: Stored) -> Match:
    return Match(row.type, row.id, row.body, row.patient_id)


def _from_dict(resource: dict) -> Match:
    ref = (resource.get("subject") or {}).get("reference", "")
    pid = ref.split("/", 1)[1] if ref.startswith("Patient/") else None
    return Match(resource["resourceType"], resource["id"], orjson.dumps(resource), pid)


class Searched(NamedTuple):
    """A search's answer and the patients it touched (for the audit record)."""

    body: bytes
    patients: tuple[str, ...] = ()


class FhirService:
    def __init__(self, repository: Repository, imaging: ImagingBuilder,
                 studies: StudyIndex | None = None, *, max_count: int = S.MAX_COUNT,
                 cache_items: int = 2048, cache_bytes: int = 16 << 20) -> None:
        """``studies``: ImagingStudy searched on the embedded archive's index tables (chains
        and _has then work on it); None for a remote PACS (C-FIND through the archive)."""
        self.repository = repository
        self.imaging = imaging
        self.studies = studies
        self.max_count = max_count  # MAX_FHIR_COUNT
        self.planner = Planner(repository, self.check_type, studies=studies, size=cache_items,
                               max_count=max_count)
        self.results = ResultCache(repository.generation, max_entries=cache_items,
                                   max_bytes=cache_bytes)
        self.capabilities: BoundedCache[tuple, bytes] = BoundedCache(16)  # by public base

    def capability(self, base: str, version: str, security: dict | None = None,
                   audit: bool = False) -> bytes:
        """The CapabilityStatement for ``base`` (a few behind TRUST_PROXY), built once each."""
        key = (base, orjson.dumps(security) if security is not None else b"", audit)
        return self.capabilities.get_or_put(
            key, lambda: capability_json(base, version, self.studies is not None, security, audit))

    @staticmethod
    def check_type(kind: str) -> None:
        if kind not in S.PARAMS:
            what = "is not supported here" if is_resource_type(kind) else "is not a FHIR resource type"
            raise not_found(f"Resource type {kind!r} {what}")

    # ------------------------------------------------------------------- read
    def read(self, archive: Archive, kind: str, rid: str, caller: Caller = EVERYONE) -> ReadResult:
        """Another patient's resource answers exactly like an unknown id (no existence leak)."""
        self.check_type(kind)
        if kind in ARCHIVE_TYPES:
            found = (self.imaging.read(archive, rid) if kind == "ImagingStudy"
                     else self.imaging.endpoint() if rid == self.imaging.endpoint_id else None)
            if found is not None:
                match = _from_dict(found)
                if caller.sees_read(kind, match.patient_id, match.body):
                    return ReadResult(match.body, found["meta"]["versionId"], None,
                                      match.patient_id)
        else:
            row = self.repository.read(kind, rid)
            if row is not None and caller.sees_read(kind, row.patient_id, row.body):
                return ReadResult(row.body, str(row.version), row.last_updated, row.patient_id)
        raise not_found(f"{kind}/{rid} is not known")

    # ----------------------------------------------------------------- search
    def search(self, archive: Archive, kind: str, args: Callable[[], list[tuple[str, str]]], *,
               base: str, lenient: bool, raw_query: bytes | None = None,
               caller: Caller = EVERYONE) -> Searched:
        """``args`` gives the parameters, asked for only to plan a search not seen before (by
        ``raw_query``, the undecoded query string of a GET, or else by the parameters).
        ``caller``'s limits are inside the SQL and part of the plan's (and result's) key."""
        plan = self.planner.plan(kind, args, base, lenient, raw_query, caller.restriction)
        token = self.results.token() if plan.cacheable else None  # before the query runs
        if token is None:
            found = self._search(archive, plan, base, caller)
            return Searched(bundle.with_id(found.body), found.patients)
        hit = self.results.get(plan, token)
        if hit is None:
            hit = self._search(archive, plan, base, caller)
            self.results.put(plan, token, hit)
        return Searched(bundle.with_id(hit.body), hit.patients)

    def _search(self, archive: Archive, plan: SearchPlan, base: str, caller: Caller) -> Searched:
        """The Bundle after its id (``bundle.with_id`` adds one per response)."""
        request = plan.request
        matches, total = self._matches(archive, plan)
        entries = plan.entries(matches)
        patients = [m[3] for m in matches]
        if request.includes or request.revincludes:
            included = [m for m in self._included(archive, request, matches) if caller.sees(m)]
            patients += [m.patient_id for m in included]
            entries += [bundle.entry(base, m.type, m.id, bundle.shape(m.body, request), "include")
                        for m in included]
        if plan.ignored_entry is not None:
            entries.append(plan.ignored_entry)
        body = bundle.searchset_tail(entries, total if request.total else None, plan.links(total))
        return Searched(body, tuple(dict.fromkeys(p for p in patients if p)))

    def _matches(self, archive: Archive, plan: SearchPlan) -> tuple[list[tuple], int]:
        """(type, id, body, patient_id) rows of one page, and the total."""
        if plan.query is not None:
            return self.repository.run(plan.query)
        request = plan.request
        if request.type == "ImagingStudy":
            studies, total = (self.studies.search(plan.imaging)
                              if plan.imaging is not None and self.studies is not None
                              else self.imaging.search(archive, request))
            return [_from_dict(s) for s in studies], total
        found = self.imaging.endpoints(request)
        page = found[request.offset: request.offset + request.count] if request.count else []
        return [_from_dict(r) for r in page], len(found)

    def _included(self, archive: Archive, request: S.SearchRequest,
                  rows: list[tuple]) -> list[Match]:
        matches = [Match(*r) for r in rows]
        seen = {(m.type, m.id) for m in matches}
        out: list[Match] = []
        pids = [m.patient_id for m in matches if m.patient_id]
        for source, param in request.includes:
            target = S.INCLUDES[(source, param)]
            if target == "Patient":
                out += [_from_stored(r) for r in self.repository.patients(pids)]
            elif matches:
                out.append(_from_dict(self.imaging.endpoint()))
        ids = [m.id for m in matches]
        for source, param in request.revincludes:
            if source == "ImagingStudy" and param == "endpoint":
                raise invalid("_revinclude=ImagingStudy:endpoint is not supported", "_revinclude")
            if source == "ImagingStudy":
                out += [_from_dict(s) for s in self.imaging.for_patients(archive, ids)]
            else:
                out += [_from_stored(r) for r in self.repository.of_patients(ids, [source])]
        unique = []
        for m in out:
            if (m.type, m.id) not in seen:
                seen.add((m.type, m.id))
                unique.append(m)
        return unique

    # ------------------------------------------------------------- everything
    def everything(self, archive: Archive, pid: str, args: Iterable[tuple[str, str]], *,
                   base: str, lenient: bool, caller: Caller = EVERYONE) -> bytes:
        """Patient/$everything: the patient, its stored resources, its studies and the Endpoint."""
        count, offset, types, link_params = self.max_count, 0, None, []
        for key, raw in args:
            if key not in EVERYTHING_PARAMS:
                if lenient:
                    continue
                raise invalid(f"Unknown parameter {key!r} for $everything", key)
            if key in ("_count", "_offset"):
                value = S.paging_number(key, raw)
                count, offset = (min(value, self.max_count), offset) if key == "_count" \
                    else (count, value)
            elif key == "_type":
                types = {t.strip() for t in raw.split(",") if t.strip()}
            if key not in ("_offset", "_format"):
                link_params.append((key, raw))
        if caller.patient is not None and pid != caller.patient:
            raise not_found(f"Patient/{pid} is not known")  # as for an unknown id
        patient = self.repository.read("Patient", pid)
        studies = self.imaging.for_patients(archive, [pid])
        if patient is None and not studies:
            raise not_found(f"Patient/{pid} is not known")
        items = [_from_stored(r) for r in self.repository.of_patients([pid])]
        items.sort(key=lambda m: m.type != "Patient")
        items += [_from_dict(s) for s in studies]
        if studies:
            items.append(_from_dict(self.imaging.endpoint()))
        if types is not None:
            items = [m for m in items if m.type in types]
        if caller.may_read is not None:
            items = [m for m in items if caller.sees(m)]
        page = items[offset: offset + count]
        path = f"Patient/{pid}/$everything"
        links = [("self", bundle.link_url(base, path, link_params, offset))]
        if offset + count < len(items):
            links.append(("next", bundle.link_url(base, path, link_params, offset + count)))
        entries = [bundle.entry(base, m.type, m.id, m.body) for m in page]
        return bundle.searchset(entries, total=len(items), links=links)
