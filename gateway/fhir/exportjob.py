"""Bulk Data export jobs: their state in the index database, their files under DATA_DIR.

Any gunicorn worker may take the kick-off, the polls, the DELETE and the file requests of one
job, so nothing about a job lives in a worker's memory: the row in ``fhir_export_jobs`` says
where it is (accepted, in-progress, completed, failed, cancelled), the worker that took the
kick-off runs it in a thread and beats a heartbeat into the row, and the NDJSON files are in
``DATA_DIR/exports/<job>/`` (written under a temporary name, renamed when whole). A job whose
heartbeat stops (its worker exited) is reported failed by the next poll. A cancel is a row
update the running thread sees between files; it removes the files itself.
"""
from __future__ import annotations

import datetime as dt
import logging
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import orjson
from sqlalchemy import Column, MetaData, String, Table, Text, Float, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from ..dbschema import create_all

log = logging.getLogger(__name__)
metadata = MetaData()
jobs_t = Table(
    "fhir_export_jobs", metadata,
    Column("id", String(36), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("request", Text, nullable=False),
    Column("transaction_time", String(40), nullable=False),
    Column("spec", Text, nullable=False),         # what to export (JSON, Spec)
    Column("progress", String(80), nullable=False),
    Column("heartbeat", Float, nullable=False),   # time.time() of the runner's last sign
    Column("manifest", Text),
    Column("error", Text),
)
STALE_SECONDS = 120.0  # no heartbeat for this long: the job's worker is gone
BEAT_SECONDS = 10.0
ACTIVE = ("accepted", "in-progress")


@dataclass
class Spec:
    """An export as kicked off: the types, the patients (None: all), filters and extras."""

    types: list[str]
    patients: list[str] | None
    since: str | None
    type_filters: dict[str, list[str]] = field(default_factory=dict)
    base: str = ""                                       # FHIR base for the file URLs
    extension: dict[str, Any] | None = None              # manifest extension (the DICOM side)


@dataclass(frozen=True)
class Job:
    id: str
    status: str
    request: str
    transaction_time: str
    spec: Spec
    progress: str
    heartbeat: float
    manifest: bytes | None
    error: str | None


Writer = Callable[[str, Spec, Path], int]   # (type, spec, file) → resources written


class Jobs:
    """Creates, runs, reads and cancels export jobs."""

    def __init__(self, engine: Engine, root: Path) -> None:
        self.engine = engine
        self.root = root
        self._ready = False
        try:
            self.ready()
        except SQLAlchemyError as exc:  # database not up yet: /readyz says so; retried on use
            log.warning("export job table not created at start: %s", exc.__class__.__name__)

    def ready(self) -> None:
        if self._ready:
            return
        create_all(self.engine, metadata)  # another worker may at the same moment
        self._ready = True

    def start(self, request_url: str, spec: Spec, write: Writer) -> str:
        self.ready()
        job_id = str(uuid.uuid4())
        with self.engine.begin() as conn:
            conn.execute(jobs_t.insert().values(
                id=job_id, status="accepted", request=request_url,
                transaction_time=now_instant(), spec=orjson.dumps(spec.__dict__).decode(),
                progress="accepted", heartbeat=time.time()))
        threading.Thread(target=self._run, args=(job_id, spec, write), daemon=True,
                         name=f"export-{job_id[:8]}").start()
        return job_id

    def get(self, job_id: str) -> Job | None:
        self.ready()
        with self.engine.connect() as conn:
            row = conn.execute(select(jobs_t).where(jobs_t.c.id == job_id)).first()
        if row is None:
            return None
        job = Job(row.id, row.status, row.request, row.transaction_time,
                  Spec(**orjson.loads(row.spec)), row.progress, row.heartbeat,
                  row.manifest.encode() if row.manifest else None, row.error)
        if job.status in ACTIVE and time.time() - job.heartbeat > STALE_SECONDS:
            self._set(job.id, status="failed", error="the export stopped: the worker running "
                                                      "it exited; kick it off again")
            return self.get(job_id)
        return job

    def cancel(self, job_id: str) -> bool:
        """Mark cancelled (the runner stops and cleans up) and remove what is written."""
        self.ready()
        with self.engine.begin() as conn:
            done = conn.execute(update(jobs_t).where(
                jobs_t.c.id == job_id, jobs_t.c.status != "cancelled").values(
                status="cancelled")).rowcount
        shutil.rmtree(self.folder(job_id), ignore_errors=True)
        return bool(done)

    def folder(self, job_id: str) -> Path:
        return self.root / job_id

    # ---------------------------------------------------------------- runner
    def _run(self, job_id: str, spec: Spec, write: Writer) -> None:
        done = threading.Event()
        threading.Thread(target=self._beat, args=(job_id, done), daemon=True).start()
        try:
            self._export(job_id, spec, write)
        finally:
            done.set()

    def _beat(self, job_id: str, done: threading.Event) -> None:
        """The heartbeat while a (long) file is written: a poll sees the runner is alive."""
        while not done.wait(BEAT_SECONDS):
            try:
                with self.engine.begin() as conn:
                    conn.execute(update(jobs_t).where(jobs_t.c.id == job_id).values(
                        heartbeat=time.time()))
            except Exception:  # the next beat tries again; a stale job fails on its poll
                log.warning("export %s: heartbeat not written", job_id, exc_info=True)

    def _export(self, job_id: str, spec: Spec, write: Writer) -> None:
        folder = self.folder(job_id)
        outputs = []
        try:
            folder.mkdir(parents=True, exist_ok=True)
            for n, kind in enumerate(spec.types):
                if self._cancelled(job_id, f"{n} of {len(spec.types)} types"):
                    shutil.rmtree(folder, ignore_errors=True)
                    return
                target = folder / f"{kind}.ndjson"
                partial = target.with_suffix(".partial")
                count = write(kind, spec, partial)
                partial.rename(target)
                if count:
                    outputs.append({"type": kind, "url": f"{spec.base}/$export-file/{job_id}/"
                                                          f"{kind}.ndjson", "count": count})
                else:
                    target.unlink()
            self._finish(job_id, spec, outputs)
        except Exception as exc:  # the poll reports it as an OperationOutcome
            log.exception("export %s failed", job_id)
            self._set(job_id, status="failed", error=f"export failed: {exc.__class__.__name__}")

    def _cancelled(self, job_id: str, progress: str) -> bool:
        """One conditional UPDATE: a cancel that lands between a read and a write still wins."""
        with self.engine.begin() as conn:
            moved = conn.execute(update(jobs_t).where(
                jobs_t.c.id == job_id, jobs_t.c.status != "cancelled").values(
                status="in-progress", progress=progress, heartbeat=time.time())).rowcount
        return not moved

    def _finish(self, job_id: str, spec: Spec, outputs: list[dict]) -> None:
        job = self.get(job_id)
        if job is None or job.status == "cancelled":
            shutil.rmtree(self.folder(job_id), ignore_errors=True)
            return
        manifest: dict[str, Any] = {"transactionTime": job.transaction_time,
                                    "request": job.request, "requiresAccessToken": False,
                                    "output": outputs, "error": []}
        if spec.extension:
            manifest["extension"] = spec.extension
        self._set(job_id, status="completed", progress="completed",
                  manifest=orjson.dumps(manifest).decode())

    def _set(self, job_id: str, **values: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(jobs_t).where(jobs_t.c.id == job_id,
                                              jobs_t.c.status != "cancelled").values(**values))


def now_instant() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")
