"""Concurrent STOW-RS of one instance against gunicorn with several worker processes: a
retrying viewer, or two modalities sending the same instance, must never lose it.

Identical bytes are an idempotent success (PS3.18 10.5: STOW must be safe to repeat); the
same SOPInstanceUID with other bytes is FailureReason 0x0111 for every loser, and the
winner's file stays intact. ``tcia-gateway check`` then finds the archive consistent.
"""
from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path
from typing import Iterator

import orjson
import pydicom
import pytest
import requests

from gateway.archive import FailureReason, StoreOutcome
from gateway.archive.local import LocalArchive
from gateway.archive.local.index import Index
from gateway.dicomweb import multipart
from tests.support.dicomfiles import make_file
from tests.support.procs import GatewayServer, start_gateway
from tests.support.store import run_check

CLIENTS = 8
ROUNDS = 20
CT = 'multipart/related; type="application/dicom"; boundary=concurrency'


@pytest.fixture(scope="module")
def server(tmp_path_factory, artifacts_dir: Path) -> Iterator[GatewayServer]:
    data = tmp_path_factory.mktemp("concurrency") / "data"
    srv = start_gateway(data, artifacts_dir / "logs", workers=4)
    yield srv
    srv.stop()


def stow(server: GatewayServer, parts: list[bytes]) -> requests.Response:
    body = multipart.encode([("application/dicom", p) for p in parts], "concurrency")
    # A fresh connection per request, so the kernel spreads them over the workers.
    return requests.post(f"{server.url}/dicomweb/studies", data=body, timeout=60,
                         headers={"Content-Type": CT, "Accept": "application/dicom+json",
                                  "Connection": "close"})


def all_at_once(server: GatewayServer, bodies: list[list[bytes]]) -> list[requests.Response]:
    """Send each body from its own thread, released together."""
    gate = threading.Barrier(len(bodies))
    answers: list[requests.Response | BaseException | None] = [None] * len(bodies)

    def client(i: int) -> None:
        gate.wait()
        try:
            answers[i] = stow(server, bodies[i])
        except BaseException as exc:  # reported below, with the others
            answers[i] = exc

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    failed = [a for a in answers if not isinstance(a, requests.Response)]
    assert not failed, failed
    return answers  # type: ignore[return-value]


def failure_reasons(response: requests.Response) -> list[int]:
    failed = orjson.loads(response.content).get("00081198", {}).get("Value", [])
    return [item["00081197"]["Value"][0] for item in failed]


def stored_files(server: GatewayServer, sop_uid: str) -> list[Path]:
    return [p for p in (server.data_dir / "files").rglob("*.dcm") if p.name.startswith(sop_uid)]


def wado_bytes(server: GatewayServer, study: str, series: str, sop: str) -> bytes:
    r = requests.get(f"{server.url}/wado", timeout=30, params={
        "requestType": "WADO", "studyUID": study, "seriesUID": series, "objectUID": sop,
        "contentType": "application/dicom"})
    assert r.status_code == 200, r.text
    return r.content


def test_identical_concurrent_stows_all_succeed_and_keep_one_file(server, tmp_path) -> None:
    sent: dict[str, tuple[str, str, bytes]] = {}
    for n in range(ROUNDS):
        path = make_file(tmp_path / f"r{n}.dcm", patient="CONC", study="conc", series="conc-se",
                         sop=f"conc-{n}", InstanceNumber=n + 1)
        data = path.read_bytes()
        answers = all_at_once(server, [[data]] * CLIENTS)
        statuses = Counter(a.status_code for a in answers)
        assert statuses == {200: CLIENTS}, (n, statuses, [a.text[:300] for a in answers
                                                          if a.status_code != 200])
        ds = pydicom.dcmread(path)
        sent[ds.SOPInstanceUID] = (ds.StudyInstanceUID, ds.SeriesInstanceUID, data)
        assert len(stored_files(server, ds.SOPInstanceUID)) == 1, n
    for sop, (study, series, data) in sent.items():
        assert wado_bytes(server, study, series, sop) == data  # the bytes, whole
    series_uid = next(iter(sent.values()))[1]
    r = requests.get(f"{server.url}/dicomweb/studies/{next(iter(sent.values()))[0]}/series/"
                     f"{series_uid}/instances", timeout=30)
    assert len(r.json()) == ROUNDS
    assert not list((server.data_dir / "tmp").glob("*.part"))
    report = run_check(server.data_dir)
    assert report.returncode == 0, report.stdout + report.stderr
    assert "0 problems" in report.stdout


