"""What in an imported folder is not a DICOM instance: the clinical sheet, and sidecars.

A TCIA download (NBIA layout) and the folder ``synth`` writes hold more than DICOM files: the
clinical sheet under the names the collection uses (``COVID_19_AR_ClinicalCorrelates*.xlsx``,
both sheets) and its csv exports (``clinical.csv``, ``clinical_imaging.csv``; see
docs/synthetic-cohort.md), and the download's own files (``metadata.csv``, ``LICENSE``, the
``*.tcia`` manifest). A named sheet whose header row has ``patient_id`` is imported as the
clinical sheet; the rest of these is skipped and counted, never reported as a rejected DICOM
file (any other file is still tried as DICOM). Where the workbook lies, its csv exports next
to it say the same and are skipped too; a sheet inside a zip is skipped (import it with
``--clinical``).
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ..mapping.sheet import SheetError, read_clinical

WORKBOOK = re.compile(r"^covid_19_ar_clinicalcorrelates.*\.xlsx$", re.IGNORECASE)
EXPORTS = frozenset({"clinical.csv", "clinical_imaging.csv"})
# What an NBIA download puts next to the images: its manifest (*.tcia), the series table
# (metadata.csv) and the collection's licence; a cohort's ZIP adds its CITATION (docs/cohorts.md).
SIDECAR_SUFFIXES = frozenset({".tcia"})
SIDECAR_NAMES = frozenset({"metadata.csv", "license", "license.txt", "licence", "licence.txt",
                           "citation", "citation.txt"})


@dataclass
class Found:
    """Clinical sheets to import (in order) and the names of the files skipped."""

    sheets: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def is_sidecar(name: str) -> bool:
    """A file (or zip member) that is not a DICOM instance, by its name alone."""
    pure = PurePosixPath(name)
    return (pure.suffix.lower() in SIDECAR_SUFFIXES or pure.name.lower() in SIDECAR_NAMES
            or is_sheet_name(pure.name))


def is_sheet_name(name: str) -> bool:
    return bool(WORKBOOK.match(name)) or name.lower() in EXPORTS


def sort_out(paths: Iterable[Path]) -> Found:
    """Sheets and skipped files among ``paths`` (files :func:`is_sidecar` picked out)."""
    found = Found()
    candidates: list[Path] = []
    for path in paths:
        if is_sheet_name(path.name) and _readable_sheet(path):
            candidates.append(path)
        else:
            found.skipped.append(str(path))
    workbook_dirs = {p.parent for p in candidates if WORKBOOK.match(p.name)}
    for path in candidates:
        if path.name.lower() in EXPORTS and path.parent in workbook_dirs:
            found.skipped.append(str(path))  # the workbook next to it has the same rows
        else:
            found.sheets.append(path)
    return found


def _readable_sheet(path: Path) -> bool:
    try:
        read_clinical(path)
    except SheetError:
        return False
    return True
