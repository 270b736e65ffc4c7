"""Failures of the PACS behind the gateway, with a real Orthanc that is down, killed in
the middle of a C-GET, rejecting us, or not knowing our AE; a malformed query; a PACS
that never answers. Each answers clearly (503/502/504/400 naming the PACS and the
DIMSE status), leaves no partial instance in the cache, and the next request after
recovery works. Also: the first instances of a series are served while it arrives."""
from __future__ import annotations

import io
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Iterator

import orjson
import pydicom
import pytest
import requests

from gateway.archive import Level, Query, UidPath
from gateway.archive.local import open_local
from gateway.ingest.importer import run_import
from gateway.archive.errors import InvalidQuery, UpstreamError, UpstreamTimeout
from gateway.backends.pacs.archive import RemoteArchive
from gateway.config import Settings
from gateway.synth import write_cohort
from tests.support.orthanc import Orthanc, prepare_orthanc
from tests.support.procs import GatewayServer, free_port, start_gateway, wait_until
from tests.support.remote import cache_consistent, remote_settings, start_scp

pytestmark = [pytest.mark.orthanc, pytest.mark.timeout(300)]
AET = "TCIAGW"
SLICES = 64


@pytest.fixture(scope="module")
def big_ct(tmp_path_factory, artifacts_dir: Path) -> dict:
    """A 64-slice chest CT (512x512) loaded into an Orthanc storage dir we copy per test."""
    root = tmp_path_factory.mktemp("big-ct")
    cohort = write_cohort(root / "cohort", patients=1, seed=3, ct_slices=SLICES, xr_size=128,
                          ct_fraction=1.0)
    orthanc = prepare_orthanc(root / "pacs", artifacts_dir / "logs").start()
    try:
        orthanc.load([cohort.root])
    finally:
        orthanc.stop()
    headers = [pydicom.dcmread(p, stop_before_pixels=True)
               for p in sorted(Path(cohort.root).rglob("*.dcm"))]  # storescu's order
    ct = [ds for ds in headers if ds.Modality == "CT"]
    return {"storage": root / "pacs" / "storage", "study": ct[0].StudyInstanceUID,
            "series": ct[0].SeriesInstanceUID, "studies": cohort.studies,
            "last_stored": ct[-1].SOPInstanceUID, "cohort": Path(cohort.root)}


@pytest.fixture
def pacs_factory(tmp_path: Path, big_ct: dict, artifacts_dir: Path) -> Iterator:
    """Unstarted Orthancs on fresh ports, each with a copy of the loaded storage."""
    made: list[Orthanc] = []

    def make(**config) -> Orthanc:
        root = tmp_path / f"pacs{len(made)}"
        shutil.copytree(big_ct["storage"], root / "storage")
        orthanc = prepare_orthanc(root, artifacts_dir / "logs", **config)
        made.append(orthanc)
        return orthanc
    yield make
    for orthanc in made:
        orthanc.stop()


@pytest.fixture
def gateway_for(tmp_path: Path, artifacts_dir: Path) -> Iterator:
    servers: list[GatewayServer] = []

    def start(pacs_address: str, **env: str) -> GatewayServer:
        server = start_gateway(tmp_path / "gw", artifacts_dir / "logs", workers=1,
                               env={"GATEWAY_PACS": pacs_address, "GATEWAY_AE_TITLE": AET, **env})
        servers.append(server)
        return server
    yield start
    for server in servers:
        server.stop()


def cache_of(server: GatewayServer):
    return open_local(Settings().replace(data_dir=server.data_dir))


def series_url(server: GatewayServer, big_ct: dict) -> str:
    return (f"{server.url}/dicomweb/studies/{big_ct['study']}/series/{big_ct['series']}"
            "/metadata")


def test_pacs_down_at_start(pacs_factory, gateway_for, big_ct: dict) -> None:
    pacs = pacs_factory()
    gateway = gateway_for(pacs.address)
    for path in ("/dicomweb/studies", f"/dicomweb/studies/{big_ct['study']}/metadata"):
        response = requests.get(gateway.url + path, timeout=60)
        assert response.status_code == 503
        assert f"PACS {pacs.address} is unreachable" in response.json()["message"]
    assert requests.get(gateway.url + "/readyz", timeout=60).status_code == 503
    assert cache_consistent(cache_of(gateway))
    pacs.start()  # recovery
    assert len(requests.get(gateway.url + "/dicomweb/studies", timeout=60).json()) == \
        big_ct["studies"]
    assert len(requests.get(series_url(gateway, big_ct), timeout=120).json()) == SLICES


