"""The embedded archive's index: the DESIGN.md attribute set, PS3.4 C.2.2.2 matching,
derived counts after incremental imports, metadata and frames without re-parsing."""
from __future__ import annotations

import uuid
from pathlib import Path

import orjson
import pydicom
import pytest

from gateway.archive import InvalidQuery, Level, NotFound, Query, StoreOutcome, UidPath
from gateway.archive.local import LocalArchive, open_local
from gateway.config import Settings
from tests.support.dicomfiles import make_file, uid


def values(result, tag: str) -> list:
    out = []
    for m in result.matches:
        v = m.get(tag, {}).get("Value", [None])[0]
        out.append(v["Alphabetic"] if isinstance(v, dict) else v)
    return out


@pytest.fixture(params=["sqlite", "postgresql"])
def archive(request: pytest.FixtureRequest, tmp_path: Path) -> LocalArchive:
    """The same index code on both databases DESIGN.md names."""
    settings = Settings().replace(data_dir=tmp_path / "data")
    if request.param == "postgresql":
        name = "t" + uuid.uuid4().hex[:12]
        settings = settings.replace(database_url=request.getfixturevalue("postgres").create_database(name))
    return open_local(settings)


@pytest.fixture
def populated(archive: LocalArchive, tmp_path: Path) -> LocalArchive:
    src = tmp_path / "src"
    rows = [  # patient, name, study, date, time, description, modality, series, n
        ("COVID-19-AR-10000001", "Doe^John", "A", "20200301", "0930", "XR CHEST AP PORTABLE", "DX", "A1", 1),
        ("COVID-19-AR-10000001", "Doe^John", "B", "20200315", "101500", "CT CHEST WITHOUT CONTRAST", "CT", "B1", 3),
        ("COVID-19-AR-10000002", "ROE^JANE", "C", "20200410", "235959", "XR CHEST PA AND LATERAL", "CR", "C1", 2),
        ("COVID-19-AR-10000003", "Smith^Anna Maria", "D", "20200501", "000001", "xr chest ap only", "CR", "D1", 1),
    ]
    for pid, name, study, date, time, desc, mod, ser, n in rows:
        for i in range(n):
            make_file(src / f"{study}{i}.dcm", patient=pid, PatientName=name, study=study,
                      series=ser, sop=f"{ser}-{i}", modality=mod, StudyDate=date, StudyTime=time,
                      StudyDescription=desc, InstanceNumber=i + 1, AccessionNumber=f"ACC{study}")
    for f in sorted(src.iterdir()):
        assert archive.store(f).outcome is StoreOutcome.STORED
    return archive


def study_ids(archive: LocalArchive, **filters: str) -> list[str]:
    res = archive.search(Query(Level.STUDY, filters))
    return sorted(v[-1] for v in values(res, "00080050"))  # ACC<study letter>


@pytest.mark.parametrize("filters, expected", [
    ({}, ["A", "B", "C", "D"]),
    ({"PatientID": "COVID-19-AR-10000001"}, ["A", "B"]),
    ({"PatientID": "COVID-19-AR-1000000?"}, ["A", "B", "C", "D"]),
    ({"PatientID": "*0002"}, ["C"]),
    ({"PatientName": "doe^john"}, ["A", "B"]),          # PN case-insensitive
    ({"PatientName": "*maria*"}, ["D"]),
    ({"StudyDescription": "*chest ap*"}, ["A", "D"]),  # descriptions case-insensitive
    ({"StudyDate": "20200301-20200331"}, ["A", "B"]),
    ({"StudyDate": "20200401-"}, ["C", "D"]),
    ({"StudyDate": "-20200301"}, ["A"]),
    ({"StudyDate": "20200410"}, ["C"]),
    ({"StudyTime": "0930-1200"}, ["A", "B"]),           # TM ranges compare normalised
    ({"StudyTime": "2300-"}, ["C"]),
    ({"ModalitiesInStudy": "CT"}, ["B"]),
    ({"ModalitiesInStudy": "CR\\CT"}, ["B", "C", "D"]),
    ({"Modality": "DX"}, ["A"]),                         # study-level Modality = ModalitiesInStudy
    ({"AccessionNumber": "ACCC"}, ["C"]),
    ({"00100020": "COVID-19-AR-10000003"}, ["D"]),       # by tag
])
def test_study_matching(populated: LocalArchive, filters: dict, expected: list[str]) -> None:
    assert study_ids(populated, **filters) == expected


