"""The PACS mode's pull-through cache shared by nodes and bounded: Orthanc as the PACS, the
cache's index in PostgreSQL and its files in SeaweedFS, two gateway nodes (two
RemoteArchives with their own data dirs). Two nodes missing one series cause one C-GET;
with CACHE_MAX_BYTES of a few series the cached bytes stay under the cap, a series being
read is not cut, and an evicted series comes back byte for byte."""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
from sqlalchemy import select

from gateway.archive import Level, Query, UidPath
from gateway.archive.local import open_local
from gateway.backends.pacs.archive import RemoteArchive
from gateway.backends.pacs.sharedstate import marks
from tests.support.orthanc import Orthanc, dataset_bytes, start_orthanc
from tests.support.remote import remote_settings
from tests.support.s3gateway import s3_changes

PURGE_DELAY = 2.0


@pytest.fixture(scope="module")
def pacs(tmp_path_factory, small_cohort, artifacts_dir: Path) -> Iterator[Orthanc]:
    orthanc = start_orthanc(tmp_path_factory.mktemp("pacs"), artifacts_dir / "logs")
    assert orthanc.load([Path(small_cohort.root)]) == small_cohort.instances
    yield orthanc
    orthanc.stop()


@pytest.fixture(scope="module")
def sizes(pacs: Orthanc) -> dict[str, tuple[str, int]]:
    """Every series of the PACS: (study, bytes as Orthanc stores them)."""
    out = {}
    for sid in pacs.get("/series"):
        info = pacs.get(f"/series/{sid}")
        study = pacs.get(f"/studies/{info['ParentStudy']}")["MainDicomTags"]["StudyInstanceUID"]
        stats = pacs.get(f"/series/{sid}/statistics")
        out[info["MainDicomTags"]["SeriesInstanceUID"]] = (study, int(stats["DiskSize"]))
    return out


def _node(tmp_path: Path, name: str, pacs: Orthanc, db: str, s3_store, bucket: str,
          cap: int) -> RemoteArchive:
    settings = remote_settings(tmp_path / name, pacs.address, database_url=db,
                               cache_max_bytes=cap, cache_high_watermark=0.9,
                               cache_low_watermark=0.5, cache_purge_delay=PURGE_DELAY,
                               **s3_changes(s3_store, f"s3://{bucket}/cache"))
    return RemoteArchive(settings, cache=open_local(settings))


@pytest.fixture
def nodes(tmp_path, request, pacs, postgres, s3_store, sizes) -> Iterator[list[RemoteArchive]]:
    db = postgres.create_database(f"pull{abs(hash(request.node.name)) % 10**8}")
    bucket = s3_store.create_bucket(f"pull-{abs(hash(request.node.name)) % 10**8}")
    cap = int(3.5 * max(size for _s, size in _small(sizes).values()))  # a few series
    assert sum(size for _s, size in _small(sizes).values()) > 2 * cap
    pair = [_node(tmp_path, n, pacs, db, s3_store, bucket, cap) for n in ("a", "b")]
    yield pair
    for node in pair:
        node.close()


def _small(sizes: dict[str, tuple[str, int]]) -> dict[str, tuple[str, int]]:
    """The series but the largest (the CT, most of the cohort's bytes)."""
    largest = max(sizes, key=lambda s: sizes[s][1])
    return {k: v for k, v in sizes.items() if k != largest}


def _visible(node: RemoteArchive, uid: str) -> bool:
    """The series' marker says complete and not hidden (a look that refreshes nothing)."""
    with node.state.engine.connect() as conn:
        return conn.execute(select(marks.c.uid).where(
            marks.c.kind == "series", marks.c.uid == uid, marks.c.hidden_at.is_(None))
        ).first() is not None


def _gets(nodes: list[RemoteArchive]) -> int:
    return sum(n.scu.stats["C-GET"] for n in nodes)


def _bytes(node: RemoteArchive, study: str, series: str) -> dict[str, bytes]:
    return {i.sop_uid: b"".join(i.chunks()) for i in node.instances(UidPath(study, series))}


