"""A cohort's hand-offs as files: the ``metadata.csv`` and JSON manifests and the ZIP download
(NBIA layout, stored entries, Content-Length, ETag, Range), against gunicorn (2 workers) on a
copy of the 6-patient archive. The ZIP is checked with ``zipfile`` (testzip), byte for byte
against an interrupted-and-resumed download (sha256), and by importing it into an empty archive
with ``tcia-gateway import``: every instance comes back with identical bytes."""
from __future__ import annotations

import csv
import hashlib
import io
import os
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Iterator

import pytest
import requests

from gateway.synth.layout import METADATA_COLUMNS
from tests.support.procs import REPO, GatewayServer, start_gateway

pytestmark = pytest.mark.timeout(600)
FOLDER = re.compile(r"^cohort-[0-9a-f-]{36}/COVID-19-AR/COVID-19-AR-\d+/\d\d-\d\d-\d{4}-[^/]+-"
                    r"[0-9.]{1,5}/(\d+\.000000|NA)-[^/]+-[0-9.]{1,5}/1-\d{3}\.dcm$")


@pytest.fixture(scope="module")
def data(tmp_path_factory, loaded_data_dir: Path) -> Path:
    target = tmp_path_factory.mktemp("cohort-data") / "data"
    shutil.copytree(loaded_data_dir, target)
    return target


@pytest.fixture(scope="module")
def server(data: Path, artifacts_dir: Path) -> Iterator[GatewayServer]:
    gateway = start_gateway(data, artifacts_dir / "logs", workers=2)
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def everything(server) -> dict:
    """A cohort of every study (radiographs, the CT, compressed syntaxes)."""
    response = requests.post(f"{server.url}/cohorts", json={"qido": "studies"}, timeout=60)
    assert response.status_code == 201, response.text
    return requests.get(response.headers["Location"], timeout=30).json()


def indexed(data: Path) -> dict[str, tuple[str, int]]:
    """SOP Instance UID → (sha256, size) of every instance in a data dir's index."""
    with sqlite3.connect(data / "index.sqlite") as db:
        return {r[0]: (r[1], r[2]) for r in db.execute(
            "SELECT sop_uid, sha256, size FROM instances")}


def download(server, cohort: dict, **headers: str) -> requests.Response:
    return requests.get(f"{server.url}/cohorts/{cohort['id']}/download", headers=headers,
                        timeout=120)


def test_metadata_csv_lists_every_series_in_the_retrievers_columns(server, everything, data):
    response = requests.get(f"{server.url}/cohorts/{everything['id']}/manifest?format=csv",
                            timeout=30)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/csv")
    assert response.content.count(b"\r\n") == len(everything["series"]) + 1  # CRLF rows
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert tuple(rows[0]) == METADATA_COLUMNS and len(METADATA_COLUMNS) == 17
    assert [r["Series UID"] for r in rows] == [s["uid"] for s in everything["series"]]
    assert {r["Collection"] for r in rows} == {"COVID-19-AR"}
    assert all(r["Data Description URI"] == "https://doi.org/10.7937/tcia.2020.py71-5978"
               for r in rows)
    assert [int(r["Number of Images"]) for r in rows] == [s["instances"]
                                                          for s in everything["series"]]


def test_json_manifest_has_sizes_that_add_up_to_the_index(server, everything, data):
    body = requests.get(f"{server.url}/cohorts/{everything['id']}/manifest?format=json",
                        timeout=30).json()
    assert sum(s["FileSize"] for s in body["series"]) == sum(s for _, s in indexed(data).values())
    assert body["etag"] == download(server, everything).headers["ETag"]
    bad = requests.get(f"{server.url}/cohorts/{everything['id']}/manifest?format=xml", timeout=30)
    assert bad.status_code == 400 and bad.json()["field"] == "format"


