"""One error family: every ArchiveError kind driven through the three faces.

A real app (Flask test client) and the real DIMSE SCP (pynetdicom, on loopback) stand on an
embedded archive whose ``search`` raises the kind under test; the table below is what each
face must answer: the HTTP status (DICOMweb and FHIR), the FHIR issue type of the
OperationOutcome, and the DIMSE status of the C-FIND response. A bug in a handler (any other
exception) still answers 0xC000 on DIMSE, and its traceback is in the log.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE

from gateway import create_app
from gateway.archive import errors
from gateway.archive.errors import (ArchiveError, Forbidden, InvalidQuery, NotAcceptable, NotFound,
                                    NotSupported, Unavailable, UpstreamError, UpstreamTimeout)
from gateway.archive.local import LocalArchive, open_local
from gateway.archive.local.index import IndexWriteError
from gateway.archive.protocol import Query, SearchResult
from gateway.config import Settings
from gateway.dimse import contexts as cx
from gateway.scp import server as scp
from tests.support.procs import free_port

pytestmark = pytest.mark.timeout(120)

#        kind              HTTP  FHIR issue type   DIMSE status
TABLE = {NotFound:        (404, "not-found",      0xC000),
         InvalidQuery:    (400, "invalid",        0xA900),
         NotAcceptable:   (406, "not-supported",  0xC000),
         Unavailable:     (503, "transient",      0xA700),
         UpstreamError:   (502, "exception",      0xC000),
         UpstreamTimeout: (504, "timeout",        0xC000),
         # a write outside the caller's scope; a scope the backend cannot keep (collections)
         Forbidden:       (403, "forbidden",      0x0124),
         NotSupported:    (501, "not-supported",  0xC000),
         # the embedded index refusing a write (read-only, unreachable, disk full)
         IndexWriteError: (503, "transient",      0xA700)}


class FailingArchive(LocalArchive):
    """The embedded archive, except that every search raises ``self.error``."""

    error: Exception = RuntimeError("not set")

    def search(self, query: Query) -> SearchResult:
        raise self.error


def kinds() -> set[type[ArchiveError]]:
    found, todo = set(), [ArchiveError]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub.__module__.startswith("gateway."):
                found.add(sub)
                todo.append(sub)
    return found


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> FailingArchive:
    data = tmp_path_factory.mktemp("data")
    local = open_local(Settings().replace(data_dir=data))
    return FailingArchive(data, local.index.url, index=local.index)


@pytest.fixture(scope="module")
def client(archive: FailingArchive, tmp_path_factory: pytest.TempPathFactory):
    settings = Settings().replace(data_dir=Path(archive.files.root), log_level="WARNING")
    return create_app(settings, archive=archive).test_client()


@pytest.fixture(scope="module")
def scp_port(archive: FailingArchive) -> Iterator[int]:
    port = free_port()
    settings = Settings().replace(data_dir=Path(archive.files.root),
                                  dimse_bind=f"127.0.0.1:{port}")
    server = scp.start(settings, archive)
    yield port
    server.shutdown()


def c_find_status(port: int) -> int:
    """The final status of a Study Root C-FIND at the STUDY level."""
    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context(cx.FIND_MODELS["S"])
    assoc = ae.associate("127.0.0.1", port, ae_title="TCIAGW")
    assert assoc.is_established
    try:
        ident = Dataset()
        ident.QueryRetrieveLevel = "STUDY"
        ident.StudyInstanceUID = ""
        statuses = [int(rsp.Status) for rsp, _ in assoc.send_c_find(ident, cx.FIND_MODELS["S"])]
    finally:
        assoc.release()
    return statuses[-1]


def test_the_table_covers_every_error_kind() -> None:
    assert kinds() == set(TABLE), "a new ArchiveError kind needs its row here"


@pytest.mark.parametrize("kind", list(TABLE), ids=lambda k: k.__name__)
def test_every_face_answers_the_kind_alike(kind: type[ArchiveError], archive: FailingArchive,
                                           client, scp_port: int) -> None:
    http, issue_type, dimse = TABLE[kind]
    archive.error = kind(f"{kind.__name__} raised on purpose")
    dicomweb = client.get("/dicomweb/studies", headers={"Accept": "application/dicom+json"})
    assert dicomweb.status_code == http
    assert dicomweb.get_json()["message"] == f"{kind.__name__} raised on purpose"
    fhir = client.get("/fhir/ImagingStudy/1.2.840.99")  # read: built from archive.search
    assert fhir.status_code == http
    body = fhir.get_json()
    assert body["resourceType"] == "OperationOutcome"
    assert [(i["code"], i["diagnostics"]) for i in body["issue"]] == [
        (issue_type, f"{kind.__name__} raised on purpose")]
    assert c_find_status(scp_port) == dimse


def test_a_handler_bug_is_0xC000_with_its_traceback_logged(archive: FailingArchive, scp_port: int,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    archive.error = ZeroDivisionError("a bug, not an archive error")
    with caplog.at_level(logging.ERROR, logger="gateway"):
        assert c_find_status(scp_port) == 0xC000
    logged = [r for r in caplog.records if r.exc_info and r.exc_info[0] is ZeroDivisionError]
    assert logged, "the unexpected exception was not logged with its traceback"
    assert "raise self.error" in caplog.text  # the traceback names the failing line


def test_answers_are_data_on_the_kinds() -> None:
    """The faces read the kind's own answer: no table of kinds anywhere else."""
    for kind, (http, issue_type, dimse) in TABLE.items():
        assert (kind.answer.http, kind.answer.fhir, int(kind.answer.dimse)) == (
            http, issue_type, dimse)
    assert errors.ArchiveError.answer.http == 500