def test_uid_list_matching(populated: LocalArchive) -> None:
    wanted = f"{uid('study', 'A')}\\{uid('study', 'C')}"
    assert study_ids(populated, StudyInstanceUID=wanted) == ["A", "C"]


def test_fuzzy_person_name_is_word_prefix(populated: LocalArchive) -> None:
    res = populated.search(Query(Level.STUDY, {"PatientName": "ann smi"}, fuzzy=True))
    assert values(res, "00100010") == ["Smith^Anna Maria"]
    res = populated.search(Query(Level.STUDY, {"PatientName": "mar"}, fuzzy=True))
    assert values(res, "00100010") == ["Smith^Anna Maria"]
    res = populated.search(Query(Level.STUDY, {"PatientName": "aria"}, fuzzy=True))
    assert res.matches == []


def test_study_result_carries_design_attribute_set(populated: LocalArchive) -> None:
    res = populated.search(Query(Level.STUDY, {"AccessionNumber": "ACCB"}))
    (m,) = res.matches
    for tag in ("0020000D", "00080020", "00080030", "00080050", "00080061", "00080090",
                "00100010", "00100020", "00100030", "00100040", "00101010", "00200010",
                "00081030", "00080080", "00201206", "00201208"):
        assert tag in m, tag
    assert m["00080061"] == {"vr": "CS", "Value": ["CT"]}
    assert m["00201206"]["Value"] == [1] and m["00201208"]["Value"] == [3]
    assert m["00080030"]["Value"] == ["101500"]
    assert m["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": "Doe^John"}]}
    assert m["00100030"] == {"vr": "DA"}  # empty attributes are returned without Value


def test_series_and_instance_levels_carry_parent_keys(populated: LocalArchive) -> None:
    series = populated.search(Query(Level.SERIES, {"StudyInstanceUID": uid("study", "B")}))
    (s,) = series.matches
    assert s["0020000D"]["Value"] == [uid("study", "B")]
    assert s["00201209"]["Value"] == [3] and s["00080060"]["Value"] == ["CT"]
    inst = populated.search(Query(Level.INSTANCE, {"SeriesInstanceUID": uid("series", "B1")}))
    assert [m["00200013"]["Value"][0] for m in inst.matches] == [1, 2, 3]
    first = inst.matches[0]
    assert first["0020000E"]["Value"] == [uid("series", "B1")]
    assert first["00280010"]["Value"] == [8] and first["00280100"]["Value"] == [16]
    assert first["00020010"]["Value"] == ["1.2.840.10008.1.2.1"]


def test_limit_offset_and_truncation_are_stable(populated: LocalArchive) -> None:
    all_ = values(populated.search(Query(Level.STUDY)), "00080050")
    pages = [populated.search(Query(Level.STUDY, limit=3, offset=o)) for o in (0, 3)]
    assert pages[0].truncated and not pages[1].truncated
    assert values(pages[0], "00080050") + values(pages[1], "00080050") == all_


def test_includefield_extra_and_all(populated: LocalArchive) -> None:
    res = populated.search(Query(Level.STUDY, {"AccessionNumber": "ACCA"},
                                 includefields=frozenset({"00280004", "PhotometricInterpretation"})))
    assert res.matches[0]["00280004"]["Value"] == ["MONOCHROME2"]
    res = populated.search(Query(Level.STUDY, {"AccessionNumber": "ACCA"},
                                 includefields=frozenset({"Rows", "SOPClassUID"})))
    assert res.matches[0]["00280010"]["Value"] == [8]  # lower-level indexed: first instance's
    assert res.matches[0]["00080016"]["Value"] == ["1.2.840.10008.5.1.4.1.1.1"]
    res = populated.search(Query(Level.STUDY, {"AccessionNumber": "ACCA"}, include_all=True))
    m = res.matches[0]
    assert m["00280010"]["Value"] == [8] and "7FE00010" not in m  # no bulk data


