"""The DICOM TLS server context (PS3.15 B.12, BCP 195): TLS 1.2+ only, AEAD suites, client
certificates required and verified when DIMSE_TLS_CA is set. Real handshakes on loopback."""
from __future__ import annotations

import socket
import ssl
import threading
import warnings
from pathlib import Path

import pytest

from gateway.access.tls import server_context
from tests.support.tlscerts import CertAuthority, make_ca


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, CertAuthority]:
    root = tmp_path_factory.mktemp("pki")
    return root, make_ca(root)


def handshake(server: ssl.SSLContext, client: ssl.SSLContext) -> tuple[str | None, str | None]:
    """(client outcome, server outcome): the negotiated version, or the error text."""
    listener = socket.create_server(("127.0.0.1", 0))
    port, result = listener.getsockname()[1], {}

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with server.wrap_socket(conn, server_side=True) as tls:
                result["server"] = tls.version()
                tls.recv(1)
        except (ssl.SSLError, OSError) as exc:
            result["server"] = str(exc)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with (socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
              client.wrap_socket(raw, server_hostname="127.0.0.1") as tls):
            outcome = tls.version()
            tls.sendall(b"x")
    except (ssl.SSLError, OSError) as exc:
        outcome = str(exc)
    thread.join(5)
    listener.close()
    return outcome, result.get("server")


def client(ca: CertAuthority, *, version: ssl.TLSVersion | None = None,
           cert=None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(ca.cert))
    if version is not None:
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        ctx.minimum_version = ctx.maximum_version = version
    if cert is not None:
        ctx.load_cert_chain(str(cert.cert), str(cert.key))
    return ctx


def test_tls12_and_13_are_accepted(pki) -> None:
    root, ca = pki
    leaf = ca.issue(root, "dimse-server")
    server = server_context(str(leaf.cert), str(leaf.key))
    assert handshake(server, client(ca, version=ssl.TLSVersion.TLSv1_2)) == ("TLSv1.2", "TLSv1.2")
    assert handshake(server, client(ca)) == ("TLSv1.3", "TLSv1.3")


def test_tls11_is_refused_by_the_server(pki) -> None:
    root, ca = pki
    leaf = ca.issue(root, "dimse-server")
    server = server_context(str(leaf.cert), str(leaf.key))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for version in (ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1):
            outcome, server_side = handshake(server, client(ca, version=version))
            assert "alert protocol version" in outcome  # the server said no (RFC 8996)
            assert "unsupported protocol" in server_side


def test_client_certificates_when_a_ca_is_set(pki) -> None:
    root, ca = pki
    leaf = ca.issue(root, "dimse-server")
    server = server_context(str(leaf.cert), str(leaf.key), str(ca.cert))
    outcome, server_side = handshake(server, client(ca, version=ssl.TLSVersion.TLSv1_2))
    assert "certificate" in server_side.lower() and outcome != "TLSv1.2"
    good = ca.issue(root, "modality", client=True)
    assert handshake(server, client(ca, cert=good)) == ("TLSv1.3", "TLSv1.3")
    stranger_ca = make_ca(root / "stranger", "stranger CA")
    stranger = stranger_ca.issue(root / "stranger", "intruder", client=True)
    _, server_side = handshake(server, client(ca, version=ssl.TLSVersion.TLSv1_2, cert=stranger))
    assert "certificate verify failed" in server_side
