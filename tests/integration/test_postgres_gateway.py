"""The whole gateway with its index on a real PostgreSQL: import, QIDO, WADO, FHIR, STOW,
and two gateway processes sharing one archive (what DATABASE_URL is for)."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import requests

from tests.support.procs import REPO, start_gateway

DICOM = 'multipart/related; type="application/dicom"; transfer-syntax=*'


def test_gateway_on_postgresql(postgres, small_cohort, tmp_path: Path, artifacts_dir: Path) -> None:
    url = postgres.create_database("gw" + uuid.uuid4().hex[:10])
    data = tmp_path / "data"
    env = {**os.environ, "GATEWAY_DATA_DIR": str(data), "GATEWAY_DATABASE_URL": url}
    imported = subprocess.run([sys.executable, "-m", "gateway", "import", str(small_cohort.root),
                               "--clinical", str(small_cohort.xlsx)], env=env, cwd=REPO,
                              capture_output=True, text=True, timeout=300)
    assert imported.returncode == 0, imported.stderr
    assert f"{small_cohort.instances} new" in imported.stdout
    assert not (data / "index.sqlite").exists()  # nothing went to SQLite
    one = start_gateway(data, artifacts_dir / "logs", workers=2, env={"GATEWAY_DATABASE_URL": url})
    two = start_gateway(data, artifacts_dir / "logs", workers=1, env={"GATEWAY_DATABASE_URL": url})
    try:
        assert requests.get(one.url + "/readyz", timeout=10).json()["status"] == "ready"
        studies = requests.get(one.url + "/dicomweb/studies", timeout=10).json()
        assert len(studies) == small_cohort.studies
        patients = requests.get(one.url + "/fhir/Patient", params={"_count": 0}, timeout=10).json()
        assert patients["total"] == small_cohort.patients
        # a STOW through one process is visible to the other at once
        first = sorted(small_cohort.root.rglob("*.dcm"))[0]
        body = (b"--b\r\nContent-Type: application/dicom\r\n\r\n" + first.read_bytes()
                + b"\r\n--b--\r\n")
        stored = requests.post(two.url + "/dicomweb/studies", data=body, timeout=30, headers={
            "Content-Type": 'multipart/related; type="application/dicom"; boundary=b'})
        assert stored.status_code == 200  # identical bytes: an idempotent success
        study = studies[0]["0020000D"]["Value"][0]
        a = requests.get(f"{one.url}/dicomweb/studies/{study}", headers={"Accept": DICOM}, timeout=30)
        b = requests.get(f"{two.url}/dicomweb/studies/{study}", headers={"Accept": DICOM}, timeout=30)
        assert a.status_code == b.status_code == 200
        assert len(a.content) == len(b.content) > 1000
    finally:
        one.stop()
        two.stop()
