"""Search plans: everything about a search that depends on the request alone, worked out once.

A plan is the parsed request, its SQL (stored types), its links and the bytes that frame each
entry. Clients repeat the same searches (paging, polling, a viewer's patient panel), so plans
are kept in a bounded map keyed by the raw request; a repeated search then costs one dict
lookup, one SQL statement on the driver's cursor and a bytes join (or no SQL at all when its
result is still cached: cache.py). Plans hold no resource data, so nothing needs invalidating
when resources change; a request that does not parse is never kept (it raises again, the same
way, each time).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import orjson

from ..cache import BoundedCache
from . import bundle
from . import search as S
from .outcome import issue, outcome
from ..clinical.repository import CompiledSearch, Repository
from .sqlsearch import compile_search
from .studies import StudyIndex, refuse_joins

MAX_PLANS = 2048  # distinct recent searches kept per worker (a few hundred bytes each)
MAX_KEPT_QUERY = 1024  # characters of parameters: a longer search is planned every time
# (compartment, categories, hidden collections)
Restriction = tuple[str | None, frozenset[str] | None, frozenset[str]]
UNRESTRICTED: Restriction = (None, None, frozenset())
PlanKey = tuple[str, bytes | tuple[tuple[str, str], ...] | None, str, bool, Restriction]


@dataclass(frozen=True, slots=True, eq=False)  # eq=False: hashed by identity (a cache key)
class SearchPlan:
    """A parsed search and its prepared parts. ``request`` must not be changed once planned."""

    request: S.SearchRequest
    query: CompiledSearch | None  # None for the archive-built types (ImagingStudy, Endpoint)
    entry_prefix: bytes           # '{"fullUrl":"<base>/<type>/' of the matches
    shaped: bool                  # _summary/_elements: each body is re-serialised
    self_link: bytes
    next_link: bytes | None       # sent when offset + count < total
    previous_link: bytes | None
    ignored_entry: bytes | None   # unknown parameters ignored (lenient), limits applied
    cacheable: bool               # kept, stored resources only, no includes: see cache.py
    imaging: CompiledSearch | None = None  # ImagingStudy on the embedded archive's tables

    def entries(self, rows: Iterable[tuple]) -> list[bytes]:
        """Match entries from (type, id, body, …) rows of this plan's type."""
        prefix, tail = self.entry_prefix, bundle.MATCH_TAIL
        if self.shaped:
            return [prefix + r[1].encode() + b'","resource":' + bundle.shape(r[2], self.request) + tail
                    for r in rows]
        return [prefix + r[1].encode() + b'","resource":' + r[2] + tail for r in rows]

    def links(self, total: int) -> list[bytes]:
        request = self.request
        links = [self.self_link]
        if self.next_link is not None and request.offset + request.count < total:
            links.append(self.next_link)
        if self.previous_link is not None:
            links.append(self.previous_link)
        return links


class Planner:
    """Parses and prepares searches, keeping the most recent plans."""

    def __init__(self, repository: Repository, check_type: Callable[[str], None],
                 size: int = MAX_PLANS, studies: StudyIndex | None = None,
                 max_count: int = S.MAX_COUNT) -> None:
        self.repository = repository
        self.studies = studies  # None: ImagingStudy comes from a remote PACS
        self.check_type = check_type
        self.size = size
        self.max_count = max_count  # MAX_FHIR_COUNT
        self._plans: BoundedCache[PlanKey, SearchPlan] = BoundedCache(size)

    def plan(self, kind: str, args: Callable[[], list[tuple[str, str]]], base: str,
             lenient: bool, raw_query: bytes | None = None,
             restriction: Restriction = UNRESTRICTED) -> SearchPlan:
        """The plan of a search, by ``raw_query`` when given (a GET's query string: the same
        bytes always decode to the same parameters), else by the parameters themselves;
        ``restriction`` is part of the key, so callers with other limits never share a plan
        (nor, through it, a cached result)."""
        params = None if raw_query is not None else args()
        key = (kind, raw_query if params is None else tuple(params), base, lenient, restriction)
        found = self._plans.get(key)
        if found is None:
            params = args() if params is None else params
            keep = sum(len(k) + len(v) for k, v in params) <= MAX_KEPT_QUERY
            found = self._build(kind, params, base, lenient, keep, restriction)
            if not keep:  # bounds what a stream of odd, long queries can pin in memory
                return found
            self._plans.put(key, found)
        return found

    def _build(self, kind: str, args: list[tuple[str, str]], base: str, lenient: bool,
               keep: bool, restriction: Restriction = UNRESTRICTED) -> SearchPlan:
        self.check_type(kind)
        request = S.parse(kind, args, lenient=lenient, max_count=self.max_count)
        request.compartment, request.categories, request.hidden = restriction
        if request.summary == "count":
            request.count = 0
        query = (compile_search(request, self.repository.bind_style)
                 if kind in S.STORED else None)
        imaging = None
        if kind == "ImagingStudy" and self.studies is not None:
            imaging = self.studies.compile(request)
        elif kind == "ImagingStudy":
            refuse_joins(request)
        count, offset, params = request.count, request.offset, request.link_params
        return SearchPlan(
            request=request, query=query, entry_prefix=bundle.entry_prefix(base, kind),
            shaped=bool(request.elements) or request.summary not in (None, "count"),
            self_link=bundle.link("self", bundle.link_url(base, kind, params, offset)),
            next_link=bundle.link("next", bundle.link_url(base, kind, params, offset + count))
            if count else None,
            previous_link=bundle.link("previous", bundle.link_url(
                base, kind, params, max(0, offset - count))) if offset and count else None,
            ignored_entry=_outcome_entry(request) if request.ignored or request.warnings
            else None,
            cacheable=keep and query is not None and not request.includes and not request.revincludes,
            imaging=imaging)


def _outcome_entry(request: S.SearchRequest) -> bytes:
    """Warnings about the search itself: parameters ignored, limits applied."""
    issues = [issue("warning", "not-supported", f"Unknown search parameter {p!r} ignored "
                                                "(Prefer: handling=lenient)", p)
              for p in request.ignored]
    issues += [issue("warning", "informational", text, p) for p, text in request.warnings]
    return b'{"resource":' + orjson.dumps(outcome(issues)) + b',"search":{"mode":"outcome"}}'
