"""One named test per crash the fuzzers found; each failed before its fix.

The crash inputs are also in the corpora (``tests/fuzz/corpus/<target>/crash-*``), so the
replay keeps them; these tests say in plain terms what a user would have seen.
"""
from __future__ import annotations

import math
import struct
import warnings
from io import BytesIO
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset

from gateway.archive.local import dicomjson, frametable, ingest
from gateway.archive.errors import InvalidQuery
from gateway.archive.protocol import FailureReason, Level, Query
from gateway.dicomweb.multipart import MAX_HEADER_BYTES, MAX_PREAMBLE_BYTES, MultipartReader, \
    MultipartError
from gateway.dimse.identifiers import find_identifier
from gateway.fhir import search
from gateway.fhir.outcome import FhirError
from gateway.mapping import transforms
from tests.fuzz import make_corpus
from tests.support.dicomfiles import make_file


# ------------------------------------------------------------------ multipart
def _parts(body: bytes, step: int) -> list[tuple[dict, bytes]]:
    source = BytesIO(body)
    reader = MultipartReader(lambda n: source.read(min(n, step)), "b")
    return [(p.headers, b"".join(p.chunks())) for p in reader.parts()]


@pytest.mark.parametrize("step", [1, 1 << 20])
def test_multipart_header_limit_holds_however_the_bytes_arrive(step: int) -> None:
    """Headers of 16 KiB + 1 were refused when read a byte at a time, but accepted when
    they came in one chunk."""
    def body(n: int) -> bytes:
        return b"--b\r\nX: " + b"a" * (n - 3) + b"\r\n\r\npayload\r\n--b--\r\n"
    assert _parts(body(MAX_HEADER_BYTES), step) == [({"x": "a" * (MAX_HEADER_BYTES - 3)},
                                                     b"payload")]
    with pytest.raises(MultipartError, match="headers longer than"):
        _parts(body(MAX_HEADER_BYTES + 1), step)


@pytest.mark.parametrize("step", [1, 1 << 20])
def test_multipart_preamble_and_padding_limits_hold_however_the_bytes_arrive(step: int) -> None:
    ok = b"x" * MAX_PREAMBLE_BYTES + b"\r\n--b\r\n\r\npayload\r\n--b--"
    assert _parts(ok, step) == [({}, b"payload")]
    with pytest.raises(MultipartError, match="no multipart boundary"):
        _parts(b"x" + ok, step)
    with pytest.raises(MultipartError, match="not terminated"):
        _parts(b"--b" + b" " * 1025 + b"\r\n\r\npayload\r\n--b--", step)


# ------------------------------------------------------------------ FHIR search
@pytest.mark.parametrize("value", ["gt1.4e2777777", "1e309", "NaN", "sNaN", "-Infinity"])
def test_fhir_value_quantity_that_is_no_finite_number_is_400(value: str) -> None:
    """``value-quantity=gt1.4e2777777`` raised decimal.InvalidOperation (a 500); NaN and
    Infinity were accepted and matched nothing."""
    with pytest.raises(FhirError) as caught:
        search.parse("Observation", [("value-quantity", value)])
    assert caught.value.status == 400 and caught.value.expression == "value-quantity"
    clause = search.parse("Observation", [("value-quantity", "1e-999999")]).clauses[0]
    assert clause.values[0][1] == 0.0


# ------------------------------------------------------------------ transforms
@pytest.mark.parametrize("cell, kind", [(math.nan, "blank"), (math.inf, "invalid"),
                                        (-math.inf, "invalid")])
def test_digits_of_a_non_finite_float_cell_is_absent_not_a_crash(cell: float, kind: str) -> None:
    """``digits`` on a NaN cell raised ValueError (int(nan)); apply() hid it as 'failed'."""
    value = transforms.digits(cell, {"length": 5})
    assert isinstance(value, transforms.Absent) and value.kind == kind


