"""Browser fixtures: Debian's Chromium driven by Playwright (never a downloaded browser),
the real OHIF build installed once per session, the gateway under gunicorn on a small
synthetic cohort with a 100-slice CT and compressed radiographs.

Missing Chromium, Playwright, npm or network: the tests skip locally with the reason,
and FAIL when ``CI`` is set (CI never skips them)."""
from __future__ import annotations

import os
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from gateway.config import Settings
from tests.support.procs import GatewayServer, start_gateway

CHROMIUM = Path("/usr/bin/chromium")
# DESIGN.md §7 (``--headless`` itself comes from headless=True). Without the background
# flags Chromium floods the closed network with refused connections.
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1920, "height": 1080}   # narrower hides OHIF's MRN column ("unfit")
E2E_COHORT = dict(patients=6, seed=7, ct_slices=100, xr_size=512, ct_fraction=0.2)


def need(condition: bool, reason: str) -> None:
    """Skip locally, fail in CI: the browser test must never silently vanish there."""
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: browser tests never skip)", pytrace=False)
    pytest.skip(reason)


@dataclass(frozen=True)
class Study:
    patient_id: str
    study_uid: str
    accession: str
    modality: str
    syntax: str
    photometric: str
    description: str
    instances: int


@pytest.fixture(scope="session")
def ohif_tarball(artifacts_dir: Path) -> Path:
    """The pinned @ohif/app tarball, fetched with npm once and kept in test-artifacts/ohif-cache."""
    from gateway.viewer import install as inst
    cache = artifacts_dir / "ohif-cache"
    cache.mkdir(parents=True, exist_ok=True)
    cached = cache / f"ohif-app-{inst.DEFAULT_VERSION}.tgz"
    if cached.is_file():
        try:
            inst.check_integrity(cached, inst.DEFAULT_VERSION)
            return cached
        except inst.InstallError:
            cached.unlink()
    try:
        return inst.fetch_tarball(inst.DEFAULT_VERSION, cache)
    except inst.InstallError as exc:
        need(False, f"cannot fetch {inst.PACKAGE}@{inst.DEFAULT_VERSION}: {exc}")
        raise


@pytest.fixture(scope="session")
def e2e_cohort(tmp_path_factory: pytest.TempPathFactory):
    from gateway.synth import write_cohort
    return write_cohort(tmp_path_factory.mktemp("e2e-cohort"), **E2E_COHORT)


@pytest.fixture(scope="session")
def e2e_studies(e2e_cohort) -> list[Study]:
    """What the cohort holds, read from its files (independent of the gateway)."""
    import pydicom
    found: dict[str, dict] = defaultdict(lambda: {"instances": 0})
    for path in sorted(Path(e2e_cohort.root).rglob("*.dcm")):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        row = found[ds.StudyInstanceUID]
        row["instances"] += 1
        row.update(patient_id=ds.PatientID, study_uid=ds.StudyInstanceUID,
                   accession=ds.AccessionNumber, modality=ds.Modality,
                   syntax=str(ds.file_meta.TransferSyntaxUID),
                   photometric=ds.PhotometricInterpretation,
                   description=ds.get("StudyDescription", ""))
    return [Study(**row) for row in found.values()]


@pytest.fixture(scope="session")
def e2e_data_dir(tmp_path_factory, e2e_cohort, ohif_tarball: Path) -> Path:
    """Cohort imported (images + clinical sheet) and the real viewer installed."""
    from gateway.archive.local import open_local
    from gateway.ingest.importer import run_import
    from gateway.ingest.clinical import import_clinical
    from gateway.viewer.install import install
    data = tmp_path_factory.mktemp("e2e-data")
    settings = Settings().replace(data_dir=data)
    archive = open_local(settings)
    report = run_import(archive, [e2e_cohort.root], workers=2, progress=False)
    assert report.new == e2e_cohort.instances and not report.rejected
    import_clinical(archive, e2e_cohort.xlsx)
    install(settings, tarball=ohif_tarball)
    return data


@pytest.fixture(scope="session")
def viewer_gateway(e2e_data_dir: Path, artifacts_dir: Path) -> Iterator[GatewayServer]:
    server = start_gateway(e2e_data_dir, artifacts_dir / "logs")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def browser_context(tmp_path_factory):
    """One headless Debian Chromium with a fresh profile for the session."""
    need(CHROMIUM.exists(), f"{CHROMIUM} not found (Debian package `chromium`)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        need(False, "Playwright for Python is not installed (requirements.txt)")
        raise
    profile = tempfile.mkdtemp(prefix="chromium-profile-", dir=tmp_path_factory.getbasetemp())
    with sync_playwright() as pw:
        # user_data_dir is Playwright's spelling of --user-data-dir (a flag it forbids in args).
        context = pw.chromium.launch_persistent_context(
            profile, executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS,
            viewport=VIEWPORT)
        yield context
        context.close()


@pytest.fixture(scope="session")
def shots(artifacts_dir: Path) -> Path:
    path = artifacts_dir / "e2e"
    path.mkdir(parents=True, exist_ok=True)
    return path
