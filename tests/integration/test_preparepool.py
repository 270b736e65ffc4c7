"""Parsing in helper processes gives exactly what parsing in-process gives."""
from __future__ import annotations

from pathlib import Path

from gateway.archive import StoreOutcome, open_local
from gateway.archive.local import Prepared
from gateway.archive.preparepool import PreparePool
from gateway.config import Settings
from tests.support.dicomfiles import make_file


def test_pool_parses_like_the_archive(tmp_path: Path) -> None:
    archive = open_local(Settings().replace(data_dir=tmp_path / "data"))
    pool = PreparePool(workers=1)
    try:
        source = make_file(tmp_path / "a.dcm", sop="a", frames=2)
        here = archive.prepare(archive.files.receive(source))
        there = pool.prepare(archive.files.receive(source))
        assert isinstance(here, Prepared) and isinstance(there, Prepared)
        assert there.record == here.record
        assert archive.commit([there])[0].outcome is StoreOutcome.STORED
        bad = tmp_path / "bad.dcm"
        bad.write_bytes(b"not dicom" * 100)
        spooled = archive.files.receive(bad)
        failed = pool.prepare(spooled)
        assert failed.outcome is StoreOutcome.FAILED and failed.reason == 0xC000
        assert not spooled.path.exists()  # the helper removed what it could not parse
    finally:
        pool.close()
