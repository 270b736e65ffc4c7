"""``tcia-gateway check [--repair]`` on an archive with injected faults: a deleted file, a
flipped byte, orphans (a good instance nobody indexed, a copy of a deleted file, a stray
non-DICOM file), a stale and a live temp file, a FHIR reference to a study not in the index
and a study STOWed after its clinical sheet (FHIR lacks the link). Every fault is reported,
``--repair`` fixes what it can and names what it cannot."""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from pathlib import Path

import orjson
import pydicom
import pytest
from sqlalchemy import select

from gateway.archive.local import open_local
from gateway.ingest.clinical import import_clinical
from gateway.ingest.importer import run_import
from gateway.config import Settings
from gateway.clinical.repository import resources_t
from tests.support.dicomfiles import make_file
from tests.support.store import run_check

LATE_PATIENT_STUDIES = 1  # the late patient: one study, imported after the clinical sheet


def report_lines(stdout: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in stdout.splitlines():
        kind = line.split(" ", 1)[0]
        if kind in ("missing", "corrupt", "orphan", "leftover") or kind.startswith("fhir-"):
            out.setdefault(kind, []).append(line)
    return out


def stored_bodies(archive, kind: str) -> dict[str, dict]:
    with archive.index.engine.connect() as conn:
        return {rid: orjson.loads(body) for rid, body in conn.execute(
            select(resources_t.c.id, resources_t.c.body).where(resources_t.c.type == kind))}


@pytest.fixture
def late_study(tmp_path: Path, small_cohort) -> tuple[Settings, str, Path]:
    """Everything imported but one patient's study, then the clinical sheet, then that study:
    the sheet's rows for it were mapped while the study was absent."""
    patients = sorted(p for p in small_cohort.root.iterdir() if p.is_dir())
    late = next(p for p in patients if len(list(p.iterdir())) == LATE_PATIENT_STUDIES)
    settings = Settings().replace(data_dir=tmp_path / "data")
    archive = open_local(settings)
    early = [p for p in patients if p != late]
    assert not run_import(archive, early, workers=1, progress=False).rejected
    import_clinical(archive, small_cohort.xlsx)
    assert run_import(archive, [late], workers=1, progress=False).new > 0
    return settings, late.name, late


def test_clean_archive_has_no_problems(data_copy: Path) -> None:
    report = run_check(data_copy)
    assert report.returncode == 0, report.stdout + report.stderr
    assert report.stdout.splitlines()[-1] == "0 problems"


def test_injected_faults_are_reported_and_repaired(late_study) -> None:
    settings, late_pid, _late_dir = late_study
    data = settings.data_dir
    archive = open_local(settings)
    files = sorted((data / "files").rglob("*.dcm"))
    deleted, flipped, restorable = files[0], files[1], files[2]
    deleted.unlink()
    damaged = bytearray(flipped.read_bytes())
    damaged[-5] ^= 0x01
    flipped.write_bytes(damaged)
    original = restorable.read_bytes()
    (data / "files" / "stray").mkdir()
    shutil.move(restorable, data / "files" / "stray" / "copy.dcm")  # its only copy, misplaced
    new = make_file(data / "files" / "lost" / "new.dcm", patient="LOST", study="lost", sop="lost-1")
    lost_uid = pydicom.dcmread(new).SOPInstanceUID
    (data / "files" / "stray" / "notes.txt").write_text("not an instance")
    old_part, live_part = data / "tmp" / "crash.part", data / "tmp" / "live.part"
    for part in (old_part, live_part):
        part.write_bytes(b"\0" * 4096)
        os.utime(part, (time.time() - 7200, time.time() - 7200))
    dangling_id = _point_at_unknown_study(archive)

    with open(live_part, "rb") as live:
        fcntl.flock(live, fcntl.LOCK_EX)  # a writer that is still at it
        report = run_check(data)
        assert report.returncode == 1
        found = report_lines(report.stdout)
        assert sorted(l.split(":")[0] for l in found["missing"]) == sorted([
            f"missing {deleted.relative_to(data / 'files')}",
            f"missing {restorable.relative_to(data / 'files')}"])
        assert found["corrupt"] == [
            next(l for l in found["corrupt"] if str(flipped.relative_to(data / "files")) in l)]
        assert "sha256" in found["corrupt"][0]
        assert sorted(l.split(":")[0] for l in found["orphan"]) == [
            "orphan lost/new.dcm", "orphan stray/copy.dcm", "orphan stray/notes.txt"]
        assert found["leftover"] == [l for l in found["leftover"] if "tmp/crash.part" in l]
        assert len(found["leftover"]) == 1  # the live part is in flight, not a leftover
        assert any(f"Observation/{dangling_id}" in l for l in found["fhir-dangling"])
        # the late patient's resources, and the altered one (it lacks its real study now)
        assert all(late_pid in l or f"Observation/{dangling_id}:" in l
                   for l in found["fhir-missing-link"]), report.stdout
        assert any("DiagnosticReport/" in l for l in found["fhir-missing-link"])
        assert "1 temp files in flight" in report.stdout

        report = run_check(data, "--repair")
        assert live_part.exists()
        live_part.unlink()  # the writer is done with it
    assert report.returncode == 1  # the deleted and the flipped file have no other copy
    lines = report.stdout.splitlines()
    not_repaired = [l for l in lines if "-> NOT REPAIRED" in l]
    assert sorted(l.split(":")[0] for l in not_repaired) == sorted([
        f"missing {deleted.relative_to(data / 'files')}",
        f"corrupt {flipped.relative_to(data / 'files')}"])
    assert all("no other copy" in l and "send the original again" in l for l in not_repaired)
    assert restorable.read_bytes() == original  # restored from the misplaced copy
    assert not (data / "files" / "stray").exists() or not any((data / "files" / "stray").iterdir())
    assert not old_part.exists()
    assert not new.exists()  # indexed, at its own place
    assert archive.index.existing([lost_uid])

    reports = stored_bodies(archive, "DiagnosticReport")
    linked = [r for rid, r in reports.items() if rid.startswith(late_pid) and r.get("imagingStudy")]
    assert linked, "the late patient's report links its study after the repair"
    observation = stored_bodies(archive, "Observation")[dangling_id]
    assert "ImagingStudy/9.9.9" not in json.dumps(observation)

    after = run_check(data)
    assert after.returncode == 1
    assert sorted(l.split(":")[0] for l in after.stdout.splitlines() if ":" in l) == sorted([
        f"missing {deleted.relative_to(data / 'files')}",
        f"corrupt {flipped.relative_to(data / 'files')}"])


def _point_at_unknown_study(archive) -> str:
    """Make one stored Observation reference ImagingStudy/9.9.9 (a study the index lacks)."""
    for rid, body in stored_bodies(archive, "Observation").items():
        text = json.dumps(body)
        if '"ImagingStudy/' in text:
            start = text.index('"ImagingStudy/') + len('"ImagingStudy/')
            end = text.index('"', start)
            changed = text[:start] + "9.9.9" + text[end:]
            with archive.index.engine.begin() as conn:
                conn.execute(resources_t.update().where(
                    (resources_t.c.type == "Observation") & (resources_t.c.id == rid))
                    .values(body=changed.encode()))
            return rid
    raise AssertionError("no Observation references an ImagingStudy")


def test_quick_check_sees_sizes_not_flipped_bytes(data_copy: Path) -> None:
    target = sorted((data_copy / "files").rglob("*.dcm"))[0]
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF
    target.write_bytes(data)
    assert run_check(data_copy, "--quick").returncode == 0
    full = run_check(data_copy)
    assert full.returncode == 1 and "corrupt " in full.stdout
    target.write_bytes(data[:-100])
    quick = run_check(data_copy, "--quick")
    assert quick.returncode == 1 and "the index says" in quick.stdout