def test_different_bytes_race_one_winner_others_0111(server, tmp_path) -> None:
    for n in range(3):
        bodies, by_status = [], {}
        for c in range(CLIENTS):
            path = make_file(tmp_path / f"d{n}-{c}.dcm", patient="CONC", study="conc",
                             series="conc-diff", sop=f"diff-{n}", InstanceNumber=100 + c)
            bodies.append([path.read_bytes()])
        answers = all_at_once(server, bodies)
        for body, answer in zip(bodies, answers):
            by_status.setdefault(answer.status_code, []).append((body[0], answer))
        assert sorted(by_status) == [200, 409], {k: len(v) for k, v in by_status.items()}
        assert len(by_status[200]) == 1 and len(by_status[409]) == CLIENTS - 1
        for _body, answer in by_status[409]:
            assert failure_reasons(answer) == [0x0111]
        ds = pydicom.dcmread(tmp_path / f"d{n}-0.dcm")
        files = stored_files(server, ds.SOPInstanceUID)
        assert len(files) == 1
        winner = by_status[200][0][0]
        assert files[0].read_bytes() == winner
        assert wado_bytes(server, ds.StudyInstanceUID, ds.SeriesInstanceUID,
                          ds.SOPInstanceUID) == winner


def test_same_bytes_twice_in_one_body(server, tmp_path) -> None:
    path = make_file(tmp_path / "twice.dcm", patient="CONC", study="conc", series="conc-twice",
                     sop="twice-1")
    data = path.read_bytes()
    answers = all_at_once(server, [[data, data]] * 4)
    assert [a.status_code for a in answers] == [200] * 4, [a.text for a in answers]
    for a in answers:
        assert len(orjson.loads(a.content)["00081199"]["Value"]) == 2
    assert len(stored_files(server, pydicom.dcmread(path).SOPInstanceUID)) == 1


class RacingIndex(Index):
    """An index on which another writer commits right after we looked (a node with its own
    file store sharing the database: its lock is not ours). Real SQLite, real writes."""

    def __init__(self, url: str, other: LocalArchive, source: Path) -> None:
        super().__init__(url)
        self.other, self.source, self.raced = other, source, False

    def existing(self, sop_uids):
        seen = super().existing(sop_uids)
        if not self.raced:
            self.raced = True
            assert self.other.store(self.source).outcome is StoreOutcome.STORED
        return seen


@pytest.mark.parametrize("same_bytes", [True, False])
def test_a_writer_outside_the_lock_is_decided_again(tmp_path, same_bytes) -> None:
    url = f"sqlite:///{tmp_path / 'index.sqlite'}"
    theirs = make_file(tmp_path / "theirs.dcm", sop="outside", InstanceNumber=1)
    ours = theirs if same_bytes else make_file(tmp_path / "ours.dcm", sop="outside",
                                               InstanceNumber=2)
    other = LocalArchive(tmp_path / "node-a", url)
    archive = LocalArchive(tmp_path / "node-b", url, index=RacingIndex(url, other, theirs))
    result = archive.store(ours)
    if same_bytes:
        assert result.outcome is StoreOutcome.DUPLICATE
    else:
        assert result.reason is FailureReason.DUPLICATE_SOP_INSTANCE
    row = archive.index.existing([result.sop_uid])[result.sop_uid]
    assert (other.files.local_path(row.path)).read_bytes() == theirs.read_bytes()
    mine = list((tmp_path / "node-b" / "files").rglob("*.dcm"))
    assert mine == ([archive.files.local_path(row.path)] if same_bytes else [])
    assert not list((tmp_path / "node-b" / "tmp").iterdir())
