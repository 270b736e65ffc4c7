"""The twin against the real index: series for series, what NCI IDC publishes of the collection.

The reference is read here straight from idc-index-data's parquet file (not through
``gateway.synth.skeleton``), and the twin from its files on disk: one header per series and
the file count of every series folder.
"""
from __future__ import annotations

import csv
import os
import re
from collections import Counter
from datetime import datetime
from pathlib import Path

import pydicom
import pytest

from gateway.synth import write_twin
from gateway.synth.layout import METADATA_COLUMNS

COLLECTIONS = {"COVID-19-AR": (105, 256, 461, 31935), "MIDRC-RICORD-1C": (361, 998, 1241, 1257)}
pytestmark = pytest.mark.slow  # writes 33,192 files (~25 s of 2 cores), reads a third of them


def real_series(name: str) -> list[dict]:
    import idc_index_data
    import pyarrow.parquet as pq

    path = Path(idc_index_data.__file__).parent / "idc_index.parquet"
    table = pq.read_table(path, filters=[("collection_id", "=", name.lower().replace("-", "_"))],
                          columns=["PatientID", "StudyInstanceUID", "SeriesInstanceUID",
                                   "StudyDate", "Modality", "SOPClassUID", "TransferSyntaxUID",
                                   "SeriesDescription", "instanceCount",
                                   "PhotometricInterpretation", "Manufacturer"])
    return table.to_pylist()


def twin_series(root: Path) -> list[dict]:
    """One row per series folder: its first file's header and how many files it holds."""
    out = []
    for folder in sorted(p for p in root.glob("*/*/*") if p.is_dir()):
        files = sorted(folder.glob("*.dcm"))
        ds = pydicom.dcmread(files[0], stop_before_pixels=True)
        out.append({"PatientID": ds.PatientID, "StudyInstanceUID": ds.StudyInstanceUID,
                    "SeriesInstanceUID": ds.SeriesInstanceUID, "StudyDate": ds.StudyDate,
                    "StudyTime": ds.StudyTime, "StudyDescription": ds.get("StudyDescription"),
                    "Modality": ds.Modality, "SOPClassUID": ds.SOPClassUID,
                    "TransferSyntaxUID": ds.file_meta.TransferSyntaxUID,
                    "SeriesDescription": ds.get("SeriesDescription"), "instanceCount": len(files),
                    "PhotometricInterpretation": ds.get("PhotometricInterpretation"),
                    "Manufacturer": ds.get("Manufacturer") or None, "folder": folder})
    return out


@pytest.fixture(scope="module", params=list(COLLECTIONS))
def twin(request, tmp_path_factory):
    name = request.param
    summary = write_twin(tmp_path_factory.mktemp("twin"), name, full=True, xr_size=64,
                         ct_size=64, seed=3)
    return name, summary, twin_series(summary.root), real_series(name)


def _shape(rows: list[dict]) -> Counter:
    return Counter((r["Modality"], r["SOPClassUID"], r["TransferSyntaxUID"],
                    r["SeriesDescription"], r["instanceCount"], r["PhotometricInterpretation"],
                    r["Manufacturer"]) for r in rows)


def test_counts_equal_the_real_collection(twin) -> None:
    name, summary, mine, real = twin
    want = COLLECTIONS[name]
    for rows in (mine, real):
        got = (len({r["PatientID"] for r in rows}), len({r["StudyInstanceUID"] for r in rows}),
               len(rows), sum(r["instanceCount"] for r in rows))
        assert got == want
    assert (summary.patients, summary.studies, summary.series, summary.instances) == want
    assert len(list(summary.root.rglob("*.dcm"))) == want[3]


def test_every_series_has_its_real_counterpart(twin) -> None:
    """Modality, SOP class (Secondary Capture too), syntax, description, images, photometric
    interpretation and manufacturer: the same multiset."""
    _, _, mine, real = twin
    assert _shape(mine) == _shape(real)


def test_studies_per_patient_and_series_per_study(twin) -> None:
    _, _, mine, real = twin

    def per(rows: list[dict], outer: str, inner: str) -> Counter:
        groups: dict[str, set] = {}
        for r in rows:
            groups.setdefault(r[outer], set()).add(r[inner])
        return Counter(len(v) for v in groups.values())
    for outer, inner in (("PatientID", "StudyInstanceUID"), ("StudyInstanceUID",
                                                               "SeriesInstanceUID")):
        assert per(mine, outer, inner) == per(real, outer, inner)


def test_identifiers_are_synthetic_and_dates_keep_the_real_spread(twin) -> None:
    name, _, mine, real = twin
    for key in ("PatientID", "StudyInstanceUID", "SeriesInstanceUID"):
        assert not {r[key] for r in mine} & {r[key] for r in real}, key
    shape = lambda pid: (re.sub(r"\d+$", "", pid), len(pid))  # noqa: E731
    assert {shape(r["PatientID"]) for r in mine} <= {shape(r["PatientID"]) for r in real}
    days = sorted(datetime.strptime(r["StudyDate"], "%Y%m%d") for r in mine)
    real_days = sorted(datetime.strptime(r["StudyDate"], "%Y-%m-%d") for r in real)
    assert days[-1] - days[0] == real_days[-1] - real_days[0]
    shift = days[0] - real_days[0]
    assert shift.days % 7 == 0 and shift.days != 0  # whole weeks: weekdays survive


