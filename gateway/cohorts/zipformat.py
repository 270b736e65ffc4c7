"""ZIP records for a stored (uncompressed) archive whose every byte offset is known before any
file is read (APPNOTE.TXT 6.3.10: 4.3.7 local header, 4.3.9 data descriptor, 4.3.12 central
directory header, 4.3.14-16 ZIP64 end records, 4.5.3 ZIP64 extra field).

File entries set general-purpose bit 3: their local header carries CRC 0 and the CRC-32 comes
after the data in a data descriptor of fixed length (16 bytes, 24 with ZIP64), so the size of
every record is known from the index alone (names and sizes) and only the descriptor and the
central directory need the CRC. Small generated entries (metadata.csv, LICENSE, CITATION) have
their CRC in the local header. Bit 11: names are UTF-8.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import datetime

ZIP64_LIMIT = 0xFFFFFFFF
COUNT_LIMIT = 0xFFFF
_LOCAL = struct.Struct("<IHHHHHIIIHH")
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")
_UTF8, _DESCRIPTOR = 0x0800, 0x0008
_UNIX_FILE = (0o100644 << 16)


@dataclass(frozen=True)
class Record:
    """One entry as the central directory needs it."""

    name: bytes
    size: int
    offset: int         # of its local header
    crc: int
    descriptor: bool    # CRC in a data descriptor (bit 3) rather than the local header

    @property
    def zip64(self) -> bool:
        return self.size >= ZIP64_LIMIT


def dos_time(when: datetime) -> tuple[int, int]:
    """(time, date) in MS-DOS form (2-second resolution, years from 1980)."""
    year = max(when.year, 1980)
    return ((when.hour << 11) | (when.minute << 5) | (when.second // 2),
            ((year - 1980) << 9) | (when.month << 5) | when.day)


def local_header(name: bytes, size: int, when: tuple[int, int], crc: int | None) -> bytes:
    """``crc`` None: bit 3 (the CRC and sizes follow in a data descriptor)."""
    zip64 = size >= ZIP64_LIMIT
    flags = _UTF8 | (_DESCRIPTOR if crc is None else 0)
    extra = struct.pack("<HHQQ", 1, 16, size, size) if zip64 else b""
    shown = ZIP64_LIMIT if zip64 else (0 if crc is None else size)
    if zip64 and crc is None:
        extra = struct.pack("<HHQQ", 1, 16, 0, 0)
    return _LOCAL.pack(0x04034B50, 45 if zip64 else 20, flags, 0, when[0], when[1], crc or 0,
                       shown, shown, len(name), len(extra)) + name + extra


def local_header_size(name: bytes, size: int) -> int:
    return _LOCAL.size + len(name) + (20 if size >= ZIP64_LIMIT else 0)


def descriptor(crc: int, size: int) -> bytes:
    if size >= ZIP64_LIMIT:
        return struct.pack("<IIQQ", 0x08074B50, crc, size, size)
    return struct.pack("<IIII", 0x08074B50, crc, size, size)


def descriptor_size(size: int) -> int:
    return 24 if size >= ZIP64_LIMIT else 16


def central_header(record: Record, when: tuple[int, int]) -> bytes:
    fields = []
    if record.zip64:
        fields += [record.size, record.size]
    if record.offset >= ZIP64_LIMIT:
        fields.append(record.offset)
    extra = struct.pack(f"<HH{len(fields)}Q", 1, 8 * len(fields), *fields) if fields else b""
    needs64 = bool(fields)
    flags = _UTF8 | (_DESCRIPTOR if record.descriptor else 0)
    shown = ZIP64_LIMIT if record.zip64 else record.size
    return _CENTRAL.pack(
        0x02014B50, (3 << 8) | 45, 45 if needs64 else 20, flags, 0, when[0], when[1],
        record.crc, shown, shown, len(record.name), len(extra), 0, 0, 0, _UNIX_FILE,
        min(record.offset, ZIP64_LIMIT)) + record.name + extra


def central_header_size(name: bytes, size: int, offset: int) -> int:
    count = (2 if size >= ZIP64_LIMIT else 0) + (1 if offset >= ZIP64_LIMIT else 0)
    return _CENTRAL.size + len(name) + (4 + 8 * count if count else 0)


def end_records(count: int, cd_offset: int, cd_size: int) -> bytes:
    """The end of central directory record, preceded by the ZIP64 ones when any field of it
    would overflow."""
    out = b""
    if count >= COUNT_LIMIT or cd_offset >= ZIP64_LIMIT or cd_size >= ZIP64_LIMIT:
        end64 = cd_offset + cd_size
        out += struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, count, count,
                           cd_size, cd_offset)
        out += struct.pack("<IIQI", 0x07064B50, 0, end64, 1)
    return out + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, min(count, COUNT_LIMIT),
                             min(count, COUNT_LIMIT), min(cd_size, ZIP64_LIMIT),
                             min(cd_offset, ZIP64_LIMIT), 0)


def end_records_size(count: int, cd_offset: int, cd_size: int) -> int:
    big = count >= COUNT_LIMIT or cd_offset >= ZIP64_LIMIT or cd_size >= ZIP64_LIMIT
    return 22 + (76 if big else 0)
