"""TCIA's own client library reads our ``.tcia`` manifest: ``tcia_utils.nbia.manifestToList``
(PyPI tcia-utils) gives back exactly the cohort's series, in order; the six header lines are
those the NBIA Data Retriever reads (DESIGN.md section 9)."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterator

import pytest
import requests
from tcia_utils import nbia

from tests.support.procs import GatewayServer, start_gateway


@pytest.fixture(scope="module")
def server(tmp_path_factory, loaded_data_dir: Path, artifacts_dir: Path) -> Iterator[GatewayServer]:
    data = tmp_path_factory.mktemp("tcia-utils") / "data"
    shutil.copytree(loaded_data_dir, data)
    gateway = start_gateway(data, artifacts_dir / "logs", workers=2)
    yield gateway
    gateway.stop()


@pytest.mark.parametrize("question", [{"qido": "studies"}, {"fhir": "ImagingStudy?modality=CT"},
                                      {"fhir": "Patient?gender=female"}])
def test_manifest_to_list_gives_the_cohorts_series(server, tmp_path, question):
    made = requests.post(f"{server.url}/cohorts", json=question, timeout=60)
    assert made.status_code == 201, made.text
    cohort = requests.get(made.headers["Location"], timeout=30).json()
    assert cohort["series"], "a cohort with series"
    response = requests.get(f"{server.url}/cohorts/{cohort['id']}/manifest?format=tcia",
                            timeout=30)
    assert response.status_code == 200
    assert response.headers["Content-Disposition"].endswith('.tcia"')
    path = tmp_path / "cohort.tcia"
    path.write_bytes(response.content)
    assert nbia.manifestToList(str(path)) == [s["uid"] for s in cohort["series"]]
    header = response.text.splitlines()[:6]
    assert header[0] == f"downloadServerUrl={server.url}/cohorts/{cohort['id']}/download"
    assert header[1:3] == ["includeAnnotation=true", "noOfrRetry=4"]
    assert header[3].startswith("databasketId=manifest-") and header[3].endswith(".tcia")
    assert header[4:] == ["manifestVersion=3.0", "ListOfSeriesToDownload="]
    again = requests.get(f"{server.url}/cohorts/{cohort['id']}/manifest?format=tcia", timeout=30)
    assert again.content == response.content  # a frozen cohort's manifest never changes
