"""Importer: folders, zips, the NBIA layout, duplicates, bad files amid good ones,
and a crash between file write and index insert."""
from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pydicom
import pytest

from gateway.archive import Level, Query, UidPath
from gateway.archive.local import LocalArchive, open_local
from gateway.archive.local.index import Index
from gateway.ingest.importer import run_import
from gateway.config import Settings
from tests.support.dicomfiles import make_file, uid


@pytest.fixture
def archive(settings: Settings) -> LocalArchive:
    return open_local(settings)


def good_files(folder: Path, n: int = 5) -> list[Path]:
    return [make_file(folder / "a" / f"{i}.dcm", series="S", sop=f"i{i}", InstanceNumber=i + 1)
            for i in range(n)]


def stored_files(archive: LocalArchive) -> list[Path]:
    return sorted(p for p in archive.files.files.rglob("*") if p.is_file())


def test_folder_import_is_idempotent(archive: LocalArchive, tmp_path: Path) -> None:
    good_files(tmp_path / "src")
    first = run_import(archive, [tmp_path / "src"], workers=2)
    assert (first.new, first.duplicate, first.rejected) == (5, 0, [])
    before = (archive.index.counts(), [p.read_bytes() for p in stored_files(archive)])
    second = run_import(archive, [tmp_path / "src"], workers=2)
    assert (second.new, second.duplicate, second.rejected) == (0, 5, [])
    assert (archive.index.counts(), [p.read_bytes() for p in stored_files(archive)]) == before


def test_zip_inside_a_folder(archive: LocalArchive, tmp_path: Path) -> None:
    files = good_files(tmp_path / "src", 3)
    (tmp_path / "drop").mkdir()
    with zipfile.ZipFile(tmp_path / "drop" / "x.zip", "w") as zf:
        for f in files:
            zf.write(f, f"deep/dir/{f.name}")
        zf.writestr("notes.txt", "hello")
    report = run_import(archive, [tmp_path / "drop"])
    assert report.new == 3
    assert [name.split("!")[1] for name, _ in report.rejected] == ["notes.txt"]
    assert archive.index.counts()["instances"] == 3


def test_bad_files_amid_good_ones_each_get_a_line(archive: LocalArchive, tmp_path: Path) -> None:
    src = tmp_path / "src"
    files = good_files(src, 4)
    (src / "readme.txt").write_text("not dicom")
    corrupt = src / "corrupt.dcm"
    corrupt.write_bytes(files[0].read_bytes()[:200])  # header cut short
    truncated = src / "truncated.dcm"
    truncated.write_bytes(files[1].read_bytes()[:-40])  # pixel data cut short
    ds = pydicom.dcmread(files[2])
    del ds.SOPInstanceUID
    ds.save_as(src / "no_sop.dcm")
    lines: list[str] = []
    report = run_import(archive, [src], workers=2, on_reject=lambda n, why: lines.append(f"{n}: {why}"))
    assert report.new == 4
    rejected = {Path(name).name: why for name, why in report.rejected}
    assert set(rejected) == {"readme.txt", "corrupt.dcm", "truncated.dcm", "no_sop.dcm"}
    assert "missing required SOPInstanceUID" in rejected["no_sop.dcm"]
    assert "truncated" in rejected["truncated.dcm"]
    assert rejected["readme.txt"].startswith("0xC000")
    assert len(lines) == 4
    assert archive.index.counts()["instances"] == 4
    assert list(archive.files.tmp.iterdir()) == []  # nothing half-written left behind


def test_conflicting_duplicate_is_rejected_and_original_kept(archive: LocalArchive, tmp_path: Path) -> None:
    original = make_file(tmp_path / "one.dcm", sop="same", StudyDescription="first")
    run_import(archive, [original])
    other = make_file(tmp_path / "two.dcm", sop="same", StudyDescription="second")
    report = run_import(archive, [other])
    assert report.new == 0 and report.rejected[0][1].startswith("0x0111")
    (stored,) = list(archive.instances(UidPath(instance=uid("sop", "same"))))
    assert stored.path.read_bytes() == original.read_bytes()


def test_overwrite_policy_replaces_and_removes_the_old_file(settings: Settings, tmp_path: Path) -> None:
    archive = open_local(settings.replace(duplicate_policy="overwrite"))
    run_import(archive, [make_file(tmp_path / "one.dcm", sop="same", StudyDescription="first")])
    second = make_file(tmp_path / "two.dcm", sop="same", StudyDescription="second")
    report = run_import(archive, [second])
    assert report.replaced == 1
    (stored,) = list(archive.instances(UidPath(instance=uid("sop", "same"))))
    assert stored.path.read_bytes() == second.read_bytes()
    assert stored_files(archive) == [stored.path]
    assert archive.index.counts()["instances"] == 1


def test_nbia_layout_of_the_synthetic_cohort(small_cohort, archive: LocalArchive) -> None:
    report = run_import(archive, [small_cohort.root], workers=2)
    assert report.new == small_cohort.instances and not report.rejected
    counts = archive.index.counts()
    assert (counts["patients"], counts["studies"], counts["series"]) == (
        small_cohort.patients, small_cohort.studies, small_cohort.series)
    # every stored file is byte-identical to its source
    sources = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID: p
               for p in small_cohort.root.rglob("*.dcm")}
    for inst in archive.instances(UidPath()):
        assert inst.path.read_bytes() == sources[inst.sop_uid].read_bytes()


