"""Fuzz the frame table: byte ranges of every frame, native or encapsulated (PS3.5 A.4).

Input: a 10-byte header (transfer syntax, native/encapsulated, Rows, Columns,
SamplesPerPixel, BitsAllocated, NumberOfFrames as a signed 16-bit value), then the pixel
data value: native bytes, or an item stream (Basic Offset Table, fragments, sequence
delimiter). Contract: None (frames are cut by decoding), BadPixelData, or exactly
NumberOfFrames frames whose every byte range lies inside the file.
"""
from __future__ import annotations

import os
import struct
import tempfile
from pathlib import Path

from tests.fuzz._harness import instrumented, main

with instrumented(__name__):
    from gateway.archive.local import frametable
    from gateway.archive.local.frametable import UNDEFINED, BadPixelData

SYNTAXES = ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.5",
            "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99")
LEAD = b"\0" * 16  # bytes before the pixel data value, as a file has its other elements
HEADER = struct.Struct("<BBHHBBh")
_PATH: list[Path] = []


def scratch() -> Path:
    if not _PATH:
        fd, name = tempfile.mkstemp(prefix="fuzz-frametable-")
        os.close(fd)
        _PATH.append(Path(name))
    return _PATH[0]


def check(data: bytes) -> None:
    head = data[:HEADER.size].ljust(HEADER.size, b"\0")
    ts_sel, encaps, rows, cols, spp, bits, count = HEADER.unpack(head)
    value = data[HEADER.size:]
    path = scratch()
    path.write_bytes(LEAD + value)
    size = len(LEAD) + len(value)
    image = {"Rows": rows, "Columns": cols, "SamplesPerPixel": spp, "BitsAllocated": bits}
    ts = SYNTAXES[ts_sel % len(SYNTAXES)]
    try:
        if encaps % 2:
            fragments = frametable.read_items(path, len(LEAD), size)
            assert all(len(LEAD) <= o and o + n <= size for o, n in fragments), fragments
            table = frametable.frame_table(path, ts, ("OB", len(LEAD), UNDEFINED), fragments,
                                           image, count)
        else:
            table = frametable.frame_table(path, ts, ("OW", len(LEAD), len(value)), None,
                                           image, count)
    except BadPixelData:
        return
    if table is None:
        return
    assert len(table) == count, f"{len(table)} frames in the table, NumberOfFrames {count}"
    for frame in table:
        assert frame, "a frame without bytes"
        assert all(len(LEAD) <= o and n >= 0 and o + n <= size for o, n in frame), frame
    assert frametable.to_json(table)


if __name__ == "__main__":
    main(check)
