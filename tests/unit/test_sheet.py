"""The clinical sheet reader, on the synthetic outputs and on hand-made edge cases."""

from __future__ import annotations

from pathlib import Path

import openpyxl
import pytest

from gateway.mapping.sheet import (
    ClinicalSheets,
    SheetError,
    normalise_header,
    read_clinical,
)
from gateway.synth import tables as T
from gateway.synth.cohort import build_cohort
from gateway.synth.sheet import IMAGING_CSV, PATIENTS_CSV, XLSX_NAME, write_sheets


@pytest.fixture(scope="module")
def sheets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sheets")
    write_sheets(build_cohort(105), out)
    return out


def test_xlsx_has_a_grouping_row_above_the_original_headers(sheets: Path) -> None:
    book = openpyxl.load_workbook(sheets / XLSX_NAME, read_only=True)
    first = [list(r) for r in book.worksheets[0].iter_rows(min_row=1, max_row=2, values_only=True)]
    book.close()
    assert first[0][0] == "DEMOGRAPHICS" and first[1][0] == "PATIENT_ID"
    assert "# ICU admits" in first[1] and "COVID TEST POSITIVE" in first[1]


def test_xlsx_reads_both_sheets(sheets: Path) -> None:
    result = read_clinical(sheets / XLSX_NAME)
    assert len(result.patients) == 105 and len(result.imaging) == 256
    assert list(result.patients[0]) == [name for name, _ in T.PATIENT_COLUMNS]
    assert list(result.imaging[0]) == [name for name, _ in T.IMAGING_COLUMNS]
    assert all(r["covid_test_positive"] == "Y" for r in result.patients)
    assert {r["study_modality"] for r in result.imaging} == {"CR", "DX", "CT"}
    ids = {r["patient_id"] for r in result.patients}
    assert {r["patient_id"] for r in result.imaging} == ids


def test_xlsx_and_csv_carry_the_same_cells(sheets: Path) -> None:
    book = read_clinical(sheets / XLSX_NAME)
    patients = read_clinical(sheets / PATIENTS_CSV)
    imaging = read_clinical(sheets / IMAGING_CSV)
    assert patients == ClinicalSheets(patients=book.patients, imaging=[])
    assert imaging == ClinicalSheets(patients=[], imaging=book.imaging)


def test_numbers_blanks_and_heights_as_text(sheets: Path) -> None:
    rows = read_clinical(sheets / XLSX_NAME)
    ages = [r["age"] for r in rows.patients]
    assert all(a.isdigit() for a in ages) and not any(a.endswith(".0") for a in ages)
    assert all(r["icu_admits"] in {"0", "1", "2"} for r in rows.patients)
    assert sum(r["latest_height"] == "" for r in rows.patients) == T.BLANK_BODY_AT_105
    assert sum(r["fio2_time_of_img_study"] == "" for r in rows.imaging) == T.BLANK_FIO2_AT_105
    heights = [r["latest_height"] for r in rows.patients if r["latest_height"]]
    assert any("'" in h for h in heights) and any(h.isdigit() for h in heights)
    assert any(r["genbank_accession"].startswith("MW") for r in rows.patients)


@pytest.mark.parametrize("original,normalised", [
    ("PATIENT_ID", "patient_id"), ("COVID TEST POSITIVE", "covid_test_positive"),
    ("ICU Admit", "icu_admit"), ("# ICU admits", "icu_admits"),
    ("DIAG TO IMG STUDY (DAYS)", "diag_to_img_study_days"),
    ("FIO2 @ TIME OF IMG STUDY", "fio2_time_of_img_study"),
    ("HEMODIALYSIS PRE-DIAGNOSIS", "hemodialysis_pre_diagnosis"), ("  latest_bmi ", "latest_bmi"),
])
def test_header_normalisation(original: str, normalised: str) -> None:
    assert normalise_header(original) == normalised


def test_every_original_header_normalises_to_its_column() -> None:
    for name, original in T.PATIENT_COLUMNS + T.IMAGING_COLUMNS:
        assert normalise_header(original) == name


def test_integer_cells_lose_their_float_suffix(tmp_path: Path) -> None:
    book = openpyxl.Workbook()
    ws = book.active
    ws.title = "whatever"
    ws.append(["Clinical correlates", None, None, None])
    ws.append(["PATIENT_ID", "AGE", "LATEST BMI", "ZIP"])
    ws.append(["COVID-19-AR-12345678", 61.0, 31.25, 722])
    ws.append([None, None, None, None])  # empty rows are skipped
    ws.append(["COVID-19-AR-87654321", 45, None, "720"])
    imaging = book.create_sheet("Sheet1")  # a name that says nothing: columns decide
    imaging.append(["PATIENT_ID", "STUDY MODALITY", "DIAG TO IMG STUDY (DAYS)"])
    imaging.append(["COVID-19-AR-12345678", "CT", -1.0])
    book.save(tmp_path / "mine.xlsx")
    result = read_clinical(tmp_path / "mine.xlsx")
    assert result.patients == [
        {"patient_id": "COVID-19-AR-12345678", "age": "61", "latest_bmi": "31.25", "zip": "722"},
        {"patient_id": "COVID-19-AR-87654321", "age": "45", "latest_bmi": "", "zip": "720"},
    ]
    assert result.imaging == [{"patient_id": "COVID-19-AR-12345678", "study_modality": "CT",
                               "diag_to_img_study_days": "-1"}]


def test_missing_patient_id_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "nopid.csv"
    path.write_text("AGE,SEX\n61,M\n")
    with pytest.raises(SheetError, match=r"nopid\.csv.*patient_id"):
        read_clinical(path)


@pytest.mark.parametrize("name,content", [
    ("garbage.xlsx", b"\x00\x01 not a zip at all \xff" * 10),
    ("garbage.csv", b"\x00\x9d\x81\xff\xfe binary"),
])
def test_garbage_files_raise_sheet_error(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(SheetError, match=name.replace(".", r"\.")):
        read_clinical(path)


def test_missing_file_raises_sheet_error(tmp_path: Path) -> None:
    with pytest.raises(SheetError, match="absent.xlsx"):
        read_clinical(tmp_path / "absent.xlsx")


def test_xlsx_timestamps_are_pinned(sheets: Path) -> None:
    import zipfile

    with zipfile.ZipFile(sheets / XLSX_NAME) as archive:
        assert {i.date_time for i in archive.infolist()} == {(2020, 7, 20, 0, 0, 0)}
        core = archive.read("docProps/core.xml")
    assert b">2020-07-20T00:00:00Z</dcterms:modified>" in core
    assert b">2020-07-20T00:00:00Z</dcterms:created>" in core
