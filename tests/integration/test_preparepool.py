"""Sealing and parsing in helper processes gives exactly what the archive does in-process."""
from __future__ import annotations

from pathlib import Path

from gateway.archive import StoreOutcome, open_local
from gateway.archive.local import Prepared
from gateway.archive.preparepool import PreparePool
from gateway.config import Settings
from tests.support.dicomfiles import make_file


def test_pool_seals_and_parses_like_the_archive(tmp_path: Path) -> None:
    archive = open_local(Settings().replace(data_dir=tmp_path / "data"))
    pool = PreparePool(workers=1)
    try:
        source = make_file(tmp_path / "a.dcm", sop="a", frames=2)
        here = archive.prepare(archive.files.receive(source))
        spooled = archive.files.spool(source.read_bytes())
        there = pool.result(pool.submit(spooled), spooled)
        assert isinstance(here, Prepared) and isinstance(there, Prepared)
        assert there.record == here.record  # same digest, size, metadata, frame table
        assert there.received.sha256 == here.received.sha256
        assert there.received.size == source.stat().st_size
        assert archive.commit([there])[0].outcome is StoreOutcome.STORED
        sop = here.record.sop_uid
        stored = archive.files.abspath(archive.index.existing([sop])[sop].path)
        assert stored.read_bytes() == source.read_bytes()
    finally:
        pool.close()


def test_pool_removes_what_it_cannot_parse(tmp_path: Path) -> None:
    archive = open_local(Settings().replace(data_dir=tmp_path / "data"))
    pool = PreparePool(workers=1)
    try:
        spooled = archive.files.spool(b"not dicom" * 100)
        failed = pool.result(pool.submit(spooled), spooled)
        assert failed.outcome is StoreOutcome.FAILED and failed.reason == 0xC000
        assert not spooled.exists()
    finally:
        pool.close()


def test_a_helper_that_dies_fails_its_instance_and_the_pool_recovers(tmp_path: Path) -> None:
    import os
    import signal

    archive = open_local(Settings().replace(data_dir=tmp_path / "data"))
    pool = PreparePool(workers=1)
    try:
        warm = archive.files.spool(make_file(tmp_path / "w.dcm", sop="w").read_bytes())
        assert isinstance(pool.result(pool.submit(warm), warm), Prepared)
        for pid in list(pool._executor()._processes):  # the helper, killed as the OOM killer would
            os.kill(pid, signal.SIGKILL)
        spooled = archive.files.spool(make_file(tmp_path / "b.dcm", sop="b").read_bytes())
        died = pool.result(pool.submit(spooled), spooled)
        assert died.outcome is StoreOutcome.FAILED and died.message == "a cache helper process died"
        assert not spooled.exists()
        again = archive.files.spool(make_file(tmp_path / "c.dcm", sop="c").read_bytes())
        assert isinstance(pool.result(pool.submit(again), again), Prepared)
    finally:
        pool.close()
