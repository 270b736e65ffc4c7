"""A scoped view of the embedded archive (``LocalArchive.scoped``).

Every read runs the archive's own statement with the scope's WHERE inside it
(:mod:`.scoping`): what lies outside answers like what does not exist, with the same
words; a search's matches, paging and counts are those of the narrowed archive. Every write
is refused (0x0124 Refused: Not Authorised, nothing stored) when the instance, or the study
or instance it would join or replace, lies outside.
"""
from __future__ import annotations

from typing import Iterator, Protocol, Sequence

from ..files import Spool
from ..protocol import Archive, Query, SearchResult, Source, StoredInstance, StoreResult, UidPath
from ..scope import Scope
from .index import Index


class Narrowable(Protocol):
    """What the view needs of ``LocalArchive`` (its methods that take a scope)."""

    index: Index

    def scoped(self, scope: Scope) -> Archive: ...
    def search(self, query: Query, scope: Scope = ...) -> SearchResult: ...
    def instances(self, where: UidPath, scope: Scope = ...) -> Iterator[StoredInstance]: ...
    def instance(self, where: UidPath, scope: Scope = ...) -> StoredInstance: ...
    def metadata(self, where: UidPath, scope: Scope = ...) -> bytes: ...
    def spool(self) -> Spool: ...
    def ping(self) -> None: ...
    def collections(self, scope: Scope = ...) -> dict[str, dict[str, int]]: ...
    def has_collection(self, name: str, scope: Scope = ...) -> bool: ...
    def study_collections(self, study_uids: Sequence[str]) -> dict[str, str]: ...
    def materialize(self, where: UidPath, scope: Scope = ...) -> None: ...

    def store(self, source: Source, *, expected_study: str | None = ..., move: bool = ...,
              scope: Scope = ...) -> StoreResult: ...

    def store_batch(self, sources: Sequence[Source], *, expected_study: str | None = ...,
                    move: bool = ..., scope: Scope = ...) -> list[StoreResult]: ...


class ScopedLocal:
    """``LocalArchive`` as ``scope`` sees it. Owns nothing: closing it closes nothing."""

    def __init__(self, archive: Narrowable, scope: Scope) -> None:
        self.archive = archive
        self.scope = scope

    def scoped(self, scope: Scope) -> Archive:
        return self.archive.scoped(self.scope.narrow(scope))

    def search(self, query: Query) -> SearchResult:
        return self.archive.search(query, self.scope)

    def instances(self, where: UidPath) -> Iterator[StoredInstance]:
        return self.archive.instances(where, self.scope)

    def instance(self, where: UidPath) -> StoredInstance:
        return self.archive.instance(where, self.scope)

    def metadata(self, where: UidPath) -> bytes:
        return self.archive.metadata(where, self.scope)

    def collections(self) -> dict[str, dict[str, int]]:
        return self.archive.collections(self.scope)

    def has_collection(self, name: str) -> bool:
        return self.archive.has_collection(name, self.scope)

    def study_collections(self, study_uids: Sequence[str]) -> dict[str, str]:
        return self.archive.study_collections(study_uids)

    def materialize(self, where: UidPath) -> None:
        self.archive.materialize(where, self.scope)

    def counts(self) -> dict[str, int]:
        """Patients, studies, series and instances in the view."""
        return self.archive.index.counts(self.scope)

    def spool(self) -> Spool:
        return self.archive.spool()

    def store(self, source: Source, *, expected_study: str | None = None,
              move: bool = False) -> StoreResult:
        return self.archive.store(source, expected_study=expected_study, move=move,
                                  scope=self.scope)

    def store_batch(self, sources: Sequence[Source], *, expected_study: str | None = None,
                    move: bool = False) -> list[StoreResult]:
        return self.archive.store_batch(sources, expected_study=expected_study, move=move,
                                        scope=self.scope)

    def ping(self) -> None:
        self.archive.ping()

    def close(self) -> None:
        """The archive belongs to the app, not to the view."""
