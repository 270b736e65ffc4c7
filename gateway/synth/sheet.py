"""Write the synthetic clinical data three ways with the same content.

``COVID_19_AR_ClinicalCorrelates.xlsx`` mirrors the original workbook: two sheets, a grouping row
above the real header row, original header spellings. ``clinical.csv`` and
``clinical_imaging.csv`` carry the same cells under normalised headers. The xlsx is made
byte-reproducible: openpyxl stamps the save time into docProps/core.xml and into every zip entry,
so both are pinned after saving.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from datetime import datetime
from pathlib import Path

from openpyxl import Workbook
from openpyxl.styles import Font
from openpyxl.worksheet.worksheet import Worksheet

from ..mapping.sheet import cell_text
from . import tables as T
from .cohort import Cohort, imaging_row, patient_row

XLSX_NAME = "COVID_19_AR_ClinicalCorrelates.xlsx"
PATIENTS_CSV = "clinical.csv"
IMAGING_CSV = "clinical_imaging.csv"
PINNED_TIME = datetime(2020, 7, 20, 0, 0, 0)  # the original sheet's July 2020 release
ZIP_TIME = PINNED_TIME.timetuple()[:6]

Row = dict[str, object]


def sheet_rows(cohort: Cohort) -> tuple[list[Row], list[Row]]:
    """Patients rows and imaging rows (typed values, None for an empty cell)."""
    patients = [patient_row(p) for p in cohort.patients]
    imaging = [imaging_row(p, s) for p in cohort.patients for s in p.studies]
    return patients, imaging


def write_csv(path: Path, columns: tuple[tuple[str, str], ...], rows: list[Row]) -> Path:
    names = [name for name, _ in columns]
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(names)
        for row in rows:
            writer.writerow([cell_text(row[n]) for n in names])
    return path


def _fill_sheet(ws: Worksheet, columns: tuple[tuple[str, str], ...],
                groups: tuple[tuple[str, str], ...], rows: list[Row]) -> None:
    """Grouping row, original header row, then the data with typed cells."""
    names = [name for name, _ in columns]
    bold = Font(bold=True)
    for first, title in groups:
        ws.cell(row=1, column=names.index(first) + 1, value=title).font = bold
    for col, (_, header) in enumerate(columns, start=1):
        ws.cell(row=2, column=col, value=header).font = bold
        ws.column_dimensions[ws.cell(row=2, column=col).column_letter].width = max(
            10, min(len(header) + 2, 40))
    for r, row in enumerate(rows, start=3):
        for col, name in enumerate(names, start=1):
            if row[name] is not None:
                ws.cell(row=r, column=col, value=row[name])
    ws.freeze_panes = "B3"


def _pin_zip(data: bytes) -> bytes:
    """Rewrite the workbook zip with fixed timestamps and a fixed dcterms:modified."""
    stamp = PINNED_TIME.strftime("%Y-%m-%dT%H:%M:%SZ").encode()
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, \
            zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            body = src.read(info.filename)
            if info.filename == "docProps/core.xml":
                body = re.sub(rb"(<dcterms:modified[^>]*>)[^<]*(</dcterms:modified>)",
                              rb"\g<1>" + stamp + rb"\g<2>", body)
            entry = zipfile.ZipInfo(info.filename, date_time=ZIP_TIME)
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = 0o644 << 16
            dst.writestr(entry, body)
    return out.getvalue()


def write_xlsx(path: Path, patients: list[Row], imaging: list[Row]) -> Path:
    book = Workbook()
    book.properties.creator = "tcia-gateway synth"
    book.properties.lastModifiedBy = "tcia-gateway synth"
    book.properties.created = PINNED_TIME
    book.properties.title = "COVID-19-AR clinical correlates (synthetic)"
    first = book.active
    first.title = T.SHEET_TITLES[0]
    _fill_sheet(first, T.PATIENT_COLUMNS, T.PATIENT_GROUPS, patients)
    _fill_sheet(book.create_sheet(T.SHEET_TITLES[1]), T.IMAGING_COLUMNS, T.IMAGING_GROUPS,
                imaging)
    buffer = io.BytesIO()
    book.save(buffer)
    path.write_bytes(_pin_zip(buffer.getvalue()))
    return path


def write_sheets(cohort: Cohort, out: Path) -> tuple[Path, Path, Path]:
    """Write clinical.csv, clinical_imaging.csv and the xlsx into ``out``; return their paths."""
    patients, imaging = sheet_rows(cohort)
    return (write_csv(out / PATIENTS_CSV, T.PATIENT_COLUMNS, patients),
            write_csv(out / IMAGING_CSV, T.IMAGING_COLUMNS, imaging),
            write_xlsx(out / XLSX_NAME, patients, imaging))