def test_two_nodes_missing_one_series_cause_one_c_get(nodes, sizes) -> None:
    series = max(sizes, key=lambda s: sizes[s][1])  # the CT: the longest retrieval
    study = sizes[series][0]
    results: list[bytes] = []
    threads = [threading.Thread(target=lambda n=n: results.append(
        n.metadata(UidPath(study, series)))) for n in nodes for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 6 and len(set(results)) == 1
    assert _gets(nodes) == 1
    assert nodes[1].state.complete("series", series) is not None  # every node sees it


class Sampler:
    """The cached bytes, polled every 10 ms in a thread: the peak is what stays under the cap."""

    def __init__(self, node: RemoteArchive) -> None:
        self.node, self.peak, self._stop = node, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self.node.state.cached_bytes())

    def __enter__(self) -> "Sampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def test_bytes_stay_under_the_cap_and_evicted_series_come_back_identical(
        nodes, sizes, pacs) -> None:
    a, b = nodes
    cap = a.state.max_bytes
    order = sorted(_small(sizes), key=lambda s: -sizes[s][1])
    first = order[0]
    with Sampler(a) as sampler:
        original = _bytes(a, sizes[first][0], first)
        for series in order[1:]:
            time.sleep(PURGE_DELAY + 0.2)  # what was read before is no longer in use
            _bytes(a, sizes[series][0], series)
    # room is made before each batch is indexed: no explicit purge, no moment over the cap
    assert 0 < sampler.peak <= cap, (sampler.peak, cap)
    assert a.state.complete("series", first) is None  # evicted (least recently used)
    gets = _gets(nodes)
    again = _bytes(b, sizes[first][0], first)  # the other node fetches it again
    assert _gets(nodes) == gets + 1
    assert again.keys() == original.keys()
    for sop, data in again.items():
        assert data == original[sop]
        assert dataset_bytes(data) == dataset_bytes(pacs.instance_file(sop))
    print(f"cap {cap} bytes, peak {sampler.peak}, now {a.state.cached_bytes()}")


def test_a_series_being_streamed_is_never_cut_nor_evicted(nodes, sizes, pacs) -> None:
    """A stream three purge delays long on node a, while node b fills the cache: the
    stream's lease (renewed by a, seen by b in the shared index) keeps the series; once it
    ends, the series can go like any other."""
    a, b = nodes
    order = sorted(_small(sizes), key=lambda s: -sizes[s][1])
    reading, others = order[0], order[1:]
    study = sizes[reading][0]
    got: dict[str, bytes] = {}
    errors: list[BaseException] = []
    started = threading.Event()

    def slow_reader() -> None:
        try:
            stream = a.instances(UidPath(study, reading))  # as a WADO-RS body iterates it
            started.set()
            count = len(a.cache.search(Query(Level.INSTANCE,
                                             {"SeriesInstanceUID": reading})).matches)
            for inst in stream:
                got[inst.sop_uid] = b"".join(inst.chunks(16384))
                time.sleep(3 * (PURGE_DELAY + 0.2) / count)
        except BaseException as exc:  # noqa: BLE001 - the assertion below says what
            errors.append(exc)
        finally:
            started.set()

    reader = threading.Thread(target=slow_reader)
    with Sampler(b) as sampler:
        reader.start()
        started.wait(60)
        for series in others:  # fills the cache while the stream goes on
            if not reader.is_alive():
                break
            _bytes(b, sizes[series][0], series)
            assert _visible(b, reading)  # in use: kept (read without touching it)
            time.sleep(PURGE_DELAY + 0.2)
        reader.join()
    assert not errors
    assert got and all(dataset_bytes(data) == dataset_bytes(pacs.instance_file(sop))
                       for sop, data in got.items())
    assert sampler.peak <= b.state.max_bytes, (sampler.peak, b.state.max_bytes)
    # the stream is over: after the delay the series is evicted like any other
    time.sleep(PURGE_DELAY + 0.2)
    for series in others:
        if not _visible(b, reading):
            break
        _bytes(b, sizes[series][0], series)
        time.sleep(PURGE_DELAY / 2)
    assert b.state.complete("series", reading) is None
    assert not b.cache.search(Query(Level.SERIES, {"SeriesInstanceUID": reading})).matches
    assert b.state.cached_bytes() <= b.state.max_bytes
