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


def pydicom_json(path: Path) -> dict:
    """pydicom's own DICOM JSON of the whole file (no deferred reads), group lengths off;
    Pixel Data keeps only its VR (the gateway always makes it bulk data, PS3.18 8.6.2)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        doc = pydicom.dcmread(path).to_json_dict(1024, lambda e: BULK + f"{int(e.tag):08X}")
    doc["7FE00010"] = {"vr": doc["7FE00010"]["vr"]}
    return {k: v for k, v in doc.items() if not k.endswith("0000")}


def implicit_file(path: Path, pixel_representation: int | None = 1) -> Path:
    """An Implicit VR file with what real TCIA files hold: the CTP block, a private block
    pydicom knows, one it does not, a sequence, US-or-SS pixel values."""
    import pydicom
    f = make_file(path.with_suffix(".explicit"), size=16, ImageType=["ORIGINAL", "PRIMARY"])
    ds = pydicom.dcmread(f)
    ctp = ds.private_block(0x0013, "CTP", create=True)
    ctp.add_new(0x10, "LO", "COVID-19-AR")
    ctp.add_new(0x13, "LO", "12345678")
    known = ds.private_block(0x0029, "SIEMENS CSA HEADER", create=True)
    known.add_new(0x08, "CS", "IMAGE NUM 4")
    unknown = ds.private_block(0x0031, "ACME 1.0", create=True)
    unknown.add_new(0x01, "LO", "opaque")
    code = pydicom.Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "113100", "DCM", "Basic"
    ds.DeidentificationMethodCodeSequence = [code]
    if pixel_representation is None:
        del ds.PixelRepresentation
    else:
        ds.PixelRepresentation = pixel_representation
    ds.add_new(0x00280106, "SS" if pixel_representation else "US", 0)  # Smallest Image Pixel
    ds.add_new(0x00280107, "SS" if pixel_representation else "US", 200)
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)
    return path


def test_implicit_vr_equals_pydicom(tmp_path: Path) -> None:
    """Both ingest paths and pydicom's to_json_dict agree on Implicit VR files: VRs from the
    dictionaries (CTP's block included), OW pixel data, US or SS by Pixel Representation."""
    shipped = Path(pydicom.data.__file__).parent / "test_files" / "MR_small_implicit.dcm"
    for path in (shipped, implicit_file(tmp_path / "signed.dcm"),
                 implicit_file(tmp_path / "unsigned.dcm", pixel_representation=0)):
        fast, slow = both(path)
        assert same(fast, slow), path.name
        mine = {**fast.doc, "7FE00010": {"vr": fast.doc["7FE00010"]["vr"]}}
        assert dict(sorted(mine.items())) == dict(sorted(pydicom_json(path).items()))
        assert fast.doc["7FE00010"]["vr"] == "OW" and fast.bulk["7FE00010"][0] == "OW"
    doc = dicomjson.read(tmp_path / "signed.dcm", lambda tag: tag).doc
    assert doc["00131010"] == {"vr": "LO", "Value": ["COVID-19-AR"]}  # CTP Project Name
    assert doc["00291008"] == {"vr": "CS", "Value": ["IMAGE NUM 4"]}  # pydicom's private dict
    assert doc["00311001"]["vr"] == "UN" and "InlineBinary" in doc["00311001"]
    assert doc["00280106"] == {"vr": "SS", "Value": [0]} and doc["00280107"]["vr"] == "SS"
    assert dicomjson.read(tmp_path / "unsigned.dcm", lambda t: t).doc["00280107"] == {
        "vr": "US", "Value": [200]}


def test_implicit_vr_without_pixel_representation_is_left_to_pydicom(tmp_path: Path) -> None:
    path = implicit_file(tmp_path / "x.dcm", pixel_representation=None)
    with pytest.raises(dicomjson.Unsupported, match="Pixel Representation"):
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
