"""The ZIP writer past the classic limits (APPNOTE 4.3.14-16, 4.5.3): more than 65 535 entries
(ZIP64 end records) and an entry of more than 4 GiB (ZIP64 extra field and data descriptor),
written by the same Writer the download uses, read back by ``zipfile`` (testzip: every CRC),
and a range of the end records equal to the same bytes of the whole."""
from __future__ import annotations

import hashlib
import io
import os
import struct
import zipfile
from datetime import datetime
from pathlib import Path

import pytest

from gateway import close_app, create_app
from gateway.cohorts.book import Cohort
from gateway.cohorts.zipstream import Writer, arrange
from gateway.config import Settings

CREATED = datetime(2026, 12, 4, 12, 0, 0)


@pytest.fixture
def book(tmp_path: Path):
    app = create_app(Settings().replace(data_dir=tmp_path / "data"))
    yield app.extensions["tcia_cohorts"]
    close_app(app)


def cohort() -> Cohort:
    return Cohort("zip64", "2026-12-04T12:00:00.000Z", "explicit", {}, None, 0, 0, 0, 0, 0)


def write(layout, book, target: Path, start: int = 0, end: int | None = None) -> bytes:
    with target.open("wb") as out:
        for chunk in Writer(layout, book).range(start, layout.length if end is None else end):
            out.write(chunk)
    return target.read_bytes() if target.stat().st_size < 64 << 20 else b""


def test_more_than_65535_entries_get_the_zip64_end_records(book, tmp_path):
    source = tmp_path / "one.dcm"
    source.write_bytes(os.urandom(64))
    sha = hashlib.sha256(source.read_bytes()).hexdigest()
    files = [(f"c/{n:06d}.dcm", str(source), 64, sha) for n in range(70_000)]
    layout = arrange(cohort(), [("c/CITATION", b"cite me\n")], files, CREATED)
    whole = write(layout, book, tmp_path / "many.zip")
    assert len(whole) == layout.length
    assert whole[-98:-94] == struct.pack("<I", 0x06064B50)  # ZIP64 end of central directory
    archive = zipfile.ZipFile(tmp_path / "many.zip")
    assert len(archive.infolist()) == 70_001 and archive.testzip() is None
    assert archive.read("c/069999.dcm") == source.read_bytes()
    tail = write(layout, book, tmp_path / "tail.bin", layout.length - 150)
    assert tail == whole[-150:]


@pytest.mark.slow
def test_an_entry_over_4_gib_gets_the_zip64_extra_field(book, tmp_path):
    big = tmp_path / "big.dcm"
    size = (4 << 30) + 4096
    with big.open("wb") as fh:  # sparse: zeros but the last bytes
        fh.seek(size - 7)
        fh.write(b"the end")
    small = tmp_path / "small.dcm"
    small.write_bytes(b"after the big one")
    files = [("c/big.dcm", str(big), size, "b" * 64),
             ("c/small.dcm", str(small), small.stat().st_size, "s" * 64)]
    layout = arrange(cohort(), [], files, CREATED)
    write(layout, book, tmp_path / "big.zip")
    assert (tmp_path / "big.zip").stat().st_size == layout.length
    archive = zipfile.ZipFile(tmp_path / "big.zip")
    infos = archive.infolist()
    assert [i.file_size for i in infos] == [size, small.stat().st_size]
    assert infos[1].header_offset > 4 << 30  # past 4 GiB: the central directory's ZIP64 extra
    assert archive.read("c/small.dcm") == b"after the big one"
    with archive.open("c/big.dcm") as fh:  # reads it all and checks its CRC at the end
        fh.seek(size - 7)
        assert fh.read() == b"the end"
    assert archive.testzip() is None


def test_every_range_around_every_record_boundary_is_the_same_bytes(book, tmp_path):
    """A resumed download may start anywhere: in a header, in a file, in a descriptor, in the
    central directory. Each range, written by a fresh Writer (as a new request is), equals
    those bytes of the whole; CRCs learnt by one request are found by the next."""
    files = []
    for n, size in enumerate((1, 700, 70_000)):
        path = tmp_path / f"{n}.dcm"
        path.write_bytes(os.urandom(size))
        files.append((f"c/{n}.dcm", str(path), size, hashlib.sha256(path.read_bytes()).hexdigest()))
    layout = arrange(cohort(), [("c/metadata.csv", b"a,b\r\n")], files, CREATED)
    whole = b"".join(Writer(layout, book).range(0, layout.length))
    assert zipfile.ZipFile(io.BytesIO(whole)).testzip() is None
    marks = {layout.cd_offset, layout.length - 22}
    for e in layout.entries:
        marks |= {e.offset, e.data_at, e.data_at + e.size, e.end}
    for mark in sorted(marks):
        for at in (mark - 1, mark, mark + 1):
            if 0 <= at < layout.length:
                assert b"".join(Writer(layout, book).range(at, layout.length)) == whole[at:], at
                assert b"".join(Writer(layout, book).range(0, at)) == whole[:at], at
