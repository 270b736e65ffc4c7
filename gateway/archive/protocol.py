"""The one Archive protocol that DICOMweb, the DIMSE SCP and FHIR depend on.

Backends: :class:`gateway.archive.local.LocalArchive` (embedded index + files) and
the remote DIMSE backend (a PACS fronted with a pull-through cache). Both raise
the errors of :mod:`gateway.archive.errors` only.
"""
from __future__ import annotations

import enum
import functools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterator, Mapping, Protocol, Sequence, Union, runtime_checkable

from .files import ObjectReader, Received, Spool
from .scope import Scope
from .status import Status


class Level(str, enum.Enum):
    """Query/retrieve levels (PS3.4 C.3). ``dimse`` is the QueryRetrieveLevel value."""

    PATIENT = "PATIENT"
    STUDY = "STUDY"
    SERIES = "SERIES"
    INSTANCE = "INSTANCE"

    @property
    def dimse(self) -> str:
        return "IMAGE" if self is Level.INSTANCE else self.value


FailureReason = Status
"""Why an instance was not stored: a C-STORE status (PS3.18 10.5.3 FailureReason, PS3.4
B.2.3), e.g. ``PROCESSING_FAILURE``, ``DUPLICATE_SOP_INSTANCE``, ``OUT_OF_RESOURCES``,
``SOP_CLASS_MISMATCH``, ``STUDY_MISMATCH``, ``CANNOT_UNDERSTAND``."""


class StoreOutcome(str, enum.Enum):
    STORED = "stored"        # new instance, now indexed
    DUPLICATE = "duplicate"  # same SOPInstanceUID and identical bytes: nothing to do
    REPLACED = "replaced"    # different bytes, overwrite policy in force
    FAILED = "failed"


@dataclass(frozen=True)
class UidPath:
    """Where in the hierarchy a request points; ``None`` means 'any'."""

    study: str | None = None
    series: str | None = None
    instance: str | None = None

    @property
    def level(self) -> Level:
        if self.instance:
            return Level.INSTANCE
        if self.series:
            return Level.SERIES
        return Level.STUDY


@dataclass(frozen=True)
class Query:
    """A search in C-FIND terms, the language both backends speak.

    ``filters`` maps attribute keywords to PS3.4 C.2.2.2 matching strings: single
    value, ``*``/``?`` wildcards, ``a-b`` ranges (DA/TM/DT), backslash UID lists.
    An empty string asks for the attribute to be returned (universal matching).
    """

    level: Level
    filters: Mapping[str, str] = field(default_factory=dict)
    includefields: frozenset[str] = frozenset()
    include_all: bool = False
    fuzzy: bool = False
    limit: int | None = None
    offset: int = 0


@dataclass(frozen=True)
class SearchResult:
    """Matches in the DICOM JSON model (PS3.18 F.2), without RetrieveURL."""

    matches: list[dict]
    truncated: bool = False  # more matches exist beyond ``limit``


@dataclass(frozen=True)
class Fragment:
    offset: int
    length: int


@dataclass(frozen=True)
class StoredInstance:
    """A stored instance as the read paths need it: one local file, never re-parsed."""

    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    transfer_syntax: str
    path: Path
    size: int
    number_of_frames: int
    # The frame table as stored (JSON text), parsed only when a frame is read: a series
    # retrieve lists every instance and needs none of them.
    frame_table: str | None = None
    # An object store's instance: ``path`` is where the node's hot cache would keep it, and
    # its bytes come from ``remote`` under ``key`` (gateway/archive/s3).
    remote: ObjectReader | None = None
    key: str = ""

    @functools.cached_property
    def frames(self) -> tuple[tuple[Fragment, ...], ...] | None:
        """Byte ranges of each frame's data in the file (one or more fragments per frame),
        or None when frames cannot be cut by offset (deflate, big endian, 1-bit)."""
        if not self.frame_table:
            return None
        return tuple(tuple(Fragment(o, n) for o, n in frame)
                     for frame in json.loads(self.frame_table))

    def local(self) -> Path:
        """The stored bytes as a local file: ``path``, fetched into the hot cache first when
        the instance lives in an object store."""
        if self.remote is not None:
            return self.remote.local_copy(self.key, self.size)
        return self.path

    def open(self) -> BinaryIO:
        """The stored Part 10 bytes from the start."""
        return open(self.local(), "rb")

    def chunks(self, chunk: int = 1 << 20) -> Iterator[bytes]:
        """The stored bytes streamed (from the object store, or the file)."""
        if self.remote is not None:
            yield from self.remote.chunks(self.key, self.size, chunk)
            return
        with open(self.path, "rb") as fh:
            while data := fh.read(chunk):
                yield data

    def read_frame(self, number: int) -> bytes:
        """Frame ``number`` (from 1) as stored: one positioned read per fragment (one ranged
        GET of its span from an object store)."""
        assert self.frames is not None
        if self.remote is not None:
            return self.remote.read_ranges(self.key, [(f.offset, f.length)
                                                      for f in self.frames[number - 1]])
        fd = os.open(self.path, os.O_RDONLY)
        try:
            return b"".join(os.pread(fd, f.length, f.offset) for f in self.frames[number - 1])
        finally:
            os.close(fd)


