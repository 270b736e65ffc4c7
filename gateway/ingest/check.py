"""``tcia-gateway check [--repair]``: is the archive whole, and what can be done if not.

Checks that every index row has its file with the stored size and SHA-256 (``missing``,
``corrupt``), that no file under ``files/`` is unknown to the index (``orphan``: a crash
between placing and indexing, or a stray copy), that ``tmp/`` holds no leftovers of a crash
(``leftover``: older than TEMP_MAX_AGE and not being written), and that the clinical sheet's
FHIR resources reference exactly the indexed studies their rows link to (see check_fhir).

``repair`` indexes orphans that are good instances nobody indexed, removes the other orphans
and the leftovers, restores a missing or corrupt file from an orphan holding the same bytes,
and rebuilds the FHIR resources of patients whose links are off. What it cannot repair (an
indexed file gone or damaged with no other copy) it says, with what would.
"""
from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from sqlalchemy import select

from ..archive.local import LocalArchive, Prepared
from ..archive.local.schema import instances
from ..archive.local.store import CHUNK
from ..archive.protocol import FailureReason, StoreOutcome, StoreResult
from . import check_fhir

BATCH = 256
HASH_THREADS = 4  # hashlib releases the GIL on large updates: overlaps reads and hashing


@dataclass
class Problem:
    kind: str      # missing | corrupt | orphan | leftover | fhir-dangling | fhir-missing-link ...
    subject: str   # a store path (relative to files/ or tmp/) or a FHIR resource
    detail: str
    repaired: bool | None = None  # None: no repair tried
    outcome: str = ""

    def line(self) -> str:
        head = f"{self.kind} {self.subject}: {self.detail}"
        if self.repaired is None:
            return head
        return f"{head} -> {'repaired' if self.repaired else 'NOT REPAIRED'}: {self.outcome}"


@dataclass
class Report:
    instances: int = 0
    bytes: int = 0
    files: int = 0
    in_flight: int = 0
    patients: int = 0
    digests: bool = True
    problems: list[Problem] = field(default_factory=list)

    @property
    def unrepaired(self) -> list[Problem]:
        return [p for p in self.problems if not p.repaired]

    def summary(self) -> str:
        verified = "sha256 verified" if self.digests else "sizes only"
        head = (f"checked {self.instances} indexed instances ({self.bytes / 1e6:.1f} MB, "
                f"{verified}), {self.files} stored files, {self.in_flight} temp files in "
                f"flight, FHIR links of {self.patients} patients")
        repaired = sum(1 for p in self.problems if p.repaired)
        tried = any(p.repaired is not None for p in self.problems)
        tail = f"{len(self.problems)} problems"
        if tried:
            tail += f": {repaired} repaired, {len(self.problems) - repaired} not repaired"
        return f"{head}\n{tail}"


@dataclass(frozen=True)
class Row:
    path: str
    size: int
    sha256: str
    sop_uid: str


def check(archive: LocalArchive, *, temp_max_age: float, repair: bool = False,
          digests: bool = True) -> Report:
    """Check (and with ``repair``, mend) the archive; see the module docstring."""
    if archive.duplicate_policy != "reject":  # an orphan must never replace a newer version
        archive = LocalArchive(archive.files.root, archive.index.url, index=archive.index)
    report = Report(digests=digests)
    rows = _rows(archive)
    report.instances, report.bytes = len(rows), sum(r.size for r in rows)
    bad = dict(_verify(archive, rows, digests))
    orphans, report.files = _orphans(archive, {r.path for r in rows})
    stale = archive.files.stale_parts(temp_max_age)
    report.in_flight = sum(1 for _p in archive.files.tmp.glob("*.part")) - len(stale)
    report.problems += bad.values()
    report.problems += [Problem("orphan", rel, "a stored file no index row knows")
                        for rel in orphans]
    report.problems += [Problem("leftover", f"tmp/{p.name}", "temp file older than "
                                f"TEMP_MAX_AGE={temp_max_age:g}s that nobody writes")
                        for p in stale]
    links, report.patients = check_fhir.check_links(archive)
    if not repair:
        report.problems += [_link_problem(lp) for lp in links]
        return report
    _repair_orphans(archive, [p for p in report.problems if p.kind == "orphan"])
    _repair_leftovers(archive, [p for p in report.problems if p.kind == "leftover"])
    _recheck(archive, bad, digests)
    report.problems += _repair_links(archive, links)
    return report


def _rows(archive: LocalArchive) -> list[Row]:
    stmt = select(instances.c.path, instances.c.size, instances.c.sha256, instances.c.sop_uid)
    with archive.index.engine.connect() as conn:
        return [Row(*r) for r in conn.execute(stmt.order_by(instances.c.path))]


def _verify(archive: LocalArchive, rows: list[Row], digests: bool) -> Iterator[tuple[Row, Problem]]:
    """Rows whose file is absent, of another size, or (``digests``) of other bytes."""
    with ThreadPoolExecutor(HASH_THREADS) as pool:
        for row, why in zip(rows, pool.map(lambda r: _fault(archive, r, digests), rows),
                            strict=True):
            if why:
                yield row, Problem(why[0], row.path, why[1])