# ------------------------------------------------------------------ frame table
def test_negative_number_of_frames_is_refused_at_store(tmp_path: Path) -> None:
    """NumberOfFrames -1 gave an empty frame table: stored, then every frame was 404."""
    path = make_file(tmp_path / "neg.dcm", NumberOfFrames=-1)
    with pytest.raises(ingest.IngestError) as caught:
        ingest.parse_file(path, sha256="0" * 64, size=path.stat().st_size)
    assert caught.value.reason == FailureReason.CANNOT_UNDERSTAND
    assert "NumberOfFrames -1" in caught.value.message
    with pytest.raises(frametable.BadPixelData):
        frametable.frame_table(path, "1.2.840.10008.1.2.1", ("OW", 0, 8), None,
                               {"Rows": 2, "Columns": 2, "BitsAllocated": 16}, -1)


# ------------------------------------------------------------------ C-FIND (SCU side)
def _encoded(ds) -> bytes:
    out = DicomBytesIO()
    out.is_little_endian, out.is_implicit_VR = True, False
    write_dataset(out, ds)
    return out.getvalue()


def test_cfind_identifier_sends_binary_numbers_as_numbers() -> None:
    """QIDO ``Rows=64`` to a remote PACS built a US element holding the text '64', which
    pydicom could not encode: the C-FIND was never sent."""
    ds = find_identifier(Query(Level.INSTANCE, {"Rows": "64", "Columns": ""}))
    assert ds.Rows == 64
    assert b"\x28\x00\x10\x00US\x02\x00\x40\x00" in _encoded(ds)


@pytest.mark.parametrize("value", ["abc", "70000", "-1", "1.5"])
def test_cfind_identifier_with_an_impossible_us_value_is_invalid_query(value: str) -> None:
    with pytest.raises(InvalidQuery) as caught:
        find_identifier(Query(Level.INSTANCE, {"Rows": value}))
    assert caught.value.attribute == "Rows"


# ------------------------------------------------------------------ fast DICOM reader
def _fast_and_pydicom(raw: bytes, tmp_path: Path) -> tuple:
    path = tmp_path / "f.dcm"
    path.write_bytes(raw)
    try:
        fast = dicomjson.read(path, lambda tag: "{BULK}/" + tag)
    except dicomjson.Unsupported:
        fast = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return fast, ingest._pydicom(path, len(raw), "{BULK}/")
        except Exception:  # noqa: BLE001 - pydicom cannot read it either
            return fast, None


def _patched(raw: bytes, old: bytes, new: bytes) -> bytes:
    """``raw`` with the first ``old`` (the file meta's, where it occurs twice) replaced."""
    assert old in raw
    return raw.replace(old, new, 1)


def test_fast_reader_declines_non_ascii_file_meta(tmp_path: Path) -> None:
    """A non-ASCII byte in a file meta UID became U+FFFD in the fast reader, not what
    pydicom reads."""
    seed = make_corpus.dicom_seeds()["explicit-minimal.dcm"]
    raw = _patched(seed, b"3680043.10.1.3", b"36800\xcd3.10.1.3")
    fast, slow = _fast_and_pydicom(raw, tmp_path)
    assert fast is None and "\ufffd" not in slow.meta["MediaStorageSOPInstanceUID"]


def test_fast_reader_declines_file_meta_element_without_explicit_vr(tmp_path: Path) -> None:
    """pydicom reads a meta element with no valid VR as implicit VR (4-byte length); the
    fast reader read a 2-byte length and walked on into a different data set."""
    seed = make_corpus.dicom_seeds()["explicit-minimal.dcm"]
    at = seed.index(b"\x02\x00\x12\x00UI")  # ImplementationClassUID
    raw = seed[:at + 4] + b"\x00\x00" + seed[at + 6:]
    fast, _slow = _fast_and_pydicom(raw, tmp_path)
    assert fast is None


def test_fast_reader_strips_uid_whitespace_as_pydicom_does(tmp_path: Path) -> None:
    """pydicom's UID strips whitespace such as a vertical tab; the fast reader kept it."""
    seed = make_corpus.dicom_seeds()["explicit-minimal.dcm"]
    at = seed.index(b"\x08\x00\x16\x00UI\x1a\x00") + 8
    raw = seed[:at] + b"1.2.840.10008.5.1.4.1.1.2\x0b" + seed[at + 26:]
    fast, slow = _fast_and_pydicom(raw, tmp_path)
    assert fast.doc["00080016"] == slow.doc["00080016"] == {
        "vr": "UI", "Value": ["1.2.840.10008.5.1.4.1.1.2"]}