@pytest.mark.parametrize("filters, attribute", [
    ({"NotAnAttribute": "x"}, "NotAnAttribute"),
    ({"StudyDate": "2020-03-01"}, "StudyDate"),
    ({"StudyDate": "yesterday"}, "StudyDate"),
    ({"StudyInstanceUID": "1.2.abc"}, "StudyInstanceUID"),
    ({"Manufacturer": "ACME"}, "Manufacturer"),  # a real attribute the index does not hold
])
def test_bad_queries_name_the_attribute(populated: LocalArchive, filters: dict, attribute: str) -> None:
    with pytest.raises(InvalidQuery) as err:
        populated.search(Query(Level.STUDY, filters))
    assert attribute in err.value.message and err.value.attribute == attribute


def test_counts_stay_right_across_incremental_imports(archive: LocalArchive, tmp_path: Path) -> None:
    def study_counts() -> tuple:
        (m,) = archive.search(Query(Level.STUDY)).matches
        return m["00201206"]["Value"][0], m["00201208"]["Value"][0], m["00080061"]["Value"]

    def patient_counts() -> tuple:
        (m,) = archive.search(Query(Level.PATIENT)).matches
        return tuple(m[t]["Value"][0] for t in ("00201200", "00201202", "00201204"))

    archive.store(make_file(tmp_path / "1.dcm", series="X", sop="1"))
    assert study_counts() == (1, 1, ["CT"]) and patient_counts() == (1, 1, 1)
    archive.store(make_file(tmp_path / "2.dcm", series="X", sop="2"))
    archive.store(make_file(tmp_path / "3.dcm", series="Y", sop="3", modality="CR"))
    assert study_counts() == (2, 3, ["CR", "CT"]) and patient_counts() == (1, 2, 3)
    archive.store(tmp_path / "2.dcm")  # duplicate: nothing changes
    assert study_counts() == (2, 3, ["CR", "CT"])
    (s,) = archive.search(Query(Level.SERIES, {"SeriesInstanceUID": uid("series", "X")})).matches
    assert s["00201209"]["Value"] == [2]


def test_metadata_is_precomputed_json_with_relative_bulk_uris(populated: LocalArchive) -> None:
    where = UidPath(uid("study", "B"), uid("series", "B1"))
    doc = orjson.loads(populated.metadata(where))
    assert [d["00200013"]["Value"][0] for d in doc] == [1, 2, 3]
    sop = uid("sop", "B1-0")
    assert doc[0]["7FE00010"]["BulkDataURI"] == (
        f"studies/{uid('study', 'B')}/series/{uid('series', 'B1')}/instances/{sop}/bulk/7FE00010")
    assert doc[0]["00083002"]["Value"] == ["1.2.840.10008.1.2.1"]
    assert "InlineBinary" not in doc[0]["7FE00010"]


def test_frames_are_positioned_reads_of_the_stored_file(archive: LocalArchive, tmp_path: Path) -> None:
    f = make_file(tmp_path / "mf.dcm", sop="mf", frames=4, size=16)
    archive.store(f)
    inst = archive.instance(UidPath(instance=uid("sop", "mf")))
    pixels = pydicom.dcmread(f).PixelData
    assert inst.number_of_frames == 4
    assert [inst.read_frame(n) for n in (1, 2, 3, 4)] == [
        pixels[i * 512:(i + 1) * 512] for i in range(4)]
    assert inst.path.read_bytes() == f.read_bytes()  # stored byte-for-byte


def test_unknown_uids_raise_not_found(populated: LocalArchive) -> None:
    with pytest.raises(NotFound):
        populated.metadata(UidPath("1.2.3", "4.5.6"))
    with pytest.raises(NotFound):
        list(populated.instances(UidPath("1.2.3")))
    assert populated.search(Query(Level.STUDY, {"PatientID": "nobody"})).matches == []
