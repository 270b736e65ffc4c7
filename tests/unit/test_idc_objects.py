"""The IDC backend's plain S3 calls: URLs as S3 encodes keys, SigV4 as botocore signs,
ListObjectsV2 pages read from literal XML, S3 error bodies read into botocore's error shape
(so the bucket translates every failure in one place), a silent store failed in time."""
from __future__ import annotations

import io
import socket
import threading
import time

import pytest

from gateway.archive.errors import Unavailable, UpstreamError
from gateway.backends.idc.bucket import Bucket, BucketObject
from gateway.backends.idc.objects import (ObjectGetter, S3Error, default_endpoint, error_code,
                                          parse_list_page)
from gateway.backends.idc.sigv4 import Signer, canonical_query

NO_SUCH_KEY = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchKey</Code>'
               b'<Message>The specified key does not exist.</Message>'
               b'<Key>a/b.dcm</Key><RequestId>4442587FB7D0A2F9</RequestId></Error>')


def test_error_code_reads_code_and_message_of_an_s3_error_body() -> None:
    assert error_code(NO_SUCH_KEY) == ("NoSuchKey", "The specified key does not exist.")
    assert error_code(b"") == ("", "")
    assert error_code(b"<html>bad gateway</html>") == ("", "")


def test_object_urls_are_path_style_with_the_key_encoded_once() -> None:
    getter = ObjectGetter("https://s3.amazonaws.com", "idc-open-data", region="us-east-1",
                          credentials=None, timeout=1, pool_size=1)
    assert getter.url("a b/c+d~e.dcm") == "https://s3.amazonaws.com/idc-open-data/a%20b/c%2Bd~e.dcm"
    assert getter._headers("/idc-open-data/k") == {}  # the public bucket: unsigned
    assert getter.host == "s3.amazonaws.com"
    signed = ObjectGetter("http://127.0.0.1:8333", "b", region="us-east-1",
                          credentials=("AKID", "secret"), timeout=1, pool_size=1)
    headers = signed._headers("/b/k")
    assert headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKID/")
    assert headers["Host"] == "127.0.0.1:8333"  # the host signed is the host sent
    assert default_endpoint("") == default_endpoint("us-east-1") == "https://s3.amazonaws.com"
    assert default_endpoint("eu-west-1") == "https://s3.eu-west-1.amazonaws.com"


@pytest.mark.parametrize("path,query", [
    ("/idc-open-data/0a1b/c%2Bd.dcm", ""),
    ("/idc-open-data", canonical_query({"list-type": "2", "prefix": "0a1b c/",
                                        "max-keys": "1000", "continuation-token": "x/y=="}))])
def test_sigv4_signs_as_botocore_does(path: str, query: str) -> None:
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    import calendar
    url = f"http://127.0.0.1:8333{path}" + (f"?{query}" if query else "")
    request = AWSRequest("GET", url)
    S3SigV4Auth(Credentials("AKID", "wJalrXUtnFEMI/K7MDENG"), "s3", "eu-west-1").add_auth(request)
    stamp = request.headers["X-Amz-Date"]  # botocore signs "now": ours signs the same instant
    now = calendar.timegm(time.strptime(stamp, "%Y%m%dT%H%M%SZ"))
    ours = Signer("AKID", "wJalrXUtnFEMI/K7MDENG", "eu-west-1").headers(
        "127.0.0.1:8333", path, query, now=now)
    assert ours["x-amz-date"] == stamp
    assert ours["Authorization"] == request.headers["Authorization"]


def test_a_list_page_is_read_from_s3_xml() -> None:
    body = (b'<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="http://s3.amazonaws'
            b'.com/doc/2006-03-01/"><Name>idc-open-data</Name><Prefix>s1/</Prefix><KeyCount>2'
            b'</KeyCount><MaxKeys>2</MaxKeys><IsTruncated>true</IsTruncated><Contents><Key>s1/a'
            b'.dcm</Key><LastModified>2024-01-01T00:00:00.000Z</LastModified><Size>528390</Size>'
            b'</Contents><Contents><Key>s1/b.dcm</Key><Size>17</Size></Contents>'
            b'<NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM='
            b'</NextContinuationToken></ListBucketResult>')
    page = parse_list_page(body)
    assert page.objects == [("s1/a.dcm", 528390), ("s1/b.dcm", 17)]
    assert page.next_token == "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM="
    last = parse_list_page(body.replace(b"<IsTruncated>true", b"<IsTruncated>false"))
    assert last.next_token is None