def test_cached_series_is_served_with_the_pacs_stopped(pacs_factory, gateway_for,
                                                      big_ct: dict) -> None:
    """The second metadata request makes no association: it works with no PACS at all."""
    pacs = pacs_factory().start()
    gateway = gateway_for(pacs.address)
    first = requests.get(series_url(gateway, big_ct), timeout=120)
    assert first.status_code == 200 and len(first.json()) == SLICES
    pacs.stop()
    second = requests.get(series_url(gateway, big_ct), timeout=60)
    assert second.status_code == 200 and second.content == first.content
    assert requests.get(gateway.url + "/dicomweb/studies", timeout=60).status_code == 503


def test_pacs_killed_in_the_middle_of_a_c_get(pacs_factory, gateway_for, big_ct: dict) -> None:
    pacs = pacs_factory().start()
    gateway = gateway_for(pacs.address)
    cache = cache_of(gateway)
    result: list = []
    request = threading.Thread(target=lambda: result.append(
        requests.get(series_url(gateway, big_ct), timeout=120)))
    request.start()
    wait_until(lambda: cache.index.counts()["instances"] > 0, timeout=60, what="first instance",
               interval=0.005)
    pacs.kill()
    request.join()
    response = result[0]
    assert response.status_code in (502, 503), response.text
    assert f"PACS {pacs.address}" in response.json()["message"]
    assert 0 < cache.index.counts()["instances"] < SLICES
    assert cache_consistent(cache)
    pacs.start()  # recovery: the same request now completes the series
    assert len(requests.get(series_url(gateway, big_ct), timeout=120).json()) == SLICES
    assert cache.index.counts()["instances"] == SLICES and cache_consistent(cache)


def test_pacs_that_rejects_the_association(pacs_factory, gateway_for, big_ct: dict) -> None:
    pacs = pacs_factory(aet="OTHER")
    pacs.start()
    address = f"ORTHANC@127.0.0.1:{pacs.dicom_port}"
    gateway = gateway_for(address)
    response = requests.get(gateway.url + "/dicomweb/studies", timeout=60)
    assert response.status_code == 502
    message = response.json()["message"]
    assert f"PACS {address} rejected the association from {AET}" in message
    assert "Called AE title not recognised" in message
    pacs.stop()  # recovery: the PACS answers to the AE title we call
    pacs.config["DicomAet"] = pacs.aet = "ORTHANC"
    pacs.start()
    assert len(requests.get(gateway.url + "/dicomweb/studies", timeout=60).json()) == \
        big_ct["studies"]
    assert cache_consistent(cache_of(gateway))


def _move_archive(tmp_path: Path, address: str, move_port: int) -> RemoteArchive:
    settings = remote_settings(tmp_path / "cache", address, pacs_retrieve="c-move",
                               pacs_move_bind=f"127.0.0.1:{move_port}")
    return RemoteArchive(settings, cache=open_local(settings))


def test_move_destination_unknown_to_orthanc(pacs_factory, big_ct: dict, tmp_path: Path) -> None:
    """Orthanc 1.10 answers 0xC000 (not 0xA801) for an AE it does not know: the message
    says what to check."""
    pacs = pacs_factory().start()  # its DicomModalities do not list our AE
    move_port = free_port()
    archive = _move_archive(tmp_path, pacs.address, move_port)
    series = UidPath(big_ct["study"], big_ct["series"])
    try:
        with pytest.raises(UpstreamError) as err:
            archive.metadata(series)
        assert err.value.status == 0xC000
        assert f"PACS {pacs.address} answered C-MOVE with 0xC000" in err.value.message
        assert f"if the PACS does not know our AE {AET} as a C-MOVE destination, add {AET} " \
               f"at this host, port {move_port}" in err.value.message
        assert archive.cache.index.counts()["instances"] == 0 and cache_consistent(archive.cache)
        pacs.stop()  # recovery: the PACS learns our AE
        pacs.config["DicomModalities"] = {AET: [AET, "127.0.0.1", move_port]}
        pacs.start()
        assert len(orjson.loads(archive.metadata(series))) == SLICES
        assert archive.scu.stats["C-MOVE"] == 2 and cache_consistent(archive.cache)
    finally:
        archive.close()


