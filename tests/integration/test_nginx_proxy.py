"""deploy/nginx.conf for real: nginx in front of gunicorn with TRUST_PROXY, at the root
and under a path prefix. Links follow the proxy, large bodies stream both ways."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterator

import pytest
import requests

from tests.support.procs import REPO, GatewayServer, Proc, free_port, start_gateway, wait_until

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


@pytest.fixture(scope="module")
def trusting(loaded_data_dir: Path, artifacts_dir: Path) -> Iterator[GatewayServer]:
    server = start_gateway(loaded_data_dir, artifacts_dir / "logs", workers=1,
                           env={"GATEWAY_TRUST_PROXY": "true"})
    yield server
    server.stop()


def start_nginx(root: Path, upstream: GatewayServer, prefix: str, log_dir: Path) -> tuple[Proc, str]:
    if not Path(NGINX).exists():
        pytest.fail("nginx missing: apt-get install nginx-light (CI installs it)")
    port = free_port()
    conf = (REPO / "deploy" / "nginx.conf").read_text()
    for key, value in {"@PREFIX@": str(root), "@UPSTREAM@": f"127.0.0.1:{upstream.port}",
                       "@LISTEN@": f"127.0.0.1:{port}", "@PATH_PREFIX@": prefix}.items():
        conf = conf.replace(key, value)
    (root / "nginx.conf").write_text(conf)
    directives = "daemon off; master_process on;" + (" user root;" if os.geteuid() == 0 else "")
    proc = Proc([NGINX, "-c", str(root / "nginx.conf"), "-p", str(root), "-g", directives],
                log_dir / f"nginx-{port}.log").start()
    base = f"http://127.0.0.1:{port}{prefix}"
    wait_until(lambda: requests.get(base + "/healthz", timeout=2).status_code == 200,
               timeout=30, what="nginx", proc=proc)
    return proc, base


@pytest.mark.parametrize("prefix", ["", "/imaging"])
def test_links_and_bodies_through_nginx(prefix: str, trusting: GatewayServer, tmp_path: Path,
                                        artifacts_dir: Path, small_cohort) -> None:
    proc, base = start_nginx(tmp_path, trusting, prefix, artifacts_dir / "logs")
    try:
        studies = requests.get(base + "/dicomweb/studies", timeout=10).json()
        assert studies and all(s["00081190"]["Value"][0].startswith(base + "/dicomweb/studies/")
                               for s in studies)
        bundle = requests.get(base + "/fhir/Patient", params={"_count": 2}, timeout=10).json()
        assert all(link["url"].startswith(base + "/fhir") for link in bundle["link"])
        imaging = requests.get(base + "/fhir/ImagingStudy", timeout=10, params={
            "_include": "ImagingStudy:endpoint", "_count": 1}).json()
        kinds = {e["resource"]["resourceType"]: e["resource"] for e in imaging["entry"]}
        assert kinds["Endpoint"]["address"] == base + "/dicomweb"
        assert kinds["ImagingStudy"]["extension"][0]["valueUrl"].startswith(base + "/viewer/")
        study = studies[0]["0020000D"]["Value"][0]
        direct = requests.get(f"{trusting.url}/dicomweb/studies/{study}", timeout=30, headers={
            "Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'})
        proxied = requests.get(f"{base}/dicomweb/studies/{study}", timeout=30, headers={
            "Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'})
        assert proxied.status_code == 200 and len(proxied.content) == len(direct.content) > 10_000
    finally:
        proc.stop()


def test_stow_streams_through_nginx_chunked(trusting: GatewayServer, tmp_path: Path,
                                            artifacts_dir: Path, data_copy: Path,
                                            small_cohort) -> None:
    """A chunked upload of more than 1 MB passes nginx unbuffered and is stored."""
    writer = start_gateway(data_copy, artifacts_dir / "logs", workers=1,
                           env={"GATEWAY_TRUST_PROXY": "true"})
    proc, base = start_nginx(tmp_path, writer, "", artifacts_dir / "logs")
    try:
        files = sorted(small_cohort.root.rglob("*.dcm"))
        boundary = "nginx-test"

        def body() -> Iterator[bytes]:
            for f in files:
                yield f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
                yield f.read_bytes() + b"\r\n"
            yield f"--{boundary}--\r\n".encode()

        assert sum(f.stat().st_size for f in files) > 1_000_000
        r = requests.post(base + "/dicomweb/studies", data=body(), timeout=60, headers={
            "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'})
        assert r.status_code == 200, r.text
        refs = r.json()["00081199"]["Value"]
        assert len(refs) == len(files)
        assert all(ref["00081190"]["Value"][0].startswith(base + "/dicomweb/") for ref in refs)
    finally:
        proc.stop()
        writer.stop()


def test_qido_with_a_long_uid_list_passes_nginx(trusting: GatewayServer, tmp_path: Path,
                                                artifacts_dir: Path) -> None:
    """OHIF and dicomweb-client put UID lists in QIDO URLs: nginx's default 8k header
    buffers answered 414 for a 16 KiB request line the gateway itself serves."""
    proc, base = start_nginx(tmp_path, trusting, "", artifacts_dir / "logs")
    try:
        known = [s["0020000D"]["Value"][0]
                 for s in requests.get(base + "/dicomweb/studies", timeout=10).json()][:2]
        uids = [f"1.2.826.0.1.3680043.8.498.{10**30 + k}" for k in range(300)] + known
        assert len(",".join(uids)) > 16 * 1024
        found = requests.get(base + "/dicomweb/studies", timeout=10,
                             params={"StudyInstanceUID": ",".join(uids)})
        assert found.status_code == 200, found.text[:300]
        assert sorted(s["0020000D"]["Value"][0] for s in found.json()) == sorted(known)
    finally:
        proc.stop()
