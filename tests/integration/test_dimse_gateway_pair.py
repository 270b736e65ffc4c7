"""The gateway's SCU in front of the gateway's own SCP, both real pynetdicom on loopback
(in-process, fast): C-STORE through the remote archive, a PACS refusing a conflicting
duplicate with 0x0111, the calling-AE allow-list, and the C-MOVE path between them."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import orjson
import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE

from gateway.archive import FailureReason, StoreOutcome, UidPath
from gateway.archive.local import open_local
from gateway.backends.pacs.archive import RemoteArchive
from gateway.config import Settings
from gateway.dimse import contexts as cx
from gateway.scp import server as scp
from tests.support.dicomfiles import make_file
from tests.support.procs import free_port
from tests.support.remote import remote_settings

pytestmark = pytest.mark.timeout(120)


def scp_settings(data: Path, port: int, **extra) -> object:
    """Settings for the SCP side; DIMSE_ALLOWED_AES rides along until config.py has it."""
    return remote_settings(data, "", dimse_bind=f"127.0.0.1:{port}", ae_title="PACS", **extra)


@pytest.fixture
def pacs(tmp_path: Path) -> Iterator[dict]:
    """Our SCP serving an embedded archive, standing in for a PACS."""
    port = free_port()
    settings = scp_settings(tmp_path / "pacs", port)
    archive = open_local(Settings().replace(data_dir=tmp_path / "pacs"))
    server = scp.start(settings, archive)
    yield {"port": port, "archive": archive, "address": f"PACS@127.0.0.1:{port}"}
    server.shutdown()


@pytest.fixture
def remote(tmp_path: Path, pacs: dict) -> Iterator[RemoteArchive]:
    settings = remote_settings(tmp_path / "cache", pacs["address"])
    archive = RemoteArchive(settings, cache=open_local(settings))
    yield archive
    archive.close()


def test_stow_is_a_c_store_then_cached(remote: RemoteArchive, pacs: dict, tmp_path: Path) -> None:
    path = make_file(tmp_path / "a.dcm", sop="a", series="s", study="st")
    result = remote.store(path)
    assert result.outcome is StoreOutcome.STORED
    assert pacs["archive"].index.counts()["instances"] == 1
    assert remote.cache.index.counts()["instances"] == 1
    assert remote.scu.stats["C-STORE"] == 1


def test_pacs_refusing_a_conflicting_duplicate(remote: RemoteArchive, pacs: dict,
                                               tmp_path: Path) -> None:
    pacs["archive"].store(make_file(tmp_path / "old.dcm", sop="x", series="s", study="st"))
    changed = make_file(tmp_path / "new.dcm", sop="x", series="s", study="st",
                        StudyDescription="changed")
    result = remote.store(changed)
    assert result.outcome is StoreOutcome.FAILED
    assert result.reason is FailureReason.DUPLICATE_SOP_INSTANCE
    assert result.message.startswith(f"PACS {pacs['address']} answered C-STORE with 0x0111")
    assert remote.cache.index.counts()["instances"] == 0
    assert not list(remote.cache.files.tmp.iterdir())


def test_study_mismatch_is_refused_before_the_pacs(remote: RemoteArchive, tmp_path: Path) -> None:
    result = remote.store(make_file(tmp_path / "a.dcm", sop="a", study="st"),
                          expected_study="1.2.3")
    assert result.reason is FailureReason.STUDY_MISMATCH and remote.scu.stats["C-STORE"] == 0


def test_retrieve_by_c_move_between_our_scp_and_our_receiver(tmp_path: Path) -> None:
    data, port, move_port = tmp_path / "pacs", free_port(), free_port()
    archive = open_local(Settings().replace(data_dir=data))
    for i in range(3):
        archive.store(make_file(tmp_path / f"{i}.dcm", sop=f"i{i}", series="s", study="st",
                                InstanceNumber=i + 1))
    server = scp.start(scp_settings(data, port, known_aes=f"TCIAGW@127.0.0.1:{move_port}"),
                       archive)
    settings = remote_settings(tmp_path / "cache", f"PACS@127.0.0.1:{port}",
                               pacs_retrieve="c-move", pacs_move_bind=f"127.0.0.1:{move_port}")
    remote = RemoteArchive(settings, cache=open_local(settings))
    try:
        first = next(archive.instances(UidPath()))
        where = UidPath(first.study_uid, first.series_uid)
        assert len(orjson.loads(remote.metadata(where))) == 3
        assert remote.receiver is not None and remote.receiver.owner
        assert remote.scu.stats["C-MOVE"] == 1
    finally:
        remote.close()
        server.shutdown()


def test_calling_ae_allow_list(tmp_path: Path) -> None:
    port = free_port()
    server = scp.start(scp_settings(tmp_path / "d", port, dimse_allowed_aes="FRIEND"),
                       open_local(Settings().replace(data_dir=tmp_path / "d")))
    try:
        for calling, accepted in (("FRIEND", True), ("STRANGER", False)):
            ae = AE(ae_title=calling)
            ae.add_requested_context(cx.FIND_MODELS["S"])
            assoc = ae.associate("127.0.0.1", port, ae_title="PACS")
            assert assoc.is_established is accepted
            if accepted:
                ds = Dataset()
                ds.QueryRetrieveLevel, ds.StudyInstanceUID = "STUDY", ""
                assert [s.Status for s, _ in assoc.send_c_find(ds, cx.FIND_MODELS["S"])] == [0]
                assoc.release()
            else:
                assert assoc.is_rejected
                assert "Calling AE title not recognised" in assoc.acceptor.primitive.reason_str
    finally:
        server.shutdown()


def test_echo_command(pacs: dict) -> None:
    from click.testing import CliRunner

    from gateway.cli import main
    ok = CliRunner().invoke(main, ["echo", pacs["address"]])
    assert ok.exit_code == 0 and f"-> {pacs['address']}: 0x0000 Success in" in ok.output
    port = free_port()
    down = CliRunner().invoke(main, ["echo", "--timeout", "2", f"PACS@127.0.0.1:{port}"])
    assert down.exit_code == 1
    assert f"peer PACS@127.0.0.1:{port} is unreachable (connection refused)" in down.output
    bad = CliRunner().invoke(main, ["echo", "nonsense"])
    assert bad.exit_code == 2 and "expected AET@HOST:PORT" in bad.output


def test_a_stopping_worker_releases_its_pacs_associations(tmp_path: Path, artifacts_dir: Path) -> None:
    """gunicorn's worker_exit closes the app: the pooled association with the PACS ends with
    an A-RELEASE (PS3.8 7.2), not with the TCP connection simply dropped."""
    from pynetdicom import evt

    from tests.support.procs import start_gateway
    port = free_port()
    ends: list[str] = []
    settings = scp_settings(tmp_path / "pacs", port)
    archive = open_local(Settings().replace(data_dir=tmp_path / "pacs"))
    archive.store(make_file(tmp_path / "a.dcm", sop="a", series="s", study="st"))
    server = scp.build_ae(settings).start_server(
        ("127.0.0.1", port), block=False,
        evt_handlers=[*scp.event_handlers(archive, settings),
                      (evt.EVT_RELEASED, lambda e: ends.append("released")),
                      (evt.EVT_ABORTED, lambda e: ends.append("aborted")),
                      (evt.EVT_CONN_CLOSE, lambda e: ends.append("closed"))])
    try:
        gw = start_gateway(tmp_path / "cache", artifacts_dir / "logs", workers=1,
                           env={"GATEWAY_PACS": f"PACS@127.0.0.1:{port}"})
        try:
            studies = __import__("requests").get(gw.url + "/dicomweb/studies", timeout=30)
            assert studies.status_code == 200 and len(studies.json()) == 1
            assert ends == []  # the association stays pooled while the worker runs
        finally:
            gw.stop()
        assert ends[:1] == ["released"], ends
    finally:
        server.shutdown()