class _CrashingIndex(Index):
    """Dies like a killed process right after the files are placed, before indexing."""

    def add(self, items) -> None:  # noqa: D102
        if items:
            os._exit(17)
        super().add(items)


def _crashing_import(data_dir: str, src: str) -> None:
    settings = Settings().replace(data_dir=Path(data_dir))
    archive = LocalArchive(settings.data_dir, settings.index_url, index=_CrashingIndex(settings.index_url))
    run_import(archive, [Path(src)], workers=1)


def test_crash_between_file_write_and_index_insert(settings: Settings, tmp_path: Path) -> None:
    good_files(tmp_path / "src", 3)
    child = multiprocessing.get_context("fork").Process(
        target=_crashing_import, args=(str(settings.data_dir), str(tmp_path / "src")))
    child.start()
    child.join(60)
    assert child.exitcode == 17
    archive = open_local(settings)
    # Files reached the store, but the index never points at anything missing ...
    assert len(stored_files(archive)) == 3
    assert archive.index.counts()["instances"] == 0
    assert archive.search(Query(Level.STUDY)).matches == []
    # ... and a re-import repairs it: the instances are indexed, no duplicate files.
    report = run_import(archive, [tmp_path / "src"])
    assert (report.new, report.rejected) == (3, [])
    assert len(stored_files(archive)) == 3
    for inst in archive.instances(UidPath()):
        assert inst.path.exists()


def test_cli_import_reports_counts(tmp_path: Path) -> None:
    good_files(tmp_path / "src", 2)
    (tmp_path / "src" / "junk.bin").write_bytes(b"\x00" * 300)
    env = {**os.environ, "GATEWAY_DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.run([sys.executable, "-m", "gateway", "import", str(tmp_path / "src")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "imported: 2 new, 0 duplicate, 0 replaced, 1 rejected" in proc.stdout
    assert "junk.bin" in proc.stderr and "not a readable DICOM" in proc.stderr


def test_a_synth_folder_imports_with_its_clinical_sheet_and_no_rejections(tmp_path: Path) -> None:
    """What a new user does with the demo folder: the workbook is recognised and imported as the
    clinical sheet (its csv exports say the same and are skipped), a download's sidecars are
    skipped and counted, nothing is 'rejected'."""
    from gateway.synth import write_cohort
    cohort = write_cohort(tmp_path / "cohort", patients=3, xr_size=128, ct_slices=8, workers=1)
    (tmp_path / "cohort" / "metadata.csv").write_text("Series UID,Collection\n1.2.3,COVID-19-AR\n")
    (tmp_path / "cohort" / "LICENSE").write_text("CC BY 4.0\n")
    (tmp_path / "cohort" / "COVID-19-AR.tcia").write_text("downloadServerUrl=...\n")
    env = {**os.environ, "GATEWAY_DATA_DIR": str(tmp_path / "data"), "GATEWAY_IMPORT_WORKERS": "1"}
    proc = subprocess.run([sys.executable, "-m", "gateway", "import", str(tmp_path / "cohort")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (f"imported: {cohort.instances} new, 0 duplicate, 0 replaced, 0 rejected, "
            "5 skipped (not DICOM)") in proc.stdout
    assert "rejected" not in proc.stderr
    assert ("clinical: 3 patient rows, " in proc.stdout
            and "from COVID_19_AR_ClinicalCorrelates.xlsx" in proc.stdout)
    assert proc.stdout.count("clinical: ") == 1  # the csv exports were not imported again
    from gateway.clinical.repository import Repository
    archive = open_local(Settings().replace(data_dir=tmp_path / "data"))
    patients = Repository(archive.index.engine).patients([p for p in _patient_ids(archive)])
    assert len(patients) == 3


def test_csv_exports_alone_are_the_clinical_sheet(tmp_path: Path, archive: LocalArchive) -> None:
    from gateway.synth import write_cohort
    write_cohort(tmp_path / "cohort", patients=2, xr_size=128, ct_slices=8, workers=1)
    (tmp_path / "cohort" / "COVID_19_AR_ClinicalCorrelates.xlsx").unlink()
    report = run_import(archive, [tmp_path / "cohort"])
    assert report.rejected == []
    assert sorted(p.name for p in report.sheets) == ["clinical.csv", "clinical_imaging.csv"]
    assert not any(Path(s).name.startswith("clinical") for s in report.skipped)


def _patient_ids(archive: LocalArchive) -> list[str]:
    found = archive.search(Query(Level.PATIENT))
    return [m["00100020"]["Value"][0] for m in found.matches]


def test_opening_the_archive_sweeps_only_stale_temp_files(tmp_path: Path) -> None:
    """A crash's `.part` leftovers go at start-up; a part younger than TEMP_MAX_AGE (an upload
    still running in another process) stays."""
    settings = Settings().replace(data_dir=tmp_path / "data", temp_max_age=600)
    tmp = open_local(settings).files.tmp
    stale, fresh, other = tmp / "crash.part", tmp / "upload.part", tmp / "notes.txt"
    for path in (stale, fresh, other):
        path.write_bytes(b"x" * 10)
    os.utime(stale, (1_000_000, 1_000_000))
    os.utime(other, (1_000_000, 1_000_000))
    open_local(settings)
    assert (stale.exists(), fresh.exists(), other.exists()) == (False, True, True)
