"""Rebuild the FHIR resources of patients from their stored clinical rows (idempotent).

Called by the clinical sheet import after the rows are stored: reads ``clinical_rows``, links
imaging rows to DICOM studies through the Archive protocol, maps with the engine and replaces
exactly these patients' resources (unchanged resources keep their versionId).
"""
from __future__ import annotations

import logging
from typing import Iterable

from ..archive.protocol import Archive
from ..clinical import rows as clinical_rows
from ..clinical.params import MAPPED
from ..clinical.repository import Repository
from ..mapping import link
from ..mapping.engine import Engine, MapReport

log = logging.getLogger(__name__)


def rebuild(archive: Archive, repository: Repository, patient_ids: Iterable[str] | None = None,
            engine: Engine | None = None) -> tuple[MapReport, dict[str, int]]:
    """Map and store the resources of ``patient_ids`` (all patients with rows when None)."""
    engine = engine or Engine()
    rows = clinical_rows.load(repository.engine, patient_ids)
    pids = sorted(set(patient_ids) if patient_ids is not None else set(rows))
    report = MapReport()
    made: list[dict] = []
    for pid in pids:
        sheets = rows.get(pid, {"patients": [], "imaging": []})
        links = link.link(sheets["imaging"], link.studies_of(archive, pid)) if sheets["imaging"] \
            else link.Links()
        made += engine.map_patient(pid, sheets["patients"], sheets["imaging"], links, report)
    counts = repository.replace_patients(pids, made, types=MAPPED)  # not ResearchSubject
    log.info("FHIR mapping: %s; stored %s", report.summary(), counts)
    return report, counts
