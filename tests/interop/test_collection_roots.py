"""``/collections/{name}/dicomweb`` with the real ``dicomweb-client`` against the gateway
under gunicorn, in an archive holding two collections (and a study of none): searches,
retrieval, metadata and frames answer only that collection, links start at the collection
root, another collection's UID answers byte for byte like an unknown UID, STOW outside the
collection is refused (0x0124) and an unknown collection is a 404 in the family's JSON."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pydicom
import pytest
import requests
from dicomweb_client import DICOMwebClient

from gateway.archive.local import open_local
from gateway.config import Settings
from gateway.ingest.importer import run_import
from tests.support.dicomfiles import make_file, uid
from tests.support.procs import GatewayServer, start_gateway

AR, RICORD = "COVID-19-AR", "MIDRC-RICORD-1C"
LAYOUT = [("P1", AR, "A", "A1", 2), ("P1", AR, "B", "B1", 3), ("P2", RICORD, "C", "C1", 2),
          ("P3", None, "D", "D1", 1)]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, artifacts_dir: Path) -> Iterator[GatewayServer]:
    src, data = tmp_path_factory.mktemp("roots-src"), tmp_path_factory.mktemp("roots-data")
    for pid, coll, study, ser, n in LAYOUT:
        for i in range(n):
            make_file(src / f"{ser}-{i}.dcm", patient=pid, study=study, series=ser,
                      sop=f"{ser}-{i}", InstanceNumber=i + 1, collection=coll, size=16,
                      AccessionNumber=f"ACC{study}")
    archive = open_local(Settings().replace(data_dir=data))
    assert run_import(archive, [src], progress=False).new == 8
    archive.close()
    gw = start_gateway(data, artifacts_dir / "logs", workers=1)
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def client(server: GatewayServer) -> DICOMwebClient:
    return DICOMwebClient(f"{server.url}/collections/{AR}/dicomweb")


def test_searches_answer_the_collection_only(client: DICOMwebClient, server: GatewayServer) -> None:
    studies = client.search_for_studies()
    assert sorted(s["00080050"]["Value"][0] for s in studies) == ["ACCA", "ACCB"]
    root = f"{server.url}/collections/{AR}/dicomweb/studies/"
    assert all(s["00081190"]["Value"][0].startswith(root) for s in studies)
    assert len(client.search_for_series()) == 2
    assert len(client.search_for_instances()) == 5
    assert client.search_for_studies(search_filters={"PatientID": "P2"}) == []
    everything = DICOMwebClient(f"{server.url}/dicomweb").search_for_studies()
    assert len(everything) == 4
    ricord = DICOMwebClient(f"{server.url}/collections/{RICORD}/dicomweb")
    assert [s["00080050"]["Value"][0] for s in ricord.search_for_studies()] == ["ACCC"]


def test_retrieval_metadata_and_frames(client: DICOMwebClient, server: GatewayServer) -> None:
    study, series = uid("study", "B"), uid("series", "B1")
    instances = client.retrieve_study(study)
    assert sorted(i.SOPInstanceUID for i in instances) == sorted(
        uid("sop", f"B1-{i}") for i in range(3))
    meta = client.retrieve_series_metadata(study, series)
    bulk = meta[0]["7FE00010"]["BulkDataURI"]
    assert bulk.startswith(f"{server.url}/collections/{AR}/dicomweb/studies/{study}/")
    (frame,) = client.retrieve_instance_frames(study, series, uid("sop", "B1-0"), [1])
    assert len(frame) == 16 * 16 * 2


def test_other_collection_answers_like_unknown(server: GatewayServer,
                                               client: DICOMwebClient) -> None:
    base = f"{server.url}/collections/{AR}/dicomweb"
    hidden = f"studies/{uid('study', 'C')}/series/{uid('series', 'C1')}"
    unknown = f"studies/{uid('study', 'Z')}/series/{uid('series', 'Z1')}"
    for suffix in ("/metadata", "", f"/instances/{uid('sop', 'C1-0')}/frames/1"):
        u_suffix = suffix.replace(uid("sop", "C1-0"), uid("sop", "Z1-0"))
        got = requests.get(f"{base}/{hidden}{suffix}", timeout=30)
        ref = requests.get(f"{base}/{unknown}{u_suffix}", timeout=30)
        assert got.status_code == ref.status_code == 404
        swap = {uid("study", "C"): uid("study", "Z"), uid("series", "C1"): uid("series", "Z1"),
                uid("sop", "C1-0"): uid("sop", "Z1-0")}
        body = got.content
        for a, b in swap.items():
            body = body.replace(a.encode(), b.encode())
        assert body == ref.content
        assert got.headers["Content-Type"] == ref.headers["Content-Type"]
    with pytest.raises(requests.HTTPError) as exc:
        client.retrieve_study(uid("study", "C"))
    assert exc.value.response.status_code == 404
    # and the same study through /dicomweb exists
    assert requests.get(f"{server.url}/dicomweb/{hidden}/metadata", timeout=30).status_code == 200


def test_stow_into_a_collection_root(client: DICOMwebClient, tmp_path: Path) -> None:
    unmarked = make_file(tmp_path / "n.dcm", patient="P8", study="N", sop="N-0",
                         AccessionNumber="ACCN")
    foreign = make_file(tmp_path / "f.dcm", patient="P9", study="F", sop="F-0",
                        collection=RICORD)
    stored = client.store_instances([pydicom.dcmread(unmarked)])
    assert "00081199" in stored and "00081198" not in stored
    assert "ACCN" in {s["00080050"]["Value"][0] for s in client.search_for_studies()}
    with pytest.raises(requests.HTTPError) as exc:
        client.store_instances([pydicom.dcmread(foreign)])
    failed = exc.value.response.json()["00081198"]["Value"][0]
    assert failed["00081197"]["Value"] == [0x0124]


def test_unknown_collection_is_a_404(server: GatewayServer) -> None:
    r = requests.get(f"{server.url}/collections/NO-SUCH/dicomweb/studies", timeout=30)
    assert r.status_code == 404
    assert r.headers["Content-Type"] == "application/json"
    assert r.json()["message"] == "no collection 'NO-SUCH' in this archive"