def test_move_destination_unknown_0xA801(big_ct: dict, tmp_path: Path,
                                         artifacts_dir: Path) -> None:
    """A PACS that answers 0xA801 (here our own SCP, whose KNOWN_AES lacks us)."""
    data = tmp_path / "pacs-data"
    run_import(open_local(Settings().replace(data_dir=data)), [big_ct["cohort"]])
    logs, move_port = artifacts_dir / "logs", free_port()
    scp = start_scp(data, logs, aet="PACS")
    archive = _move_archive(tmp_path, f"PACS@127.0.0.1:{scp.port}", move_port)
    series = UidPath(big_ct["study"], big_ct["series"])
    try:
        with pytest.raises(UpstreamError) as err:
            archive.metadata(series)
        assert err.value.status == 0xA801
        assert ("answered C-MOVE with 0xA801 Refused: Move Destination unknown: the PACS must "
                f"know our AE as a C-MOVE destination (add {AET} at this host, port "
                f"{move_port}") in err.value.message
        assert archive.cache.index.counts()["instances"] == 0 and cache_consistent(archive.cache)
        scp.proc.stop()  # recovery: the PACS learns our AE
        scp = start_scp(data, logs, aet="PACS", port=scp.port,
                        known_aes=f"{AET}@127.0.0.1:{move_port}")
        assert len(orjson.loads(archive.metadata(series))) == SLICES
        assert cache_consistent(archive.cache)
    finally:
        archive.close()
        scp.proc.stop()


def test_malformed_query_is_refused_before_the_pacs(pacs_factory, gateway_for, big_ct: dict,
                                                    tmp_path: Path) -> None:
    pacs = pacs_factory().start()
    gateway = gateway_for(pacs.address)
    for query, attribute in (("StudyDate=2020-13-45x", "StudyDate"),
                             ("NoSuchAttribute=1", "NoSuchAttribute"),
                             ("StudyInstanceUID=1.2.x", "StudyInstanceUID")):
        response = requests.get(f"{gateway.url}/dicomweb/studies?{query}", timeout=60)
        assert response.status_code == 400 and response.json()["attribute"] == attribute
    assert len(requests.get(gateway.url + "/dicomweb/studies", timeout=60).json()) == \
        big_ct["studies"]
    settings = remote_settings(tmp_path / "cache", pacs.address)
    archive = RemoteArchive(settings, cache=open_local(settings))
    with pytest.raises(InvalidQuery):
        archive.search(Query(Level.STUDY, {"StudyDate": "2020-13-45x"}))
    assert sum(archive.scu.stats.values()) == 0  # refused without touching the PACS
    archive.close()


def test_silent_pacs_times_out(tmp_path: Path) -> None:
    with socket.socket() as silent:  # completes TCP handshakes, never answers A-ASSOCIATE
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        address = f"ORTHANC@127.0.0.1:{silent.getsockname()[1]}"
        settings = remote_settings(tmp_path / "cache", address, pacs_acse_timeout=1.0)
        archive = RemoteArchive(settings, cache=open_local(settings))
        started = time.monotonic()
        with pytest.raises(UpstreamTimeout, match=f"PACS {address} did not answer the "
                                                  "association request within 1 s"):
            archive.search(Query(Level.STUDY))
        assert time.monotonic() - started < 10
        archive.close()


def test_first_instances_are_served_while_the_series_arrives(pacs_factory, big_ct: dict,
                                                             tmp_path: Path) -> None:
    pacs = pacs_factory().start()
    settings = remote_settings(tmp_path / "cache", pacs.address)
    archive = RemoteArchive(settings, cache=open_local(settings))
    try:
        series = UidPath(big_ct["study"], big_ct["series"])
        target = big_ct["last_stored"]  # Orthanc 1.10's C-GET sends it first
        inst = archive.instance(UidPath(series.study, series.series, target))
        still_arriving = series.series in archive._flights
        arrived_then = archive.cache.index.counts()["instances"]
        frame = inst.read_frame(1)
        assert still_arriving and arrived_then < SLICES
        assert len(frame) == 512 * 512 * 2 and inst.path.stat().st_size == inst.size
        assert frame == pydicom.dcmread(io.BytesIO(pacs.instance_file(target))).PixelData
        archive.metadata(series)  # the rest completes
        assert archive.cache.index.counts()["instances"] == SLICES
    finally:
        archive.close()
