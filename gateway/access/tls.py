"""TLS contexts for DICOM TLS (PS3.15 B.12, BCP 195: RFC 9325 and RFC 8996) and the syslog
client (RFC 5425). TLS 1.2 is the floor; 1.0/1.1 are refused (RFC 8996 1)."""
from __future__ import annotations

import ssl

# RFC 9325 4.2: AEAD ciphers with forward secrecy for TLS 1.2 (TLS 1.3 suites are fixed).
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:!aNULL:!eNULL:!MD5:!SHA1"


def server_context(cert: str, key: str, ca: str = "") -> ssl.SSLContext:
    """The DIMSE TLS listener's context; `ca` set = client certificates required (PS3.15 B.12)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.load_cert_chain(cert, key)
    if ca:
        ctx.load_verify_locations(cafile=ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def client_context(ca: str = "") -> ssl.SSLContext:
    """A client that verifies the server's certificate and name (RFC 5425 5.2)."""
    ctx = ssl.create_default_context(cafile=ca or None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx
