"""The IDC bucket over HTTPS, as ``s3.amazonaws.com`` is reached: nginx terminates TLS with a
certificate of a throwaway CA in front of SeaweedFS. With the CA in ``AWS_CA_BUNDLE`` (as
botocore reads it) a cold series is listed, fetched and served, signed requests verified by
the store through the proxy; without it, the bucket's certificate is refused (503 naming the
verification failure) and nothing is cached."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterator

import pytest
import requests

from tests.support.idc import IdcSeries, idc_settings, scan, serve, synth_twin, upload, write_index
from tests.support.procs import Proc, free_port, wait_until
from tests.support.seaweed import Seaweed
from tests.support.tlscerts import CertAuthority, make_ca

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
JSON = {"Accept": "application/dicom+json"}
CONF = """
worker_processes 1;
error_log @ROOT@/error.log;
pid @ROOT@/nginx.pid;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path @ROOT@/body;
    proxy_temp_path @ROOT@/proxy;
    server {
        listen 127.0.0.1:@PORT@ ssl;
        ssl_certificate @CERT@;
        ssl_certificate_key @KEY@;
        location / {
            proxy_pass http://127.0.0.1:@UPSTREAM@;
            proxy_set_header Host $http_host;  # the host the client signed (SigV4)
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }
    }
}
"""


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertAuthority:
    return make_ca(tmp_path_factory.mktemp("idc-https-ca"))


@pytest.fixture(scope="module")
def tls_endpoint(s3_store: Seaweed, ca: CertAuthority, tmp_path_factory: pytest.TempPathFactory,
                 artifacts_dir: Path) -> Iterator[str]:
    root = tmp_path_factory.mktemp("idc-https-nginx")
    leaf = ca.issue(root, "s3-endpoint")
    port = free_port()
    conf = CONF
    for key, value in {"@ROOT@": str(root), "@PORT@": str(port), "@CERT@": str(leaf.cert),
                       "@KEY@": str(leaf.key),
                       "@UPSTREAM@": str(s3_store.ports["s3.port"])}.items():
        conf = conf.replace(key, value)
    (root / "nginx.conf").write_text(conf)
    directives = "daemon off; master_process on;" + (" user root;" if os.geteuid() == 0 else "")
    proc = Proc([NGINX, "-c", str(root / "nginx.conf"), "-p", str(root), "-g", directives],
                artifacts_dir / "logs" / f"nginx-idc-https-{port}.log").start()
    url = f"https://127.0.0.1:{port}"
    try:
        wait_until(lambda: requests.get(url, verify=str(ca.cert), timeout=2).status_code < 500,
                   timeout=30, what="nginx TLS", proc=proc)
        yield url
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def twin(tmp_path_factory: pytest.TempPathFactory) -> dict[str, IdcSeries]:
    return scan(synth_twin(tmp_path_factory.mktemp("https-twin"), "COVID-19-AR", patients=1),
                "COVID-19-AR")


def _series_url(base: str, s: IdcSeries) -> str:
    return (f"{base}/dicomweb/studies/{s.row['StudyInstanceUID']}/series/"
            f"{s.row['SeriesInstanceUID']}")


def test_a_bucket_over_https_is_read_with_the_ca_bundle_and_refused_without(
        s3_store: Seaweed, tls_endpoint: str, ca: CertAuthority, twin: dict[str, IdcSeries],
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = s3_store.create_bucket("idc-https")
    upload(s3_store, bucket, list(twin.values()))
    index = write_index(list(twin.values()), tmp_path / "index.parquet")
    s = max(twin.values(), key=lambda t: len(t.objects))

    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    untrusted = serve(idc_settings(s3_store, tmp_path / "untrusted", bucket, index,
                                   idc_endpoint_url=tls_endpoint, idc_timeout=3.0))
    live = next(untrusted)
    try:
        r = requests.get(_series_url(live.url, s) + "/metadata", headers=JSON, timeout=30)
        assert r.status_code == 503, r.text[:300]
        assert "SSLCertVerificationError" in r.text
        archive = live.app.extensions["tcia_gateway"]["archive"]
        assert s.row["SeriesInstanceUID"] not in archive._fetched
    finally:
        next(untrusted, None)

    monkeypatch.setenv("AWS_CA_BUNDLE", str(ca.cert))
    trusted = serve(idc_settings(s3_store, tmp_path / "trusted", bucket, index,
                                 idc_endpoint_url=tls_endpoint, idc_timeout=3.0))
    live = next(trusted)
    try:
        r = requests.get(_series_url(live.url, s) + "/metadata", headers=JSON, timeout=30)
        assert r.status_code == 200, r.text[:300]
        assert len(r.json()) == len(s.objects)
        archive = live.app.extensions["tcia_gateway"]["archive"]
        assert archive.bucket.calls["GetObject"] == len(s.objects)
        sop = r.json()[0]["00080018"]["Value"][0]
        one = requests.get(f"{_series_url(live.url, s)}/instances/{sop}", timeout=30,
                           headers={"Accept": 'multipart/related; type="application/dicom"; '
                                              'transfer-syntax=*'})
        assert one.status_code == 200
        stored = {p.read_bytes() for p in s.objects.values()}
        assert any(body in one.content for body in stored)  # bytes as in the bucket
    finally:
        next(trusted, None)