def test_a_store_that_never_answers_is_503_within_the_timeout() -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts connections, never answers
    bucket = Bucket("s3://b", endpoint=f"http://127.0.0.1:{silent.getsockname()[1]}",
                    timeout=0.5, workers=1)
    try:
        t0 = time.monotonic()
        with pytest.raises(Unavailable, match="did not answer object s1/a.dcm within "
                                              "IDC_TIMEOUT=0.5s"):
            bucket.read_into(BucketObject("s1/a.dcm", 10), lambda copy: copy(io.BytesIO()))
        assert time.monotonic() - t0 < 0.5 + 0.3  # the deadline, not two tries of it
        assert bucket.calls["GetObject"] == 1
    finally:
        bucket.close()
        silent.close()


def test_a_body_that_stalls_half_way_is_503_at_the_deadline() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def serve() -> None:
        conn, _ = server.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 1000)
        time.sleep(2)  # the rest never comes in time
        conn.close()
    threading.Thread(target=serve, daemon=True).start()
    bucket = Bucket("s3://b", endpoint=f"http://127.0.0.1:{server.getsockname()[1]}",
                    timeout=0.5, workers=1)
    received = bytearray()

    class Sink:
        def write(self, data: bytes) -> None:
            received.extend(data)
    try:
        t0 = time.monotonic()
        with pytest.raises(Unavailable):
            bucket.read_into(BucketObject("s1/a.dcm", 10), lambda copy: copy(Sink()))
        assert time.monotonic() - t0 < 0.5 + 0.3
    finally:
        bucket.close()
        server.close()


def test_an_s3_error_is_translated_as_botocore_errors_are() -> None:
    bucket = Bucket("s3://idc-open-data", timeout=1, workers=1)
    try:
        missing = bucket._translate("object k", S3Error(404, "NoSuchKey", "gone"))
        assert isinstance(missing, UpstreamError) and "missing (NoSuchKey)" in str(missing)
        refused = bucket._translate("object k", S3Error(403, "AccessDenied"))
        assert isinstance(refused, UpstreamError) and "refused object k: AccessDenied" in str(refused)
        down = bucket._translate("object k", S3Error(503, "SlowDown"))
        assert type(down).__name__ == "Unavailable" and "SlowDown" in str(down)
    finally:
        bucket.close()


class RawServer:
    """A loopback HTTP/1.1 server on raw sockets that records each connection's request
    heads and answers ``body`` with keep-alive; ``close_after`` closes a connection after
    that many responses (an idle connection the server dropped)."""

    def __init__(self, body: bytes, close_after: int = 0) -> None:
        self.body, self.close_after = body, close_after
        self.connections: list[list[bytes]] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            heads: list[bytes] = []
            self.connections.append(heads)
            threading.Thread(target=self._serve, args=(conn, heads), daemon=True).start()

    def _serve(self, conn: socket.socket, heads: list[bytes]) -> None:
        data = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                head, data = data.split(b"\r\n\r\n", 1)
                heads.append(head)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s"
                             % (len(self.body), self.body))
                if self.close_after and len(heads) >= self.close_after:
                    return

    def close(self) -> None:
        self.sock.close()


def _get(bucket: Bucket, key: str) -> bytes:
    out = io.BytesIO()
    bucket.read_into(BucketObject(key, 0), lambda copy: copy(out))
    return out.getvalue()


def test_a_kept_connection_is_reused_and_one_the_server_closed_is_tried_again() -> None:
    server = RawServer(b"DICM" * 1000, close_after=2)
    bucket = Bucket("s3://b", endpoint=f"http://127.0.0.1:{server.port}", timeout=2, workers=1)
    try:
        assert [_get(bucket, f"s/{i}.dcm") for i in range(2)] == [b"DICM" * 1000] * 2
        assert len(server.connections) == 1  # the second GET reused the first's connection
        assert _get(bucket, "s/2.dcm") == b"DICM" * 1000  # that connection was closed since
        assert len(server.connections) == 2
        assert bucket.calls["GetObject"] == 3 and bucket.requests["GetObject"] == 4
    finally:
        bucket.close()
        server.close()


def test_plain_http_through_a_proxy_sends_the_absolute_url_and_its_credentials(
        monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = RawServer(b"<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>")
    monkeypatch.setenv("HTTP_PROXY", f"http://ann:s%40cret@127.0.0.1:{proxy.port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    bucket = Bucket("s3://idc-open-data", endpoint="http://s3.example:9000", timeout=2,
                    workers=1)
    try:
        assert bucket.series_objects("f1") == []
        head = proxy.connections[0][0].decode()
        assert head.startswith("GET http://s3.example:9000/idc-open-data?"
                               "list-type=2&max-keys=1000&prefix=f1%2F HTTP/1.1")
        assert "Proxy-Authorization: Basic YW5uOnNAY3JldA==" in head  # ann:s@cret
    finally:
        bucket.close()
        proxy.close()
