"""One bounded, thread-safe LRU cache: at most ``max_items`` entries and ``max_bytes`` bytes.

Every cache of data in the gateway is one of these, owned by the object whose data it keeps
(the app, the archive, the FHIR service), never a module global: two apps in one process
(tests, a multi-tenant host) must not see each other's entries. gunicorn's gthread workers
serve several requests at once, hence the lock. Pure: no Flask, no I/O.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def _uncounted(_value: object) -> int:
    return 0


class BoundedCache(Generic[K, V]):
    """Least recently used entries go first once either bound is exceeded.

    ``size(value)`` is what a value counts against ``max_bytes`` (``len`` for bytes; pass
    ``max_bytes=None`` to bound by count only). A value larger than ``max_item_bytes`` (by
    default ``max_bytes``) is never kept, so one huge result cannot flush the others."""

    def __init__(self, max_items: int, max_bytes: int | None = None, *,
                 size: Callable[[V], int] | None = None,
                 max_item_bytes: int | None = None) -> None:
        if max_items < 0 or (max_bytes is not None and max_bytes < 0):
            raise ValueError("cache bounds must not be negative")
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.max_item_bytes = max_item_bytes if max_item_bytes is not None else max_bytes
        self._size: Callable[[V], int] = size or (len if max_bytes is not None else _uncounted)  # type: ignore[assignment]
        self._items: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            hit = self._items.get(key)
            if hit is None:
                return None
            self._items.move_to_end(key)
            return hit[0]

    def put(self, key: K, value: V) -> V:
        """Keep ``value`` (unless it is too large to) and return it."""
        size = self._size(value) if self.max_bytes is not None else 0
        if self.max_items == 0 or (self.max_item_bytes is not None and size > self.max_item_bytes):
            self.pop(key)  # an older value must not outlive this one
            return value
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            self._items[key] = (value, size)
            self._bytes += size
            while self._items and (len(self._items) > self.max_items or (
                    self.max_bytes is not None and self._bytes > self.max_bytes)):
                _key, (_value, gone) = self._items.popitem(last=False)
                self._bytes -= gone
        return value

    def get_or_put(self, key: K, make: Callable[[], V]) -> V:
        """The cached value, or ``make()`` kept and returned (``make`` runs unlocked)."""
        hit = self.get(key)
        return hit if hit is not None else self.put(key, make())

    def pop(self, key: K) -> V | None:
        with self._lock:
            old = self._items.pop(key, None)
            if old is None:
                return None
            self._bytes -= old[1]
            return old[0]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    @property
    def bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)