def test_fast_reader_declines_an_element_running_past_its_item(tmp_path: Path) -> None:
    """A value longer than its item: the fast reader read on past the item's end (taking
    the next item's header into the value), then went on at the next item; pydicom reads
    it otherwise. Now the fast reader declines and pydicom has the last word."""
    ds = make_corpus._base(11)
    first, second = Dataset(), Dataset()
    first.RequestedProcedureID, second.RequestedProcedureID = "AB", "CD"
    ds.RequestAttributesSequence = [first, second]
    seed = make_corpus.part10(ds, "1.2.840.10008.1.2.1")
    raw = _patched(seed, b"\x40\x00\x01\x10SH\x02\x00AB", b"\x40\x00\x01\x10SH\x0a\x00AB")
    fast, slow = _fast_and_pydicom(raw, tmp_path)
    assert fast is None
    if slow is not None:
        assert slow.doc["00400275"]["Value"][0]["00401001"]["Value"][0].startswith("AB")


# ------------------------------------------------------------------ QIDO (issue 10 #8; fixed on rel-read)
def _run_qido(level: Level, args: list[tuple[str, str]]):
    from gateway.archive.local import matching
    from gateway.archive.local.index import Index
    from gateway.dicomweb import qido
    query = qido.parse(level, args)
    with Index("sqlite://").engine.connect() as conn:
        return matching.run(conn, query)


@pytest.mark.parametrize("args, attribute", [
    ([("InstanceNumber", "388888888888888888888888888")], "InstanceNumber"),
    ([("SeriesNumber", "2147483648")], "SeriesNumber"),
    ([("offset", "99999999999999999999999")], "offset"),
    ([("limit", "²")], "limit"),
    ([("offset", "١٢")], "offset"),
])
def test_qido_integers_sql_cannot_take_are_invalid_query(args, attribute) -> None:
    """Each raised OverflowError from the SQLite driver (a 500), or ValueError for a
    Unicode digit that str.isdigit() accepts."""
    with pytest.raises(InvalidQuery) as caught:
        _run_qido(Level.INSTANCE, args)
    assert caught.value.attribute == attribute
    assert _run_qido(Level.INSTANCE, [("InstanceNumber", "2147483647"),
                                      ("offset", str(10**18))]).matches == []


@pytest.mark.parametrize("name", ["_count", "_offset"])
def test_fhir_paging_with_a_unicode_digit_is_400(name: str) -> None:
    with pytest.raises(FhirError) as caught:
        search.parse("Patient", [(name, "²")])
    assert caught.value.status == 400 and caught.value.expression == name


def test_cfind_identifier_with_non_ascii_code_string_is_invalid_query() -> None:
    """QIDO ``Modality=é`` to a remote PACS: pydicom could not encode the CS value
    (UnicodeEncodeError, a 500); text VRs still go as UTF-8 with ISO_IR 192."""
    with pytest.raises(InvalidQuery) as caught:
        find_identifier(Query(Level.SERIES, {"Modality": "é"}))
    assert caught.value.attribute == "Modality"
    ds = find_identifier(Query(Level.SERIES, {"PatientName": "Müller*"}))
    assert ds.SpecificCharacterSet == "ISO_IR 192" and _encoded(ds)


# ------------------------------------------------------------------ frame table, encapsulated
def _items(*values: bytes, close: bool = True) -> bytes:
    out = b"".join(struct.pack("<HHI", 0xFFFE, 0xE000, len(v)) + v for v in values)
    return out + (struct.pack("<HHI", 0xFFFE, 0xE0DD, 0) if close else b"")


def _table(tmp_path: Path, stream: bytes, count: int):
    path = tmp_path / "pixels"
    path.write_bytes(stream)
    items = frametable.read_items(path, 0, len(stream))
    return frametable.frame_table(path, "1.2.840.10008.1.2.4.90", ("OB", 0, frametable.UNDEFINED),
                                  items, {"Rows": 8, "Columns": 8}, count)


def test_encapsulated_pixel_data_without_items_is_bad_pixel_data(tmp_path: Path) -> None:
    """Only a sequence delimiter: IndexError (a 500 on STOW when pydicom read the file)."""
    with pytest.raises(frametable.BadPixelData, match="no items"):
        _table(tmp_path, _items(), 1)


