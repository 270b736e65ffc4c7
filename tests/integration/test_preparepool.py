"""Sealing and parsing in helper processes gives exactly what the archive does in-process."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Iterator

import pytest

from gateway.archive import StoreOutcome
from gateway.archive.local import open_local
from gateway.archive.local.archive import LocalArchive, Prepared
from gateway.backends.pacs.preparepool import PreparePool
from gateway.config import Settings
from tests.support.dicomfiles import make_file


@pytest.fixture
def archive(tmp_path: Path) -> LocalArchive:
    return open_local(Settings().replace(data_dir=tmp_path / "data"))


@pytest.fixture
def pool() -> Iterator[PreparePool]:
    pool = PreparePool(workers=1)
    yield pool
    pool.close()


def test_pool_seals_and_parses_like_the_archive(archive: LocalArchive, pool: PreparePool,
                                                tmp_path: Path) -> None:
    source = make_file(tmp_path / "a.dcm", sop="a", frames=2)
    here = archive.prepare(archive.files.receive(source))
    spooled = archive.files.spool_bytes(source.read_bytes())
    there = pool.result(pool.submit(spooled), spooled)
    assert isinstance(here, Prepared) and isinstance(there, Prepared)
    assert there.record == here.record  # same digest, size, metadata, frame table
    assert there.received.sha256 == here.received.sha256
    assert there.received.size == source.stat().st_size
    assert archive.commit([there])[0].outcome is StoreOutcome.STORED
    sop = here.record.sop_uid
    stored = archive.files.local_path(archive.index.existing([sop])[sop].path)
    assert stored.read_bytes() == source.read_bytes()


def test_pool_removes_what_it_cannot_parse(archive: LocalArchive, pool: PreparePool) -> None:
    spooled = archive.files.spool_bytes(b"not dicom" * 100)
    failed = pool.result(pool.submit(spooled), spooled)
    assert failed.outcome is StoreOutcome.FAILED and failed.reason == 0xC000
    assert not spooled.exists()


def test_a_helper_that_dies_fails_its_instance_and_the_pool_recovers(
        archive: LocalArchive, pool: PreparePool, tmp_path: Path) -> None:
    warm = archive.files.spool_bytes(make_file(tmp_path / "w.dcm", sop="w").read_bytes())
    assert isinstance(pool.result(pool.submit(warm), warm), Prepared)
    # A FIFO nobody writes to: the helper blocks reading it, so it is surely mid-task
    # when it is killed (as the OOM killer would).
    stuck = archive.files.tmp / "stuck.part"
    os.mkfifo(stuck)
    future = pool.submit(stuck)
    helpers = list(pool._executor()._processes)
    deadline = time.monotonic() + 30
    while not _waiting_for_a_writer(helpers):
        assert time.monotonic() < deadline, "the helper never started the task"
        time.sleep(0.01)
    for pid in helpers:
        os.kill(pid, signal.SIGKILL)
    died = pool.result(future, stuck)
    assert died.outcome is StoreOutcome.FAILED and died.message == "a cache helper process died"
    assert not stuck.exists()
    again = archive.files.spool_bytes(make_file(tmp_path / "c.dcm", sop="c").read_bytes())
    assert isinstance(pool.result(pool.submit(again), again), Prepared)


def _waiting_for_a_writer(pids: list[int]) -> bool:
    """Whether one of ``pids`` is blocked opening a FIFO (the kernel's wait_for_partner)."""
    for pid in pids:
        try:
            if Path(f"/proc/{pid}/wchan").read_text() == "wait_for_partner":
                return True
        except OSError:
            pass
    return False
