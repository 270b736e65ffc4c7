"""The one bounded cache: both bounds hold, the least recently used entry goes first, and a
value too large to keep is refused without flushing the others."""
from __future__ import annotations

import threading

from gateway.cache import BoundedCache


def test_item_bound_drops_the_least_recently_used() -> None:
    cache: BoundedCache[str, int] = BoundedCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1          # "a" is now the most recent
    cache.put("c", 3)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (1, None, 3)
    assert len(cache) == 2


def test_byte_bound_counts_sizes_and_replacements() -> None:
    cache: BoundedCache[str, bytes] = BoundedCache(100, 10)
    cache.put("a", b"12345")
    cache.put("b", b"1234")
    assert cache.bytes == 9
    cache.put("a", b"1")                 # replacing subtracts the old size
    assert cache.bytes == 5
    cache.put("c", b"123456")            # 11 bytes would be too many: "b" (oldest) goes
    assert cache.get("b") is None and cache.get("a") == b"1" and cache.bytes == 7


def test_a_value_larger_than_allowed_is_not_kept_and_flushes_nothing() -> None:
    cache: BoundedCache[str, bytes] = BoundedCache(10, 100, max_item_bytes=8)
    cache.put("small", b"x")
    cache.put("big", b"y" * 9)
    cache.put("small", b"x" * 9)         # a too-large new value also drops the stale one
    assert cache.get("big") is None and cache.get("small") is None and len(cache) == 0


def test_custom_sizes_and_zero_items_disables() -> None:
    cache: BoundedCache[str, tuple[str, bytes]] = BoundedCache(5, 4, size=lambda v: len(v[1]))
    cache.put("k", ("meta", b"1234"))
    assert cache.get("k") == ("meta", b"1234") and cache.bytes == 4
    off: BoundedCache[str, int] = BoundedCache(0)
    assert off.put("k", 1) == 1 and off.get("k") is None


def test_get_or_put_makes_once() -> None:
    cache: BoundedCache[str, int] = BoundedCache(4)
    made: list[int] = []
    for _ in range(3):
        cache.get_or_put("k", lambda: made.append(1) or 7)
    assert cache.get("k") == 7 and made == [1]


def test_threads_never_break_the_bounds() -> None:
    cache: BoundedCache[int, bytes] = BoundedCache(50, 500)

    def work(offset: int) -> None:
        for i in range(2000):
            cache.put((i * 7 + offset) % 300, b"x" * (i % 20))
            cache.get(i % 300)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(cache) <= 50 and cache.bytes <= 500
    assert cache.bytes == sum(len(cache.get(k) or b"") for k in range(300))