@dataclass(frozen=True)
class StoreResult:
    outcome: StoreOutcome
    sop_class_uid: str = ""
    sop_uid: str = ""
    study_uid: str = ""
    series_uid: str = ""
    reason: FailureReason | None = None
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome is not StoreOutcome.FAILED


@runtime_checkable
class Archive(Protocol):
    """What every backend offers. Reads are by UID path; writes take a file."""

    def search(self, query: Query) -> SearchResult:
        """Match ``query`` at its level (PS3.4 C.2.2.2 semantics)."""

    def instances(self, where: UidPath) -> Iterator[StoredInstance]:
        """Every instance under ``where`` in a stable order (series, instance number).

        Raises NotFound if ``where`` names nothing.
        """

    def instance(self, where: UidPath) -> StoredInstance:
        """One instance (``where.instance`` set); NotFound if absent."""

    def metadata(self, where: UidPath) -> bytes:
        """DICOM JSON array of every instance under ``where``.

        BulkDataURI values are relative to the DICOMweb root (``studies/...``);
        the HTTP layer prefixes its public base.
        """

    def store(self, source: "Source", *, expected_study: str | None = None,
              move: bool = False) -> StoreResult:
        """Store one DICOM Part 10 file; never raises for bad input (see StoreResult)."""

    def store_batch(self, sources: Sequence["Source"], *, expected_study: str | None = None,
                    move: bool = False) -> list[StoreResult]:
        """Store several files, one result each in order; the embedded archive indexes
        them in one transaction (a STOW body, a retrieval)."""

    def spool(self) -> Spool:
        """A temporary object of this archive's file store to stream an upload into; hand
        its ``finish()`` to :meth:`store` (STOW spools each part while reading the body)."""

    def scoped(self, scope: Scope) -> Archive:
        """This archive as ``scope`` sees it: every read and write is narrowed inside the
        backend's own queries, and what lies outside answers exactly like what does not
        exist (NotFound, fewer matches, the narrowed total)."""

    def collections(self) -> dict[str, dict[str, int]]:
        """The named collections the archive holds (TCIA's CTP ProjectName, docs/collections.md),
        each with its ``patients``, ``studies``, ``series`` and ``instances`` (as the scope
        sees them); a backend that cannot tell collections apart holds none."""

    def has_collection(self, name: str) -> bool:
        """Whether a study of collection ``name`` is visible (one indexed lookup: a
        collection root asks it on every request)."""

    def materialize(self, where: UidPath) -> None:
        """Make the instances under ``where`` (a study or series) readable here before a
        long read of many series (a cohort download): a backend that fetches series on
        first use (BACKEND=idc) fetches them now; one that holds its files does nothing."""

    def study_collections(self, study_uids: Sequence[str]) -> dict[str, str]:
        """The collection of each of these studies that has one (one indexed lookup for
        a page of studies: ImagingStudy tells its collection's licence)."""

    def ping(self) -> None:
        """Raise Unavailable unless the backend can answer queries."""

    def close(self) -> None:
        """Release associations, threads, helper processes and database connections."""


Source = Union[Path, BinaryIO, Received]
"""What ``store`` takes: a file path, a readable stream, or an object already spooled by the
archive's own :meth:`Archive.spool` with its digest (``move`` implied)."""

BinaryChunks = Iterator[bytes]
"""Streams of bytes, produced lazily so that large bodies never sit in memory."""
