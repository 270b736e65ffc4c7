"""FHIR search results cached on every node of one PostgreSQL index, and dropped on every
node the moment one of them (or an import anywhere) changes the resources: the change
token is a counter row in the database (gateway/clinical/generation.py DbGeneration)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import requests

from gateway.archive.local import open_local
from gateway.clinical.generation import DbGeneration
from gateway.config import Settings
from gateway.ingest.clinical import import_clinical
from tests.support.clinical import read_rows, write_rows
from tests.support.procs import REPO, start_gateway


def _bmi(node, pid: str) -> dict:
    r = requests.get(f"{node.url}/fhir/Observation", params={"_id": f"{pid}-bmi"}, timeout=30)
    assert r.status_code == 200, r.text[:300]
    return r.json()


def test_fhir_results_follow_a_change_made_elsewhere(postgres, small_cohort, tmp_path,
                                                     artifacts_dir) -> None:
    db = postgres.create_database("fhirgen")
    data = tmp_path / "data"
    env = {**os.environ, "GATEWAY_DATA_DIR": str(data), "GATEWAY_DATABASE_URL": db}
    done = subprocess.run([sys.executable, "-m", "gateway", "import", str(small_cohort.root),
                           "--clinical", str(small_cohort.xlsx)], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    nodes = [start_gateway(data, artifacts_dir / "logs", workers=1,
                           env={"GATEWAY_DATABASE_URL": db}) for _ in range(2)]
    try:
        rows = read_rows(small_cohort.clinical_csv)
        pid = rows[0]["patient_id"]
        before = [_bmi(n, pid) for n in nodes for _ in range(2)]  # the second ones cached
        resources = [[e["resource"] for e in b["entry"]] for b in before]
        assert all(r == resources[0] for r in resources)  # (links name each node)
        version = before[0]["entry"][0]["resource"]["meta"]["versionId"]
        generation = DbGeneration(open_local(Settings().replace(
            data_dir=tmp_path / "writer", database_url=db), sweep=False).index.engine)
        token = generation.token()
        rows[0]["latest_bmi"] = "44.4"  # the change, from a third process (an import)
        writer = open_local(Settings().replace(data_dir=tmp_path / "writer", database_url=db),
                            sweep=False)
        import_clinical(writer, write_rows(rows, tmp_path / "clinical.csv"))
        writer.close()
        assert generation.token() != token  # one counter for every node
        for node in nodes:
            after = _bmi(node, pid)
            resource = after["entry"][0]["resource"]
            assert resource["valueQuantity"]["value"] == 44.4
            assert resource["meta"]["versionId"] == str(int(version) + 1)
    finally:
        for node in nodes:
            node.stop()
