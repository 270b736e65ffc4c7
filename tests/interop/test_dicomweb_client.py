"""DICOMweb conformance with the real ``dicomweb-client`` library against the gateway
under gunicorn: every search filter, paging with ``get_remaining``, retrieval of
studies/series/instances (identical bytes with transfer-syntax=*), metadata, frames,
bulk data, rendered images, and STOW of a body large enough to be sent chunked."""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicomweb_client import DICOMwebClient
from PIL import Image
from pydicom.pixels import pixel_array

from tests.support.dicomfiles import make_file
from tests.support.procs import start_gateway

ANY = (("application/dicom", "*"),)
EXPLICIT_LE = "1.2.840.10008.1.2.1"


@dataclass(frozen=True)
class Item:
    """One stored file as the cohort wrote it (ground truth for the assertions)."""

    path: Path
    patient_id: str
    patient_name: str
    study: str
    series: str
    sop: str
    modality: str
    study_date: str
    study_time: str  # HHMMSS, as the index compares it
    study_description: str
    accession: str
    series_number: int
    instance_number: int
    transfer_syntax: str


@pytest.fixture(scope="module")
def items(small_cohort) -> list[Item]:
    out = []
    for path in sorted(Path(small_cohort.root).rglob("*.dcm")):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        out.append(Item(path, ds.PatientID, str(ds.PatientName), ds.StudyInstanceUID,
                        ds.SeriesInstanceUID, ds.SOPInstanceUID, ds.Modality, ds.StudyDate,
                        str(ds.StudyTime).split(".")[0].ljust(6, "0"),
                        ds.get("StudyDescription", ""), ds.get("AccessionNumber", ""),
                        int(ds.SeriesNumber), int(ds.InstanceNumber),
                        str(ds.file_meta.TransferSyntaxUID)))
    return out


@pytest.fixture(scope="module")
def client(gateway_server) -> DICOMwebClient:
    return DICOMwebClient(url=f"{gateway_server.url}/dicomweb")


def uids(results: list[dict], tag: str) -> set[str]:
    return {r[tag]["Value"][0] for r in results}


def studies_where(items: list[Item], pred) -> set[str]:
    return {i.study for i in items if pred(i)}


# ------------------------------------------------------------------- QIDO-RS
def test_search_all_studies_with_counts_and_retrieve_urls(client, items, gateway_server) -> None:
    found = client.search_for_studies()
    assert uids(found, "0020000D") == {i.study for i in items}
    for study in found:
        uid = study["0020000D"]["Value"][0]
        assert study["00201208"]["Value"] == [sum(i.study == uid for i in items)]
        assert study["00081190"]["Value"] == [f"{gateway_server.url}/dicomweb/studies/{uid}"]


def _first(items: list[Item]) -> Item:
    return items[0]


@pytest.mark.parametrize("make_filters, pred", [
    (lambda it: {"PatientID": it.patient_id}, lambda it, i: i.patient_id == it.patient_id),
    (lambda it: {"00100020": it.patient_id}, lambda it, i: i.patient_id == it.patient_id),
    (lambda it: {"PatientID": it.patient_id[:-3] + "*"},
     lambda it, i: i.patient_id.startswith(it.patient_id[:-3])),
    (lambda it: {"PatientID": it.patient_id[:-1] + "?"},
     lambda it, i: i.patient_id[:-1] == it.patient_id[:-1]),
    (lambda it: {"PatientName": it.patient_name.lower()},
     lambda it, i: i.patient_name.lower() == it.patient_name.lower()),
    (lambda it: {"StudyDate": f"{it.study_date}-"}, lambda it, i: i.study_date >= it.study_date),
    (lambda it: {"StudyDate": f"-{it.study_date}"}, lambda it, i: i.study_date <= it.study_date),
    (lambda it: {"StudyDate": f"{it.study_date}-{it.study_date}"},
     lambda it, i: i.study_date == it.study_date),
    (lambda it: {"StudyTime": f"{it.study_time}-"}, lambda it, i: i.study_time >= it.study_time),
    (lambda it: {"StudyTime": f"-{it.study_time[:4]}"},
     lambda it, i: i.study_time <= it.study_time[:4] + "00"),  # HHMM = HHMM00
    (lambda it: {"StudyDate": f"{it.study_date}-{it.study_date}", "StudyTime": "000000-235959"},
     lambda it, i: i.study_date == it.study_date),
    (lambda it: {"AccessionNumber": it.accession}, lambda it, i: i.accession == it.accession),
    (lambda it: {"StudyDescription": "*" + it.study_description.lower()[3:9] + "*"},
     lambda it, i: it.study_description.lower()[3:9] in i.study_description.lower()),
    (lambda it: {"ModalitiesInStudy": "CT"}, lambda it, i: i.modality == "CT"),
    (lambda it: {"Modality": "CT"}, lambda it, i: i.modality == "CT"),   # OHIF at study level
    (lambda it: {"ModalitiesInStudy": "CR,DX"}, lambda it, i: i.modality in ("CR", "DX")),
])
def test_study_search_filters(client, items, make_filters, pred) -> None:
    probe = next(i for i in items if i.modality != "CT")
    expected = studies_where(items, lambda i: pred(probe, i))
    found = client.search_for_studies(search_filters=make_filters(probe))
    assert uids(found, "0020000D") == expected and expected