def test_zip_is_stored_in_the_nbia_layout_with_licence_and_citation(server, everything, data):
    response = download(server, everything)
    assert response.status_code == 200 and response.headers["Content-Type"] == "application/zip"
    assert int(response.headers["Content-Length"]) == len(response.content)
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert archive.testzip() is None
    infos = archive.infolist()
    top = f"cohort-{everything['id']}/"
    assert [i.filename for i in infos[:3]] == [top + "metadata.csv", top + "CITATION",
                                               top + "COVID-19-AR/LICENSE"]
    assert all(i.compress_type == zipfile.ZIP_STORED for i in infos)
    dicoms = [i for i in infos if i.filename.endswith(".dcm")]
    assert all(FOLDER.match(i.filename) for i in dicoms), dicoms[0].filename
    assert len(dicoms) == everything["counts"]["instances"] == len(indexed(data))
    stored = {sha for sha, _ in indexed(data).values()}
    assert {hashlib.sha256(archive.read(i)).hexdigest() for i in dicoms} == stored
    citation = archive.read(top + "CITATION").decode()
    assert "https://doi.org/10.7937/tcia.2020.py71-5978" in citation
    assert "Creative Commons Attribution 4.0" in archive.read(top + "COVID-19-AR/LICENSE").decode()
    listed = requests.get(f"{server.url}/cohorts/{everything['id']}/manifest?format=csv",
                          timeout=30).content
    assert archive.read(top + "metadata.csv") == listed


def test_head_and_etag_are_known_before_any_byte_and_stable(server, everything):
    head = requests.head(f"{server.url}/cohorts/{everything['id']}/download", timeout=30)
    full = download(server, everything)
    assert head.status_code == 200 and head.headers["Content-Length"] == str(len(full.content))
    etags = {download(server, everything, Range="bytes=0-0").headers["ETag"] for _ in range(4)}
    assert etags == {full.headers["ETag"]} and head.headers["Accept-Ranges"] == "bytes"


def _cut(server, cohort: dict, at: int, start: int, etag: str) -> bytes:
    """Read from ``start`` and drop the connection after ``at - start`` bytes."""
    headers = {"Range": f"bytes={start}-", "If-Range": etag} if start else {}
    with requests.get(f"{server.url}/cohorts/{cohort['id']}/download", headers=headers,
                      stream=True, timeout=120) as response:
        assert response.status_code == (206 if start else 200)
        got = b""
        for chunk in response.iter_content(65536):
            got += chunk
            if len(got) >= at - start:
                break
    return got[: at - start]


def test_download_cut_at_random_bytes_and_resumed_is_the_same_zip(server, everything):
    full = download(server, everything)
    length, etag = len(full.content), full.headers["ETag"]
    rng = random.Random(15)
    cuts = sorted(rng.sample(range(1, length), 3))
    parts, start = [], 0
    for at in cuts:  # three interruptions, each resumed with Range from where it stopped
        parts.append(_cut(server, everything, at, start, etag))
        start = at
    tail = download(server, everything, Range=f"bytes={start}-", **{"If-Range": etag})
    assert tail.status_code == 206
    assert tail.headers["Content-Range"] == f"bytes {start}-{length - 1}/{length}"
    resumed = b"".join(parts) + tail.content
    assert hashlib.sha256(resumed).hexdigest() == hashlib.sha256(full.content).hexdigest()
    assert zipfile.ZipFile(io.BytesIO(resumed)).testzip() is None


def test_ranges_inside_the_central_directory_and_past_the_end(server, everything):
    full = download(server, everything).content
    for first, last in [(len(full) - 100, len(full) - 1), (0, 29), (1000, 200_000)]:
        part = download(server, everything, Range=f"bytes={first}-{last}")
        assert part.status_code == 206 and part.content == full[first: last + 1]
    suffix = download(server, everything, Range="bytes=-22")  # the end of central directory
    assert suffix.content == full[-22:] and suffix.content[:4] == b"PK\x05\x06"
    past = download(server, everything, Range=f"bytes={len(full)}-")
    assert past.status_code == 416 and past.headers["Content-Range"] == f"bytes */{len(full)}"
    stale = download(server, everything, Range="bytes=10-", **{"If-Range": '"other"'})
    assert stale.status_code == 200 and stale.content == full


def test_download_imports_back_into_an_empty_archive_with_identical_bytes(
        server, everything, data, tmp_path):
    target = tmp_path / "cohort.zip"
    target.write_bytes(download(server, everything).content)
    empty = tmp_path / "empty"
    done = subprocess.run([sys.executable, "-m", "gateway", "import", str(target)], cwd=REPO,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "GATEWAY_DATA_DIR": str(empty)})
    assert done.returncode == 0, done.stderr
    assert f"{everything['counts']['instances']} new" in done.stdout
    assert "0 rejected" in done.stdout and "3 skipped" in done.stdout  # csv, CITATION, LICENSE
    assert indexed(empty) == indexed(data)
    for path in (empty / "files").rglob("*.dcm"):
        assert hashlib.sha256(path.read_bytes()).hexdigest() in {s for s, _ in
                                                                 indexed(data).values()}
