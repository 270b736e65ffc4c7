"""The clinical sheet into the clinical store: rows as imported, then FHIR rebuilt from them.

The images come first (``importer``): the mapping links imaging rows to the DICOM studies the
archive holds, so a sheet imported before its images links nothing (import it again after).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..archive.local import LocalArchive
from ..clinical import rows as clinical_rows
from ..clinical.repository import Repository
from ..mapping.engine import Engine
from ..mapping.sheet import read_clinical
from .rebuild import rebuild


@dataclass(frozen=True)
class ClinicalReport:
    patients: int
    imaging: int
    source: str
    fhir: str = ""  # what the mapping made of them (resources stored, cell warnings)


def import_clinical(archive: LocalArchive, path: Path,
                    engine: Engine | None = None) -> ClinicalReport:
    """Keep the clinical sheet's rows (normalised headers), then map exactly the patients it
    names (``engine``: the mapping of MAPPINGS_DIR, by default the built-in one)."""
    sheets = read_clinical(path)
    counts: Counter[str] = Counter()
    touched: set[str] = set()
    for name, rows in (("patients", sheets.patients), ("imaging", sheets.imaging)):
        numbered: dict[str, int] = Counter()
        items = []
        for row in rows:
            pid = row.get("patient_id", "").strip()
            if not pid:
                continue
            numbered[pid] += 1
            items.append((pid, numbered[pid], row))
        counts[name] = clinical_rows.replace(archive.index.engine, name, path.name, items)
        touched.update(pid for pid, _n, _row in items)
    # FHIR: rebuild exactly these patients' resources from their rows (idempotent).
    mapped, stored = rebuild(archive, Repository(archive.index.engine), touched, engine)
    fhir = f"{mapped.summary()}; " + ", ".join(f"{n} {k}" for k, n in stored.items())
    return ClinicalReport(counts["patients"], counts["imaging"], path.name, fhir)
