"""Byte ranges of every frame in a stored file, computed once at store time (pure).

Native pixel data is cut into equal frames; encapsulated pixel data (PS3.5 A.4) is
mapped to frames by one fragment per frame, all fragments for a single frame, or the
Basic Offset Table. Where frames cannot be cut by offset (deflate, big endian, 1-bit,
an ambiguous encapsulation) the table is None and readers decode with pydicom.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any


UNDEFINED = 0xFFFFFFFF
NO_OFFSET_SYNTAXES = frozenset({"1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.2"})
Table = list[list[list[int]]]


class BadPixelData(Exception):
    """Pixel data shorter than its frames need."""


def frame_table(path: Path, ts: str, pixel: tuple[str, int, int] | None,
                fragments: list[tuple[int, int]] | None, image: dict[str, Any],
                count: int) -> Table | None:
    """``image`` holds Rows, Columns, SamplesPerPixel, BitsAllocated (ints or None)."""
    if count < 0:
        raise BadPixelData(f"NumberOfFrames {count} is negative")
    if pixel is None or count == 0 or ts in NO_OFFSET_SYNTAXES:
        return None
    _vr, offset, length = pixel
    if length == UNDEFINED:
        return _encapsulated(path, fragments or [], count)
    rows, cols = image.get("Rows") or 0, image.get("Columns") or 0
    spp, bits = image.get("SamplesPerPixel") or 1, image.get("BitsAllocated") or 0
    if bits % 8 or not rows or not cols:
        return None  # 1-bit or malformed: cut by decoding instead
    frame_len = rows * cols * spp * bits // 8
    if frame_len * count > length:
        raise BadPixelData(f"pixel data holds {length} bytes, {count} frame(s) need "
                           f"{frame_len * count}")
    return [[[offset + i * frame_len, frame_len]] for i in range(count)]


def _encapsulated(path: Path, items: list[tuple[int, int]], count: int) -> Table | None:
    """``items``: (value offset, length) of the Basic Offset Table item, then fragments."""
    if not items:
        raise BadPixelData("encapsulated pixel data has no items")
    bot_off, bot_len = items[0]
    fragments = items[1:]
    if not fragments:
        return None
    if count == 1:
        return [[[o, n] for o, n in fragments]]
    if len(fragments) == count:
        return [[[o, n]] for o, n in fragments]
    if bot_len and bot_len % 4 == 0:  # 4-byte offsets (PS3.5 A.4); else: cut by decoding
        with open(path, "rb") as fh:
            fh.seek(bot_off)
            table = struct.unpack(f"<{bot_len // 4}I", fh.read(bot_len))
        first = fragments[0][0] - 8  # offsets count from the first fragment's item tag
        starts = [first + t for t in table] + [1 << 62]
        frames = [[[o, n] for o, n in fragments if starts[i] <= o - 8 < starts[i + 1]]
                  for i in range(len(table))]
        return frames if len(frames) == count and all(frames) else None
    return None


def read_items(path: Path, offset: int, size: int) -> list[tuple[int, int]]:
    """(value offset, length) of each Item of an encapsulated sequence at ``offset``."""
    out: list[tuple[int, int]] = []
    with open(path, "rb") as fh:
        pos = offset
        while True:
            fh.seek(pos)
            head = fh.read(8)
            if len(head) < 8:
                raise BadPixelData("file is truncated inside encapsulated pixel data")
            group, elem, length = struct.unpack("<HHI", head)
            if (group, elem) == (0xFFFE, 0xE0DD):
                return out
            if (group, elem) != (0xFFFE, 0xE000) or pos + 8 + length > size:
                raise BadPixelData(f"corrupt or truncated pixel data item at byte {pos}")
            out.append((pos + 8, length))
            pos += 8 + length


def to_json(table: Table | None) -> str | None:
    return None if table is None else json.dumps(table, separators=(",", ":"))