def test_study_uid_lists_and_fuzzy_names(client, items) -> None:
    studies = sorted({i.study for i in items})[:3]
    found = client.search_for_studies(search_filters={"StudyInstanceUID": ",".join(studies)})
    assert uids(found, "0020000D") == set(studies)
    found = client.search_for_studies(search_filters={"StudyInstanceUID": "\\".join(studies)})
    assert uids(found, "0020000D") == set(studies)
    probe = items[0]
    word = probe.patient_name.split("^")[-1][:4].lower()
    found = client.search_for_studies(fuzzymatching=True, search_filters={"PatientName": word})
    assert probe.study in uids(found, "0020000D")


def test_series_and_instance_searches(client, items) -> None:
    ct = [i for i in items if i.modality == "CT"]
    series = client.search_for_series(ct[0].study)
    assert uids(series, "0020000E") == {i.series for i in items if i.study == ct[0].study}
    assert series[0]["00201209"]["Value"] == [len(ct)]
    found = client.search_for_series(search_filters={"Modality": "CT"})
    assert uids(found, "0020000E") == {i.series for i in ct}
    instances = client.search_for_instances(ct[0].study, ct[0].series)
    assert uids(instances, "00080018") == {i.sop for i in ct}
    found = client.search_for_instances(search_filters={"InstanceNumber": "3", "Modality": "CT"})
    assert uids(found, "00080018") == {i.sop for i in ct if i.instance_number == 3}
    two = [ct[0].sop, ct[1].sop]
    found = client.search_for_instances(ct[0].study, search_filters={"SOPInstanceUID": two})
    assert uids(found, "00080018") == set(two)


def test_includefields(client, items) -> None:
    found = client.search_for_studies(fields=["StudyDescription", "00080090", "Manufacturer"],
                                      limit=1)
    assert {"00081030", "00080090", "00080070"} <= set(found[0])
    assert found[0]["00080070"]["Value"]  # not indexed: taken from the first instance
    found = client.search_for_series(items[0].study, fields=["all"])
    assert "00280010" in found[0] and "7FE00010" not in found[0]


def test_get_remaining_pages_through_everything(client, items) -> None:
    studies = client.search_for_studies(limit=2, get_remaining=True)
    assert sorted(uids(studies, "0020000D")) == sorted({i.study for i in items})
    assert len(studies) == len({i.study for i in items})  # no duplicates, nothing missed
    instances = client.search_for_instances(limit=7, get_remaining=True)
    assert sorted(r["00080018"]["Value"][0] for r in instances) == sorted(i.sop for i in items)


# ------------------------------------------------------------------- WADO-RS
def _same_file(ds: pydicom.Dataset, path: Path) -> bool:
    out = io.BytesIO()
    ds.save_as(out)  # written like the original: identical iff the bytes were identical
    return out.getvalue() == path.read_bytes()


def test_retrieve_instance_series_study_as_stored(client, items) -> None:
    by_sop = {i.sop: i for i in items}
    compressed = next(i for i in items if i.transfer_syntax != EXPLICIT_LE)
    ds = client.retrieve_instance(compressed.study, compressed.series, compressed.sop,
                                  media_types=ANY)
    assert _same_file(ds, compressed.path)
    ct = next(i for i in items if i.modality == "CT")
    got = client.retrieve_series(ct.study, ct.series, media_types=ANY)
    expected = sorted(i.sop for i in items if i.series == ct.series)
    assert sorted(d.SOPInstanceUID for d in got) == expected
    assert all(_same_file(d, by_sop[d.SOPInstanceUID].path) for d in got)
    got = client.retrieve_study(compressed.study, media_types=ANY)
    assert {d.SOPInstanceUID for d in got} == {i.sop for i in items if i.study == compressed.study}


@pytest.mark.parametrize("target", [EXPLICIT_LE, "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.90"])
def test_retrieve_transcodes_losslessly_on_request(client, items, target) -> None:
    for stored in {i.transfer_syntax: i for i in items}.values():
        ds = client.retrieve_instance(stored.study, stored.series, stored.sop,
                                      media_types=(("application/dicom", target),))
        assert ds.file_meta.TransferSyntaxUID == target
        assert ds.SOPInstanceUID == stored.sop
        assert np.array_equal(ds.pixel_array, pixel_array(str(stored.path)))