def test_basic_offset_table_not_a_multiple_of_four_is_cut_by_decoding(tmp_path: Path) -> None:
    """A 2-byte Basic Offset Table raised struct.error (a 500); now the table is None
    (frames are cut by decoding), as for any encapsulation that offsets cannot cut."""
    assert _table(tmp_path, _items(b"\0\0", b"ab", b"cd", b"ef"), 2) is None
    good = _items(struct.pack("<2I", 0, 20), b"ab", b"cd", b"ef", b"gh")
    assert [len(frame) for frame in _table(tmp_path, good, 2)] == [2, 2]


@pytest.mark.parametrize("value, high", [
    ("9999", "9999-12-31T23:59:59.999999"), ("9999-12", "9999-12-31T23:59:59.999999"),
    ("le9999-12-31T23:59", "9999-12-31T23:59:59.999999"), ("2020-02", "2020-02-29T23:59:59.999999")])
def test_fhir_dates_in_year_9999_cover_to_its_end(value: str, high: str) -> None:
    """``birthdate=9999`` raised ValueError and ``9999-12`` OverflowError (500s): the end
    of the range they cover was computed past datetime.max."""
    (_prefix, low, upper), = search.parse("Patient", [("birthdate", value)]).clauses[0].values
    assert upper == high and low < upper


@pytest.mark.parametrize("cell", ["߇12", "７２１", "72²"])
def test_digits_accepts_only_ascii_digits(cell: str) -> None:
    """A ZIP prefix of NKo or full-width digits passed ``str.isdigit()`` and went into
    Patient.address.postalCode as written."""
    value = transforms.digits(cell, {"length": 3})
    assert isinstance(value, transforms.Absent) and value.kind == "invalid"
    assert transforms.digits("072", {"length": 3}) == "072"


# ------------------------------------------------------------------ QIDO ModalitiesInStudy below study level
@pytest.mark.parametrize("resource", ["series", "instances"])
def test_qido_modalities_in_study_below_study_level_matches(gateway_server, resource: str) -> None:
    """``/dicomweb/series?ModalitiesInStudy=CT`` built an EXISTS that SQLAlchemy correlated
    away (no FROM clause): InvalidRequestError, answered 503 "index query failed"."""
    import requests
    base = gateway_server.url + "/dicomweb"
    studies = requests.get(f"{base}/studies", params={"ModalitiesInStudy": "CT"}, timeout=30)
    assert studies.status_code == 200 and studies.json()
    ct_studies = {m["0020000D"]["Value"][0] for m in studies.json()}
    key = "NumberOfStudyRelated" + ("Series" if resource == "series" else "Instances")
    expected = sum(m[{"NumberOfStudyRelatedSeries": "00201206",
                      "NumberOfStudyRelatedInstances": "00201208"}[key]]["Value"][0]
                   for m in studies.json())
    found = requests.get(f"{base}/{resource}", params={"ModalitiesInStudy": "CT"}, timeout=30)
    assert found.status_code == 200, found.text
    assert {m["0020000D"]["Value"][0] for m in found.json()} == ct_studies
    assert len(found.json()) == expected


def test_fast_reader_declines_a_file_meta_element_inside_the_data_set(tmp_path: Path) -> None:
    """With (0002,0012) damaged, the file meta ended early and (0002,0013) sat in the data
    set: pydicom kept it there, the fast reader dropped it (different metadata)."""
    seed = make_corpus.dicom_seeds()["explicit-minimal.dcm"]
    raw = _patched(seed, b"\x02\x00\x12\x00UI", b"\x5b\x00\x12\x00UI")
    fast, slow = _fast_and_pydicom(raw, tmp_path)
    assert fast is None and "00020013" in slow.doc


