"""The fast DICOM JSON reader gives exactly what the pydicom path gives, or declines."""
from __future__ import annotations

import warnings
from pathlib import Path

import orjson
import pydicom.data
import pytest

from gateway.archive.local import dicomjson, ingest
from tests.support.dicomfiles import make_file

PYDICOM_FILES = sorted((Path(pydicom.data.__file__).parent / "test_files").rglob("*.dcm"))
BULK = "{BULK}/"


def both(path: Path) -> tuple[dicomjson.Parsed, dicomjson.Parsed]:
    fast = dicomjson.read(path, lambda tag: BULK + tag)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        slow = ingest._pydicom(path, path.stat().st_size, BULK)
    return fast, slow


def same(a: dicomjson.Parsed, b: dicomjson.Parsed) -> bool:
    dump = lambda p: orjson.dumps(dict(sorted(p.doc.items())))  # noqa: E731
    return (dump(a), a.bulk, a.meta, a.fragments) == (dump(b), b.bulk, b.meta, b.fragments)


def test_equal_to_pydicom_on_pydicom_test_files() -> None:
    read = declined = 0
    for path in PYDICOM_FILES:
        try:
            fast, slow = both(path)
        except (dicomjson.Unsupported, dicomjson.Truncated):
            declined += 1
            continue
        read += 1
        assert same(fast, slow), path.name
    assert read >= 45 and declined < read  # most files take the fast path


def test_equal_to_pydicom_on_the_synthetic_cohort(small_cohort) -> None:
    files = sorted(small_cohort.root.rglob("*.dcm"))
    syntaxes = set()
    for path in files:
        fast, slow = both(path)
        assert same(fast, slow), path
        syntaxes.add(fast.meta["TransferSyntaxUID"])
    assert {"1.2.840.10008.1.2.1", "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.90"} <= syntaxes


def test_values_by_vr(tmp_path: Path) -> None:
    f = make_file(tmp_path / "x.dcm", PatientName="Doe^John=Ideo", ImageType=["ORIGINAL", "PRIMARY"],
                  PixelSpacing=[0.5, 0.75], SliceThickness="5", RescaleIntercept="-1024",
                  AcquisitionNumber="3", ImagePositionPatient=[-1, 2.5, 3])
    doc = dicomjson.read(f, lambda tag: "u/" + tag).doc
    assert doc["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": "Doe^John", "Ideographic": "Ideo"}]}
    assert doc["00080008"] == {"vr": "CS", "Value": ["ORIGINAL", "PRIMARY"]}
    assert doc["00280030"]["Value"] == [0.5, 0.75] and doc["00180050"]["Value"] == [5.0]
    assert doc["00281052"]["Value"] == [-1024.0] and doc["00200012"]["Value"] == [3]
    assert doc["00280010"] == {"vr": "US", "Value": [8]}
    assert doc["7FE00010"] == {"vr": "OW", "BulkDataURI": "u/7FE00010"}


def test_truncated_pixel_data_is_reported(tmp_path: Path) -> None:
    f = make_file(tmp_path / "x.dcm", size=32)
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(dicomjson.Truncated, match="7FE00010"):
        dicomjson.read(cut, lambda tag: tag)


def test_implicit_vr_is_left_to_pydicom() -> None:
    path = Path(pydicom.data.__file__).parent / "test_files" / "MR_small_implicit.dcm"
    with pytest.raises(dicomjson.Unsupported, match="Explicit VR Little Endian"):
        dicomjson.read(path, lambda tag: tag)


def test_deflated_data_sets_are_left_to_pydicom(tmp_path: Path) -> None:
    import pydicom
    f = make_file(tmp_path / "x.dcm")
    ds = pydicom.dcmread(f)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1.99"
    ds.save_as(tmp_path / "deflated.dcm", enforce_file_format=True)
    with pytest.raises(dicomjson.Unsupported):
        dicomjson.read(tmp_path / "deflated.dcm", lambda tag: tag)
    record = ingest.parse_file(tmp_path / "deflated.dcm", sha256="0" * 64,
                               size=(tmp_path / "deflated.dcm").stat().st_size)
    assert record.instance["transfer_syntax"] == "1.2.840.10008.1.2.1.99"
    assert record.instance["frames"] is None  # cut by decoding, not by offset
