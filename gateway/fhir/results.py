"""Finished search results, kept per app until an import changes the stored resources.

Measured under gunicorn (gthread, 2 cores), the pooled connection and the SQL statement are most
of what a small FHIR search costs, so a repeated search (a viewer's patient panel, a poll) is
answered from memory. A result is stored with the change token
(:class:`gateway.clinical.generation.Generation`) read *before* its query ran, so a result
that raced a commit is never served after the commit's token is visible. No token (a server
database): nothing is kept.
"""
from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from ..cache import BoundedCache
from ..clinical.generation import Generation

MAX_ENTRY_BYTES = 512 * 1024    # a bigger result (a large _count) is rebuilt each time


class ResultCache:
    """Finished results by key (a search plan), each with the token it was computed under."""

    def __init__(self, generation: Generation | None, *, max_bytes: int = 16 << 20,
                 max_entries: int = 2048, max_entry_bytes: int = MAX_ENTRY_BYTES) -> None:
        self.generation = generation
        self._entries: BoundedCache[Hashable, tuple[bytes, Any]] = BoundedCache(
            max_entries, max_bytes, size=lambda entry: _size(entry[1]),
            max_item_bytes=max_entry_bytes)

    def token(self) -> bytes | None:
        """Read before computing a result that will be stored; None: do not cache."""
        return self.generation.token() if self.generation is not None else None

    def get(self, key: Hashable, token: bytes) -> Any:
        """The value (a tuple whose first item is the result's bytes) or None."""
        hit = self._entries.get(key)
        return hit[1] if hit is not None and hit[0] == token else None

    def put(self, key: Hashable, token: bytes, value: Any) -> None:
        self._entries.put(key, (token, value))

    def __len__(self) -> int:
        return len(self._entries)


def _size(value: Any) -> int:
    """Bytes of a result: the value itself, or the first item of a (bytes, ...) tuple."""
    return len(value) if isinstance(value, (bytes, bytearray)) else len(value[0])
