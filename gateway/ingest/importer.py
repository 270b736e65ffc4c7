"""Bulk import of files, folders and zip archives into the LocalArchive.

The expensive part (copy into the store's temp dir with hashing + fsync, parse,
metadata JSON, frame table) runs in a process pool; placing and indexing runs in
this process, in batches, so duplicate decisions are made against one index.
One bad file produces one 'rejected' line and never stops or damages the rest. The clinical
sheet and the other non-DICOM files of a download are sorted out first (``sidecars``).
"""
from __future__ import annotations

import multiprocessing
import os
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from ..archive.local.archive import LocalArchive, Prepared, with_collection
from ..archive.protocol import StoreOutcome, StoreResult
from ..archive.local.store import FileStore
from .sidecars import is_sidecar, sort_out

BATCH = 256


@dataclass(frozen=True)
class Task:
    """A file to import: a path, or a member of a zip archive."""

    path: Path
    member: str | None = None

    @property
    def name(self) -> str:
        return f"{self.path}!{self.member}" if self.member else str(self.path)


@dataclass
class ImportReport:
    new: int = 0
    duplicate: int = 0
    replaced: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)
    bytes: int = 0
    skipped: list[str] = field(default_factory=list)   # not DICOM: sidecars of a download
    sheets: list[Path] = field(default_factory=list)   # clinical sheets found (not imported)

    def add(self, name: str, result: StoreResult, size: int = 0) -> None:
        if result.outcome is StoreOutcome.STORED:
            self.new += 1
            self.bytes += size
        elif result.outcome is StoreOutcome.DUPLICATE:
            self.duplicate += 1
        elif result.outcome is StoreOutcome.REPLACED:
            self.replaced += 1
            self.bytes += size
        else:
            code = f"0x{int(result.reason):04X} " if result.reason is not None else ""
            self.rejected.append((name, f"{code}{result.message}"))

    def summary(self) -> str:
        return (f"{self.new} new, {self.duplicate} duplicate, {self.replaced} replaced, "
                f"{len(self.rejected)} rejected, {len(self.skipped)} skipped (not DICOM)")


def discover(paths: Iterable[Path]) -> Iterator[Task]:
    """Files under each path (recursively, sorted), zip members expanded."""
    for root in paths:
        root = Path(root)
        if root.is_dir():
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames.sort()
                for name in sorted(filenames):
                    yield from _tasks_for(Path(dirpath) / name)
        elif root.exists():
            yield from _tasks_for(root)
        else:
            yield Task(root)  # reported as rejected: does not exist


def _tasks_for(path: Path) -> Iterator[Task]:
    if path.suffix.lower() == ".zip" and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if not info.is_dir():
                    yield Task(path, info.filename)
    else:
        yield Task(path)


_worker_store: FileStore | None = None


def _init_worker(root: str) -> None:
    global _worker_store
    _worker_store = FileStore(Path(root))


def prepare_task(task: Task, store: FileStore | None = None) -> tuple[Task, Prepared | StoreResult]:
    """Receive and parse one file (runs in a pool worker)."""
    from ..archive.local.ingest import IngestError, parse_file
    from ..archive.protocol import FailureReason
    store = store or _worker_store
    assert store is not None
    try:
        if task.member is not None:
            with zipfile.ZipFile(task.path) as zf, zf.open(task.member) as fh:
                received = store.receive(fh)
        else:
            received = store.receive(task.path)
    except (OSError, zipfile.BadZipFile) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        return task, StoreResult(StoreOutcome.FAILED, reason=FailureReason.PROCESSING_FAILURE,
                                 message=f"cannot read: {reason}")
    try:
        record = parse_file(received.path, sha256=received.sha256, size=received.size)
    except IngestError as exc:
        received.path.unlink(missing_ok=True)
        return task, StoreResult(StoreOutcome.FAILED, reason=exc.reason, message=exc.message)
    return task, Prepared(received, record)


def run_import(archive: LocalArchive, paths: Iterable[Path], *, workers: int = 1,
               progress: bool | None = None,
               on_reject: Callable[[str, str], None] | None = None,
               collection: str | None = None) -> ImportReport:
    """Import the DICOM files under ``paths``; the clinical sheets found are listed in the
    report (``sheets``) for the caller to import once the images are in. ``collection``
    names the collection of every file (else each file's CTP ProjectName, if any)."""
    tasks: list[Task] = []
    others: list[Path] = []
    report = ImportReport()
    for task in discover(paths):
        if not is_sidecar(task.member or task.path.name):
            tasks.append(task)
        elif task.member is None:
            others.append(task.path)
        else:
            report.skipped.append(task.name)
    found = sort_out(others)
    report.sheets, report.skipped = found.sheets, report.skipped + found.skipped
    show = sys.stderr.isatty() if progress is None else progress
    bar = _progress(len(tasks), show)
    batch: list[tuple[Task, Prepared]] = []

    def flush() -> None:
        results = archive.commit([p for _t, p in batch])
        for (task, prepared), result in zip(batch, results, strict=True):
            _note(report, task.name, result, prepared.received.size, on_reject)
        batch.clear()

    for task, outcome in _prepared(archive, tasks, workers):
        bar.update(1)
        if isinstance(outcome, StoreResult):
            _note(report, task.name, outcome, 0, on_reject)
            continue
        batch.append((task, with_collection(outcome, collection) if collection else outcome))
        if len(batch) >= BATCH:
            flush()
    flush()
    bar.close()
    return report


def _note(report: ImportReport, name: str, result: StoreResult, size: int,
          on_reject: Callable[[str, str], None] | None) -> None:
    report.add(name, result, size)
    if not result.ok and on_reject:
        on_reject(name, report.rejected[-1][1])


def _prepared(archive: LocalArchive, tasks: list[Task],
              workers: int) -> Iterator[tuple[Task, Prepared | StoreResult]]:
    if workers <= 1 or len(tasks) < 8:
        for task in tasks:
            yield prepare_task(task, archive.files)
        return
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(workers, initializer=_init_worker, initargs=(str(archive.files.root),)) as pool:
        yield from pool.imap_unordered(prepare_task, tasks, chunksize=4)


class _NoBar:
    def update(self, _n: int) -> None: ...
    def close(self) -> None: ...


def _progress(total: int, show: bool) -> Any:
    if not show:
        return _NoBar()
    from tqdm import tqdm
    return tqdm(total=total, unit="file", desc="import", file=sys.stderr)