def test_metadata_csv_and_license(twin) -> None:
    name, summary, mine, _ = twin
    raw = summary.metadata_csv.read_bytes()
    assert raw.count(b"\r\n") == len(mine) + 1 and raw.count(b"\n") == raw.count(b"\r\n")
    with summary.metadata_csv.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == METADATA_COLUMNS and len(METADATA_COLUMNS) == 17
    by_uid = {r["SeriesInstanceUID"]: r for r in mine}
    for row in rows:
        series = by_uid[row["Series UID"]]
        assert int(row["Number of Images"]) == series["instanceCount"]
        assert row["Collection"] == name and row["Modality"] == series["Modality"]
        location = summary.root.parent / row["File Location"]
        assert location.resolve() == series["folder"].resolve()
        assert re.fullmatch(r"\d+(\.\d\d)? (B|KB|MB|GB)", row["File Size"])
    licence = (summary.root / "LICENSE").read_text()
    assert "creativecommons.org/licenses/by" in licence and "Attribution" in licence


def test_covid_19_ar_has_its_clinical_sheet(twin) -> None:
    name, summary, mine, _ = twin
    if name != "COVID-19-AR":
        assert summary.xlsx is None and not list(summary.root.parent.glob("*.xlsx"))
        return
    from gateway.mapping.sheet import read_clinical
    sheets = read_clinical(summary.xlsx)
    assert {r["patient_id"] for r in sheets.patients} == {r["PatientID"] for r in mine}
    studies = {r["StudyInstanceUID"]: r for r in mine}
    assert len(sheets.imaging) == len(studies)
    for pid in {r["PatientID"] for r in mine}:
        rows = sorted((float(r["diagnosis_to_imaging_time_hrs"]), r["image_study_description"],
                       r["study_modality"]) for r in sheets.imaging if r["patient_id"] == pid)
        own = sorted((datetime.strptime(r["StudyDate"] + r["StudyTime"], "%Y%m%d%H%M%S"),
                      r["StudyDescription"], r["StudyInstanceUID"])
                     for r in studies.values() if r["PatientID"] == pid)
        assert [d for _, d, _ in rows] == [d for _, d, _ in own]  # same studies, same order
        for (hours, _, modality), (when, _, uid) in zip(rows, own):
            elapsed = (when - own[0][0]).total_seconds() / 3600  # the sheet's hours, exactly
            assert abs(hours - rows[0][0] - elapsed) < 1e-6
            assert modality in {r["Modality"] for r in mine if r["StudyInstanceUID"] == uid}


def test_fast_reader_equals_pydicom_on_every_series(twin) -> None:
    """Every file of both twins (every kind, SOP class and syntax; 33,192 files, ~3.5 min):
    the fast reader's DICOM JSON is pydicom's, Implicit VR included; none is declined.
    TWIN_SAMPLE_FILES=1 compares the first, middle and last file of each series instead."""
    import orjson

    from gateway.archive.local import dicomjson, ingest
    from tests.unit.test_dicomjson import pydicom_json
    _, _, mine, _ = twin
    syntaxes = set()
    for series in mine:
        files = sorted(series["folder"].glob("*.dcm"))
        if os.environ.get("TWIN_SAMPLE_FILES"):
            files = sorted({files[0], files[len(files) // 2], files[-1]})
        for path in files:
            fast = dicomjson.read(path, lambda tag: "{BULK}/" + tag)
            slow = ingest._pydicom(path, path.stat().st_size, "{BULK}/")
            assert orjson.dumps(dict(sorted(fast.doc.items()))) == orjson.dumps(
                dict(sorted(slow.doc.items()))), path
            assert (fast.bulk, fast.meta, fast.fragments) == (slow.bulk, slow.meta,
                                                               slow.fragments)
            mine_doc = {**fast.doc, "7FE00010": {"vr": fast.doc["7FE00010"]["vr"]}}
            assert dict(sorted(mine_doc.items())) == dict(sorted(pydicom_json(path).items()))
            assert fast.doc["00131010"] == {"vr": "LO", "Value": [twin[0]]}  # CTP block
            syntaxes.add(fast.meta["TransferSyntaxUID"])
    assert syntaxes == {r["TransferSyntaxUID"] for r in twin[3]}


def test_import_indexes_every_instance_with_its_collection(twin, tmp_path) -> None:
    """The acceptance line: the whole twin imports, every instance with its collection (from
    the CTP ProjectName), and the download's metadata.csv and LICENSE are skipped."""
    from gateway.archive.local import open_local
    from gateway.config import Settings
    from gateway.ingest.importer import run_import
    name, summary, _mine, _ = twin
    patients, studies, series, instances = COLLECTIONS[name]
    archive = open_local(Settings().replace(data_dir=tmp_path / "data"))
    report = run_import(archive, [summary.root.parent], workers=2, progress=False)
    assert report.new == instances and not report.rejected
    assert {Path(s).name for s in report.skipped} >= {"metadata.csv", "LICENSE"}
    assert archive.index.collection_counts() == {name: {
        "patients": patients, "studies": studies, "series": series, "instances": instances}}
    archive.close()
