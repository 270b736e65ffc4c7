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
    import time

    archive = open_local(Settings().replace(data_dir=tmp_path / "data"))
    pool = PreparePool(workers=1)
    try:
        warm = archive.files.spool(make_file(tmp_path / "w.dcm", sop="w").read_bytes())
        assert isinstance(pool.result(pool.submit(warm), warm), Prepared)
        # A FIFO nobody writes to: the helper blocks reading it, so it is surely mid-task
        # when it is killed (as the OOM killer would).
        stuck = archive.files.tmp / "stuck.part"
        os.mkfifo(stuck)
        future = pool.submit(stuck)
        helpers = list(pool._executor()._processes)
        deadline = time.monotonic() + 30
        while not _reading(helpers):
            assert time.monotonic() < deadline, "the helper never started the task"
            time.sleep(0.01)
        for pid in helpers:
            os.kill(pid, signal.SIGKILL)
        died = pool.result(future, stuck)
        assert died.outcome is StoreOutcome.FAILED and died.message == "a cache helper process died"
        assert not stuck.exists()
        again = archive.files.spool(make_file(tmp_path / "c.dcm", sop="c").read_bytes())
        assert isinstance(pool.result(pool.submit(again), again), Prepared)
    finally:
        pool.close()


def _reading(pids: list[int]) -> bool:
    """Whether one of ``pids`` is blocked opening a FIFO (waiting for a writer)."""
    for pid in pids:
        try:
            if Path(f"/proc/{pid}/wchan").read_text() == "wait_for_partner":
                return True
        except OSError:
            pass
    return False
