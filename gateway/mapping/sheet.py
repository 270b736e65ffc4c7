"""Clinical sheet reader: COVID-19-AR ClinicalCorrelates (.xlsx) or its csv exports.

Returns plain text cells keyed by normalised headers, so the mapping engine sees the same thing
whichever file it was given. Sheets are told apart by their columns, never by their names, and the
real header row is found by looking for ``patient_id`` (the original workbook has a grouping row
above it). Pure module: no Flask, no database.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import re
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

IMAGING_MARKERS = frozenset({"study_modality", "diag_to_img_study_days", "image_study_description"})
HEADER_SEARCH_ROWS = 20
XLSX_SUFFIXES = {".xlsx", ".xlsm"}
CSV_SUFFIXES = {".csv", ".txt", ".tsv"}


class SheetError(ValueError):
    """The clinical file cannot be used; the message names the file and what is wrong."""


@dataclass(frozen=True)
class ClinicalSheets:
    patients: list[dict[str, str]] = field(default_factory=list)
    imaging: list[dict[str, str]] = field(default_factory=list)


def normalise_header(text: object) -> str:
    """``# ICU admits`` → ``icu_admits``, ``COVID TEST POSITIVE`` → ``covid_test_positive``."""
    return re.sub(r"[^a-z0-9]+", "_", str(text or "").strip().lower()).strip("_")


def cell_text(value: object) -> str:
    """Cell value as text: empty → "", integral numbers without ``.0``, dates in ISO form."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    return str(value).strip()


def _header_index(rows: Sequence[Sequence[object]]) -> int | None:
    for i, row in enumerate(rows[:HEADER_SEARCH_ROWS]):
        if any(normalise_header(c) == "patient_id" for c in row):
            return i
    return None


def _headers(row: Sequence[object]) -> list[str]:
    """Normalised headers; a repeated name gets ``_2``, ``_3`` so no column is lost."""
    seen: dict[str, int] = {}
    out = []
    for cell in row:
        name = normalise_header(cell)
        if name:
            seen[name] = seen.get(name, 0) + 1
            name = name if seen[name] == 1 else f"{name}_{seen[name]}"
        out.append(name)
    return out


def _table(rows: list[Sequence[object]]) -> tuple[list[str], list[dict[str, str]]] | None:
    """Header names and the non-empty data rows of one sheet, or None if it has no patient_id."""
    start = _header_index(rows)
    if start is None:
        return None
    headers = _headers(rows[start])
    records = []
    for row in rows[start + 1:]:
        cells = [cell_text(c) for c in row]
        if not any(cells):
            continue
        cells += [""] * (len(headers) - len(cells))
        records.append({h: cells[i] for i, h in enumerate(headers) if h})
    return [h for h in headers if h], records


def _is_imaging(headers: Iterable[str]) -> bool:
    return bool(IMAGING_MARKERS & set(headers))


def _assemble(path: Path, tables: list[tuple[list[str], list[dict[str, str]]] | None]
              ) -> ClinicalSheets:
    found = [t for t in tables if t is not None]
    if not found:
        raise SheetError(f"{path.name}: no sheet has a patient_id column "
                         f"(looked for a PATIENT_ID / patient_id header in the first "
                         f"{HEADER_SEARCH_ROWS} rows)")
    sheets = ClinicalSheets()
    for headers, records in found:
        (sheets.imaging if _is_imaging(headers) else sheets.patients).extend(records)
    return sheets


def _xlsx_rows(path: Path) -> Iterator[list[Sequence[object]]]:
    from openpyxl import (
        load_workbook,  # imported here: csv-only callers never pay for it
    )

    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError, TypeError) as exc:
        raise SheetError(f"{path.name}: not a readable xlsx workbook ({exc})") from exc
    try:
        for sheet in book.worksheets:
            sheet.reset_dimensions()  # trust the cells, not a possibly stale <dimension>
            yield [tuple(r) for r in sheet.iter_rows(values_only=True)]
    finally:
        book.close()


def _csv_rows(path: Path) -> list[Sequence[object]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        try:
            text = path.read_bytes().decode("cp1252")
        except UnicodeDecodeError as exc:
            raise SheetError(f"{path.name}: not a text (csv) file ({exc})") from exc
    except OSError as exc:
        raise SheetError(f"{path.name}: cannot read ({exc})") from exc
    if "\x00" in text:
        raise SheetError(f"{path.name}: binary content, not a csv file")
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    return list(csv.reader(io.StringIO(text), dialect))


def read_clinical(path: Path) -> ClinicalSheets:
    """Read the clinical sheet(s) from an xlsx workbook or a csv file (one sheet)."""
    path = Path(path)
    if not path.is_file():
        raise SheetError(f"{path.name}: no such file ({path})")
    suffix = path.suffix.lower()
    if suffix in XLSX_SUFFIXES or (suffix not in CSV_SUFFIXES and zipfile.is_zipfile(path)):
        return _assemble(path, [_table(rows) for rows in _xlsx_rows(path)])
    return _assemble(path, [_table(_csv_rows(path))])
