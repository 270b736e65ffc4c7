"""The file store interface: where the bytes of each stored instance live.

An archive keeps every instance as one immutable object under a key, written in two steps:
the bytes are *spooled* (streamed into a temporary object and hashed as they come), then
*put* under their key in one atomic step, so a reader never sees half an object and a crash
leaves at worst a spooled leftover, which :meth:`FileStore.sweep` removes. The embedded
archive's store is a directory (``gateway.archive.local.store``); another backend (object
storage) implements the same methods, and the faces never know which one they have: they
read through :class:`gateway.archive.protocol.StoredInstance`.
"""
from __future__ import annotations

import errno
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO, Iterator, Protocol, Sequence


OUT_OF_SPACE = (errno.ENOSPC, errno.EDQUOT)


def out_of_space(exc: BaseException) -> bool:
    """The store's disk (or quota) is full: STOW says 0xA700 per instance, or 507."""
    return isinstance(exc, OSError) and exc.errno in OUT_OF_SPACE


@dataclass(frozen=True)
class Received:
    """A complete spooled object with its digest, ready to be put under its key."""

    path: Path
    sha256: str
    size: int


class Spool(Protocol):
    """One object being received: bytes go in as they arrive, hashed on the way."""

    path: Path
    size: int

    def write(self, data: bytes | memoryview) -> None: ...

    def finish(self) -> Received:
        """Make the bytes durable and return them with their digest."""
        ...

    def discard(self) -> None:
        """Throw the partial object away (a failed or refused upload)."""
        ...


class FileStore(Protocol):
    """Spool, put, read, delete and sweep immutable objects by key."""

    def spool(self) -> Spool:
        """A new temporary object to stream bytes into (STOW parts, C-STOREs)."""
        ...

    def receive(self, source: Path | IO[bytes]) -> Received:
        """Spool a whole file or stream."""
        ...

    def key(self, study: str, series: str, sop: str, sha256: str) -> str:
        """The key an instance with this digest is stored under."""
        ...

    def put(self, received: Received, key: str) -> None:
        """Atomically make a spooled object the object under ``key``."""
        ...

    def exists(self, key: str) -> bool: ...

    def open(self, key: str) -> BinaryIO:
        """The object's bytes from the start."""
        ...

    def read(self, key: str, offset: int, length: int) -> bytes:
        """``length`` bytes from ``offset`` (a frame, a bulk data value)."""
        ...

    def delete(self, key: str) -> None:
        """Remove the object; absent is fine."""
        ...

    def sweep(self, older_than: float) -> int:
        """Remove spooled leftovers older than ``older_than`` seconds; how many."""
        ...


class ObjectReader(Protocol):
    """How the read paths reach an object that is not a local file (an object store): the
    instance's bytes streamed, a frame's byte ranges, or a local copy (the hot cache) for
    the readers that need a file (pydicom, the renderer, the transcoder)."""

    def chunks(self, key: str, size: int, chunk: int) -> Iterator[bytes]: ...

    def read_ranges(self, key: str, ranges: Sequence[tuple[int, int]]) -> bytes: ...

    def local_copy(self, key: str, size: int) -> Path: ...

    def cached(self, key: str) -> Path | None:
        """The object's local copy if the node has one (the hot cache), else None."""
        ...

    def bodies(self, items: Sequence[tuple[str, int]], chunk: int) -> Iterator[Iterator[bytes]]:
        """The bodies of several objects in order, read ahead side by side."""
        ...
