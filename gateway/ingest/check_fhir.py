"""FHIR links in step with the index: the ImagingStudy references of stored resources.

ImagingStudy itself is built from the index on every request, so it cannot drift; what can is
the clinical sheet's resources (DiagnosticReport.imagingStudy, Observation.partOf/derivedFrom),
mapped when the sheet was imported. A study stored after its sheet (STOW, C-STORE) leaves its
rows unlinked; a study gone from the index leaves references dangling. Both are found by
mapping each patient again without storing (what a rebuild would write) and comparing.
"""
from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any, Iterator

import orjson
from sqlalchemy import select, update

from ..archive.local import LocalArchive
from ..archive.local.schema import studies
from ..clinical import rows as clinical_rows
from ..clinical.repository import Repository, resources_t
from ..mapping import link
from ..mapping.engine import Engine, MapReport
from .rebuild import rebuild

REF = "ImagingStudy/"


@dataclass(frozen=True)
class LinkProblem:
    kind: str         # fhir-dangling | fhir-missing-link | fhir-stale-link
    resource: str     # "DiagnosticReport/<id>"
    patient_id: str
    study_uid: str
    detail: str


def study_refs(resource: Any) -> set[str]:
    """StudyInstanceUIDs of every ``{"reference": "ImagingStudy/<uid>"}`` in a resource."""
    found: set[str] = set()
    stack = [resource]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            ref = item.get("reference")
            if isinstance(ref, str) and ref.startswith(REF):
                found.add(ref[len(REF):])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def check_links(archive: LocalArchive) -> tuple[list[LinkProblem], int]:
    """Problems, and how many patients' resources were compared."""
    repository = Repository(archive.index.engine)
    with archive.index.engine.connect() as conn:
        indexed = set(conn.execute(select(studies.c.study_uid)).scalars())
        stored: dict[str, tuple[str, set[str]]] = {}
        columns = (resources_t.c.type, resources_t.c.id, resources_t.c.patient_id,
                   resources_t.c.body)
        for kind, rid, pid, body in conn.execute(select(*columns)):
            if REF.encode() in body:
                stored[f"{kind}/{rid}"] = (pid or "", study_refs(orjson.loads(body)))
    problems = [LinkProblem("fhir-dangling", name, pid, uid,
                            f"references ImagingStudy/{uid}, which is not in the index")
                for name, (pid, refs) in sorted(stored.items()) for uid in sorted(refs - indexed)]
    rows = clinical_rows.load(repository.engine)
    engine, report = Engine(), MapReport()
    with _quiet("gateway.mapping"):
        for pid in sorted(rows):
            sheets = rows[pid]
            if not sheets["imaging"]:
                continue
            links = link.link(sheets["imaging"], link.studies_of(archive, pid))
            for resource in engine.map_patient(pid, sheets["patients"], sheets["imaging"],
                                               links, report):
                problems += _compare(resource, pid, stored, indexed)
    return problems, len(rows)


def _compare(resource: dict, pid: str, stored: dict[str, tuple[str, set[str]]],
             indexed: set[str]) -> Iterator[LinkProblem]:
    expected = study_refs(resource)
    name = f"{resource['resourceType']}/{resource['id']}"
    have = stored.get(name, ("", set()))[1]
    for uid in sorted(expected - have):
        yield LinkProblem("fhir-missing-link", name, pid, uid,
                          f"lacks ImagingStudy/{uid}, the study its clinical row links to")
    for uid in sorted((have - expected) & indexed):
        yield LinkProblem("fhir-stale-link", name, pid, uid,
                          f"references ImagingStudy/{uid}, which its clinical row no longer "
                          "links to")


def repair_links(archive: LocalArchive, problems: list[LinkProblem]) -> tuple[set[str], str]:
    """Rebuild the resources of the patients concerned from their clinical rows; (rebuilt
    patient ids, summary). The resources named are rewritten even if their stored digest
    says unchanged (the body itself was altered). A patient without rows is left alone:
    there is nothing to rebuild from."""
    repository = Repository(archive.index.engine)
    pids = {lp.patient_id for lp in problems}
    with_rows = set(clinical_rows.load(repository.engine, sorted(pids))) & pids
    if not with_rows:
        return set(), ""
    with archive.index.engine.begin() as conn:
        for lp in problems:
            kind, _sep, rid = lp.resource.partition("/")
            conn.execute(update(resources_t).where(
                (resources_t.c.type == kind) & (resources_t.c.id == rid)).values(digest=""))
    with _quiet("gateway.mapping"):
        _report, counts = rebuild(archive, repository, sorted(with_rows))
    return with_rows, ", ".join(f"{n} {k}" for k, n in counts.items() if n)


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    """The mapping warns per unusable cell: the import said so already; check only compares."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
