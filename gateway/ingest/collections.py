"""The FHIR resources of the archive's collections, from its index (idempotent).

After an import: one ResearchStudy per collection the index holds (facts from
``collections_index``), one ResearchSubject per patient and collection, and a Patient made
from DICOM for each subject without clinical sheet rows (RICORD, NY-SBU: docs/collections.md), so
``Patient?_has:ResearchSubject:individual:study=ResearchStudy/<name>`` finds every subject.
Unchanged resources keep their versionId; subjects of a collection no longer held go.
"""
from __future__ import annotations

import logging
from collections import defaultdict

from sqlalchemy import select

from ..archive.local.archive import LocalArchive
from ..archive.local.schema import patients, studies
from ..clinical import collections as C
from ..clinical.repository import Repository
from ..clinical.resources import InvalidResource, validate
from ..clinical.rows import clinical_rows

log = logging.getLogger(__name__)


def sync_collections(archive: LocalArchive, repository: Repository,
                     facts: dict[str, C.CollectionFacts]) -> dict[str, int]:
    """Store the collections' resources; the counts of what changed."""
    members, sexes = _members(archive)
    names = sorted({c for cs in members.values() for c in cs})
    total = {"created": 0, "updated": 0, "unchanged": 0, "deleted": 0}

    def add(counts: dict[str, int]) -> None:
        for k, v in counts.items():
            total[k] += v

    add(repository.replace_shared(["ResearchStudy"], _valid(
        [C.research_study(n, facts.get(n)) for n in names])))
    with repository.engine.connect() as conn:
        sheet = set(conn.execute(select(clinical_rows.c.patient_id).distinct()).scalars())
    for pid, cs in sorted(members.items()):
        subjects = [C.research_subject(pid, c) for c in sorted(cs)]
        if pid in sheet:  # the sheet's mapping makes the Patient
            add(repository.replace_patients([pid], _valid(subjects), types=["ResearchSubject"]))
        else:
            made = [C.dicom_patient(pid, sexes.get(pid), sorted(cs)), *subjects]
            add(repository.replace_patients([pid], _valid(made),
                                            types=["Patient", "ResearchSubject"]))
    log.info("collections: %d collections, %d subjects: %s", len(names), len(members), total)
    return total


def _members(archive: LocalArchive) -> tuple[dict[str, set[str]], dict[str, str]]:
    """Patient → the collections of its studies, and each patient's DICOM PatientSex."""
    stmt = (select(patients.c.patient_id, patients.c.patient_sex, studies.c.collection)
            .select_from(patients.join(studies, studies.c.patient_pk == patients.c.pk))
            .where(studies.c.collection.is_not(None)).distinct())
    members: dict[str, set[str]] = defaultdict(set)
    sexes: dict[str, str] = {}
    with archive.index.engine.connect() as conn:
        for pid, sex, collection in conn.execute(stmt):
            if C.fhir_id(pid) != pid:
                log.warning("PatientID %r is not a FHIR id: no ResearchSubject", pid)
                continue
            members[pid].add(collection)
            sexes[pid] = sex or ""
    return members, sexes


def _valid(resources: list[dict]) -> list[dict]:
    """R4 (fhir.resources) validation before storing, as the mapping engine does."""
    out = []
    for resource in resources:
        try:
            validate(resource)
        except InvalidResource as exc:
            log.warning("not stored: %s", exc)
            continue
        out.append(resource)
    return out