def test_unproducible_transfer_syntax_is_406(client, items) -> None:
    j2k = next(i for i in items if i.transfer_syntax == "1.2.840.10008.1.2.4.90")
    with pytest.raises(Exception, match="406"):
        client.retrieve_instance(j2k.study, j2k.series, j2k.sop,
                                 media_types=(("application/dicom", "1.2.840.10008.1.2.4.50"),))


def test_metadata_and_bulkdata(client, items, gateway_server) -> None:
    ct = [i for i in items if i.modality == "CT"]
    meta = client.retrieve_series_metadata(ct[0].study, ct[0].series)
    assert len(meta) == len(ct)
    in_study = sum(i.study == ct[0].study for i in items)
    assert len(client.retrieve_study_metadata(ct[0].study)) == in_study
    one = client.retrieve_instance_metadata(ct[0].study, ct[0].series, ct[0].sop)
    uri = one["7FE00010"]["BulkDataURI"]
    assert uri.startswith(f"{gateway_server.url}/dicomweb/studies/{ct[0].study}/")
    [pixels] = client.retrieve_bulkdata(uri)
    assert pixels == pydicom.dcmread(ct[0].path).PixelData


def test_frames(client, items) -> None:
    ct = next(i for i in items if i.modality == "CT")
    [frame] = client.retrieve_instance_frames(ct.study, ct.series, ct.sop, [1])
    assert frame == pydicom.dcmread(ct.path).PixelData
    j2k = next(i for i in items if i.transfer_syntax == "1.2.840.10008.1.2.4.90")
    [native] = client.retrieve_instance_frames(
        j2k.study, j2k.series, j2k.sop, [1],
        media_types=(("application/octet-stream", EXPLICIT_LE),))
    assert native == pixel_array(str(j2k.path)).astype("<u2").tobytes()
    [stored] = client.retrieve_instance_frames(j2k.study, j2k.series, j2k.sop, [1],
                                               media_types=("image/jp2",))
    assert stored[:4] in (b"\xff\x4f\xff\x51", b"\x00\x00\x00\x0c")  # J2K codestream / JP2
    with pytest.raises(Exception, match="404"):
        client.retrieve_instance_frames(ct.study, ct.series, ct.sop, [2])


def test_rendered(client, items) -> None:
    ct = next(i for i in items if i.modality == "CT")
    jpeg = client.retrieve_instance_rendered(ct.study, ct.series, ct.sop,
                                             media_types=("image/jpeg",))
    image = Image.open(io.BytesIO(jpeg))
    assert image.format == "JPEG" and image.size == (512, 512)
    png = client.retrieve_instance_rendered(ct.study, ct.series, ct.sop, media_types=("image/png",),
                                            params={"viewport": "128,128"})
    assert Image.open(io.BytesIO(png)).size == (128, 128)
    frame = client.retrieve_instance_frames_rendered(ct.study, ct.series, ct.sop, [1],
                                                     media_types=("image/jpeg",))
    assert frame[:2] == b"\xff\xd8"


# ------------------------------------------------------------------- STOW-RS
@pytest.fixture
def writable_server(data_copy: Path, artifacts_dir: Path):
    server = start_gateway(data_copy, artifacts_dir / "logs")
    yield server
    server.stop()


def test_store_instances_larger_than_a_megabyte_goes_chunked(writable_server, tmp_path) -> None:
    client = DICOMwebClient(url=f"{writable_server.url}/dicomweb")
    paths = [make_file(tmp_path / f"{n}.dcm", patient="STOW-1", study="stow-study",
                       series="stow-series", sop=f"stow-{n}", size=800, InstanceNumber=n)
             for n in (1, 2)]
    datasets = [pydicom.dcmread(p) for p in paths]
    assert sum(p.stat().st_size for p in paths) > 1_000_000  # the client sends it chunked
    result = client.store_instances(datasets)
    stored = {item.ReferencedSOPInstanceUID for item in result.ReferencedSOPSequence}
    assert stored == {d.SOPInstanceUID for d in datasets}
    assert "FailedSOPSequence" not in result
    found = client.search_for_instances(datasets[0].StudyInstanceUID)
    assert uids(found, "00080018") == stored
    back = client.retrieve_instance(datasets[0].StudyInstanceUID, datasets[0].SeriesInstanceUID,
                                    datasets[0].SOPInstanceUID, media_types=ANY)
    assert _same_file(back, paths[0])