def test_fast_reader_declines_a_group_length_inside_an_item(tmp_path: Path) -> None:
    """pydicom keeps (0008,0000) inside a sequence item (ingest removes top-level group
    lengths only); the fast reader dropped it, so the metadata depended on the reader."""
    ds = make_corpus._base(12)
    item = Dataset()
    item.CodeValue = "113100"
    ds.DeidentificationMethodCodeSequence = [item]
    seed = make_corpus.part10(ds, "1.2.840.10008.1.2.1")  # pydicom writes no group lengths
    length = struct.pack("<HH2sHI", 0x0008, 0x0000, b"UL", 4, 10)
    item_at = seed.index(b"\x12\x00\x64\x00SQ\x00\x00\x16\x00\x00\x00\xfe\xff\x00\xe0\x0e\x00\x00\x00")
    raw = (seed[:item_at] + b"\x12\x00\x64\x00SQ\x00\x00\x22\x00\x00\x00\xfe\xff\x00\xe0\x1a\x00\x00\x00"
           + length + seed[item_at + 20:])
    fast, slow = _fast_and_pydicom(raw, tmp_path)
    assert fast is None
    assert slow.doc["00120064"]["Value"][0]["00080000"] == {"vr": "UL", "Value": [10]}


# ------------------------------------------------------------------ Implicit VR reader
IMPLICIT_MISMATCHES = {
    # (0000,xxxx) command elements in the data set: pydicom keeps (0000,2900) and drops
    # (0000,0032) where the fast reader did the opposite.
    "crash-0945d5482f58": "00002900", "crash-e006461f7092": "00000032",
    # an undefined-length element the fast reader skipped (a group length): pydicom reads it
    # as a sequence, hits the end of the file and keeps no element at all.
    "crash-09699cb61228": "00080005", "crash-1241356b33e8": "00080005",
    "crash-5138249aaecc": "00080005", "crash-52bf9ee64113": "00080005",
    "crash-63699089fd1f": "00080005", "crash-9c30b90f8591": "00080005",
    "crash-e2cc71f3ad0f": "00080005",
    # file meta elements after the file meta: pydicom keeps them as data, the fast reader
    # dropped them.
    "crash-5c891eaadfbe": "00020002", "crash-6967471becae": "00020002",
    "crash-9f2d6b16abf0": "00020002", "crash-65dcca0ce46f": "00020003",
}


@pytest.mark.parametrize("name", sorted(IMPLICIT_MISMATCHES))
def test_implicit_vr_fast_reader_declines_what_pydicom_reads_otherwise(
        name: str, tmp_path: Path) -> None:
    """On these Implicit VR files the fast reader returned DICOM JSON that differed from
    pydicom's at the tag named (the stored metadata would not be pydicom's); now it declines
    (or agrees) and the store path's pydicom fallback has the last word."""
    path = tmp_path / "in.dcm"
    path.write_bytes((Path(__file__).parent / "corpus" / "dicomjson" / name).read_bytes())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            fast = dicomjson.read(path, lambda tag: "{BULK}/" + tag)
        except (dicomjson.Unsupported, dicomjson.Truncated):
            return
        slow = ingest._pydicom(path, path.stat().st_size, "{BULK}/")
    tag = IMPLICIT_MISMATCHES[name]
    assert fast.doc.get(tag) == slow.doc.get(tag)
    assert fast.doc == slow.doc


# ------------------------------------------------------------------ found by the 10-minute runs
@pytest.mark.parametrize("step", [1, 1 << 20])
def test_folded_part_header_with_an_empty_first_line_has_no_leading_space(step: int) -> None:
    """``Content-Type:`` followed by a folded `` folded`` line read as " folded": a value
    with leading whitespace, which no writer gives back (RFC 9112 5.2: obs-fold is one SP)."""
    body = b"--b\r\nContent-Type:\r\n folded\r\n\r\npayload\r\n--b--\r\n"
    assert _parts(body, step) == [({"content-type": "folded"}, b"payload")]
    body = b"--b\r\nContent-Type: a\r\n  b \r\n\r\npayload\r\n--b--\r\n"
    assert _parts(body, step) == [({"content-type": "a b"}, b"payload")]


@pytest.mark.parametrize("value", ["gt1.4e1388888", "1e1000001", "le2E+1000002"])
def test_fhir_quantity_whose_precision_overflows_is_400(value: str) -> None:
    """``value-quantity=gt1.4e1388888`` raised decimal.Overflow computing its half-step
    (beyond the context's Emax): a 500."""
    with pytest.raises(FhirError) as caught:
        search.parse("Observation", [("value-quantity", value)])
    assert caught.value.status == 400 and caught.value.expression == "value-quantity"
