"""The export job table under a cancel that lands while the runner is between steps."""
from __future__ import annotations

import threading
import time
from pathlib import Path

from sqlalchemy import create_engine, event, select

from gateway.fhir.exportjob import Jobs, Spec, jobs_t


def _store(tmp_path: Path) -> Jobs:
    engine = create_engine(f"sqlite:///{tmp_path / 'jobs.db'}")
    return Jobs(engine, tmp_path / "exports")


def _status(jobs: Jobs, job_id: str) -> str:
    with jobs.engine.connect() as conn:
        return conn.execute(select(jobs_t.c.status).where(jobs_t.c.id == job_id)).scalar_one()


def _accepted(jobs: Jobs) -> str:
    """A job row as start() writes it, with no runner thread to race the test's own calls."""
    with jobs.engine.begin() as conn:
        conn.execute(jobs_t.insert().values(
            id="j1", status="accepted", request="http://x/fhir/$export", transaction_time="t",
            spec='{"types": ["Patient"], "patients": null, "since": null}', progress="accepted", heartbeat=time.time()))
    return "j1"


def test_a_cancel_just_before_the_runners_progress_write_still_wins(tmp_path):
    """The runner's step is one conditional write: it cannot overwrite a cancel with in-progress."""
    jobs = _store(tmp_path)
    job_id = _accepted(jobs)
    cancelled: list[bool] = []

    def cancel_first(conn, cursor, statement, parameters, context, executemany):
        # the moment the runner writes its progress, a DELETE of the status URL lands first
        if statement.startswith("UPDATE") and "progress" in statement and not cancelled:
            cancelled.append(jobs.cancel(job_id))

    event.listen(jobs.engine, "before_cursor_execute", cancel_first)
    try:
        stopped = jobs._cancelled(job_id, "0 of 1 types")
    finally:
        event.remove(jobs.engine, "before_cursor_execute", cancel_first)
    assert cancelled == [True]
    assert stopped
    assert _status(jobs, job_id) == "cancelled"


def test_a_step_of_a_live_job_records_its_progress(tmp_path):
    jobs = _store(tmp_path)
    job_id = _accepted(jobs)
    assert not jobs._cancelled(job_id, "1 of 2 types")
    job = jobs.get(job_id)
    assert job is not None and (job.status, job.progress) == ("in-progress", "1 of 2 types")


def test_a_cancelled_job_reads_as_cancelled_after_the_runner_stops(tmp_path):
    jobs = _store(tmp_path)
    gate = threading.Event()
    job_id = jobs.start("http://x/fhir/$export", Spec(["Patient", "Encounter"], None, None),
                        lambda kind, spec, path: (gate.wait(30), path.write_text(""))[0] and 0)
    assert jobs.cancel(job_id)
    gate.set()
    for thread in threading.enumerate():
        if thread.name == f"export-{job_id[:8]}":
            thread.join(30)
    job = jobs.get(job_id)
    assert job is not None and job.status == "cancelled" and job.manifest is None
    assert not (tmp_path / "exports" / job_id).exists()
    assert not jobs.cancel(job_id)