def _fault(archive: LocalArchive, row: Row, digests: bool) -> tuple[str, str] | None:
    try:
        path = archive.files.local_path(row.path)  # an object store: fetched (hot cache)
        size = path.stat().st_size
        if size != row.size:
            return "corrupt", (f"{size} bytes, the index says {row.size} "
                               f"(SOPInstanceUID {row.sop_uid})")
        if digests and (digest := _sha256(path)) != row.sha256:
            return "corrupt", (f"sha256 {digest[:12]}..., the index says {row.sha256[:12]}... "
                               f"(SOPInstanceUID {row.sop_uid})")
    except FileNotFoundError:
        return "missing", f"indexed SOPInstanceUID {row.sop_uid} has no file"
    except OSError as exc:
        return "corrupt", f"unreadable: {exc.strerror or exc} (SOPInstanceUID {row.sop_uid})"
    return None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _orphans(archive: LocalArchive, indexed: set[str]) -> tuple[list[str], int]:
    """Files under files/ that no row names (checked again under the store lock, so a file
    being placed and indexed right now is not one), and how many files there are."""
    root = archive.files.files
    candidates, count = [], 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            count += 1
            rel = Path(dirpath, name).relative_to(root).as_posix()
            if rel not in indexed:
                candidates.append(rel)
    if not candidates:
        return [], count
    with archive.files.exclusive():
        known = archive.index.paths_known(candidates)
    return [rel for rel in candidates if rel not in known
            and archive.files.local_path(rel).exists()], count


def _repair_orphans(archive: LocalArchive, problems: list[Problem]) -> None:
    """Store a copy of each orphan (the archive decides under its lock): a new instance is
    indexed, a copy of an indexed one restores that file if it was missing or bad; then the
    orphan goes unless the index now names its path."""
    for i in range(0, len(problems), BATCH):
        chunk = problems[i:i + BATCH]
        ready: list[tuple[Problem, Prepared]] = []
        for problem in chunk:
            prepared = _copy_of(archive, problem)
            if prepared is not None:
                ready.append((problem, prepared))
        results = archive.commit([p for _pr, p in ready]) if ready else []
        for (problem, _p), result in zip(ready, results, strict=True):
            _settle_orphan(archive, problem, result)


def _copy_of(archive: LocalArchive, problem: Problem) -> Prepared | None:
    try:
        prepared = archive.prepare(archive.files.receive(archive.files.local_path(problem.subject)))
    except OSError as exc:
        problem.repaired, problem.outcome = False, f"cannot read it: {exc.strerror or exc}"
        return None
    if isinstance(prepared, StoreResult):
        _remove_orphan(archive, problem, f"removed: not a storable instance ({prepared.message})")
        return None
    return prepared


def _settle_orphan(archive: LocalArchive, problem: Problem, result: StoreResult) -> None:
    sop = result.sop_uid
    if result.outcome is StoreOutcome.STORED:
        _remove_orphan(archive, problem, f"indexed as SOPInstanceUID {sop} (moved to its place)",
                       kept=f"indexed as SOPInstanceUID {sop}")
    elif result.outcome is StoreOutcome.DUPLICATE:
        _remove_orphan(archive, problem, f"removed: a copy of indexed SOPInstanceUID {sop}")
    elif result.reason is FailureReason.DUPLICATE_SOP_INSTANCE:
        _remove_orphan(archive, problem, f"removed: SOPInstanceUID {sop} is indexed with "
                                         "other bytes")
    else:
        problem.repaired, problem.outcome = False, result.message


def _remove_orphan(archive: LocalArchive, problem: Problem, note: str,
                   kept: str = "kept: the index names this file now") -> None:
    """Remove the orphan unless the index names its path now (the store placed it there)."""
    with archive.files.exclusive():
        if problem.subject in archive.index.paths_known([problem.subject]):
            note = kept
        else:
            archive.files.delete(problem.subject)
    problem.repaired, problem.outcome = True, note


def _repair_leftovers(archive: LocalArchive, problems: list[Problem]) -> None:
    for problem in problems:
        (archive.files.tmp / Path(problem.subject).name).unlink(missing_ok=True)
        problem.repaired, problem.outcome = True, "removed"


def _recheck(archive: LocalArchive, bad: dict[Row, Problem], digests: bool) -> None:
    """A missing or corrupt file is repaired if an orphan with its bytes was found above."""
    for row, problem in bad.items():
        if _fault(archive, row, digests) is None:
            problem.repaired, problem.outcome = True, "restored from an orphan with its bytes"
        else:
            problem.repaired, problem.outcome = False, (
                f"no other copy of SOPInstanceUID {row.sop_uid} (sha256 {row.sha256[:12]}...) "
                "here: send the original again (STOW-RS, C-STORE or import); identical bytes "
                "restore the file")


def _link_problem(lp: check_fhir.LinkProblem) -> Problem:
    return Problem(lp.kind, lp.resource, f"{lp.detail} (patient {lp.patient_id})")


def _repair_links(archive: LocalArchive,
                  before: list[check_fhir.LinkProblem]) -> list[Problem]:
    """Rebuild the patients whose links are off (after the file repairs, which may have
    indexed studies), then say which problems remain."""
    now, _n = check_fhir.check_links(archive)
    found = {(lp.kind, lp.resource, lp.study_uid): lp for lp in [*before, *now]}
    rebuilt, counts = check_fhir.repair_links(archive, now)
    after, _n = check_fhir.check_links(archive)
    remaining = {(lp.kind, lp.resource, lp.study_uid) for lp in after}
    problems = []
    for key, lp in found.items():
        problem = _link_problem(lp)
        problem.repaired = key not in remaining
        if problem.repaired:
            problem.outcome = (f"FHIR resources of patient {lp.patient_id} rebuilt ({counts})"
                               if lp.patient_id in rebuilt else "in step after the file repairs")
        elif lp.patient_id not in rebuilt:
            problem.outcome = f"no clinical rows of patient {lp.patient_id} to rebuild from"
        else:
            problem.outcome = "still off after a rebuild from the clinical rows"
        problems.append(problem)
    return problems
