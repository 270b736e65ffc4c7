"""rsyslog receives RFC 5424 messages over TCP (RFC 6587 octet counting) and TLS (RFC 5425).

Proves the receiver the audit trail will be sent to: messages arrive whole and parsed (PRI,
APP-NAME, MSGID, STRUCTURED-DATA, a multi-line XML MSG), also from an independent sender
(util-linux `logger`); over TLS only a client that trusts the test CA and checks the
server name gets through.
"""
from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.support.syslog import Rsyslog, rfc5424
from tests.support.tlscerts import make_ca

XML = ('<?xml version="1.0" encoding="UTF-8"?>\n<AuditMessage>\n'
       '  <EventIdentification EventActionCode="E" EventOutcomeIndicator="0">\n'
       '    <EventID csd-code="110112" codeSystemName="DCM" originalText="Query"/>\n'
       '  </EventIdentification>\n</AuditMessage>')


def tag() -> str:
    return uuid.uuid4().hex


def test_octet_counted_frames_over_tcp(syslog_receiver: Rsyslog) -> None:
    t = tag()
    first = rfc5424(f"{t} one", msgid="AUDIT", sd=f'[origin@32473 id="{t}"]', pri=13 * 8 + 5)
    second = rfc5424(f"{t} two {XML}", msgid="AUDIT")
    syslog_receiver.send(first, second)  # two frames, one connection
    one = syslog_receiver.wait_for(lambda m: m["msg"].endswith(f"{t} one"))
    assert one["rawmsg"] == first.decode() and one["protocol-version"] == "1"
    assert (one["syslogfacility"], one["syslogseverity"]) == ("13", "5")
    assert one["app-name"] == "tcia-gateway" and one["msgid"] == "AUDIT"
    assert one["structured-data"] == f'[origin@32473 id="{t}"]'
    two = syslog_receiver.wait_for(lambda m: f"{t} two" in m["msg"])
    assert two["msg"] == f"\ufeff{t} two {XML}"  # the newlines of the XML survive
    assert not [m for m in syslog_receiver.messages("tls") if t in m["rawmsg"]]


def test_a_large_message_arrives_whole(syslog_receiver: Rsyslog) -> None:
    t = tag()
    body = f"{t} " + "<ParticipantObjectIdentification/>" * 3000  # ~100 KiB
    syslog_receiver.send(rfc5424(body))
    got = syslog_receiver.wait_for(lambda m: t in m["msg"])
    assert got["msg"] == "\ufeff" + body and len(body) > 100_000


@pytest.mark.skipif(shutil.which("logger") is None, reason="util-linux logger missing")
def test_an_independent_sender_util_linux_logger(syslog_receiver: Rsyslog) -> None:
    t = tag()
    subprocess.run(["logger", "--tcp", "--octet-count", "--rfc5424", "-n", "127.0.0.1",
                    "-P", str(syslog_receiver.tcp_port), "-t", "dcm-audit", "--msgid", "110112",
                    f"{t} from logger"], check=True, timeout=10)
    got = syslog_receiver.wait_for(lambda m: t in m["msg"])
    assert got["app-name"] == "dcm-audit" and got["msgid"] == "110112"
    assert got["msg"].endswith(f"{t} from logger")


def test_tls_with_the_test_ca(syslog_receiver: Rsyslog) -> None:
    t = tag()
    message = rfc5424(f"{t} {XML}", msgid="AUDIT")
    syslog_receiver.send(message, tls=True)
    got = syslog_receiver.wait_for(lambda m: t in m["msg"], listener="tls")
    assert got["rawmsg"] == message.decode() and got["msgid"] == "AUDIT"
    assert not [m for m in syslog_receiver.messages("tcp") if t in m["rawmsg"]]


def untrusting_contexts(tmp_path: Path) -> dict[str, ssl.SSLContext]:
    other = make_ca(tmp_path / "other", "some other CA")
    return {"system trust only": ssl.create_default_context(),
            "another CA": ssl.create_default_context(cafile=str(other.cert))}


def test_tls_clients_without_the_right_trust_fail(syslog_receiver: Rsyslog, tmp_path: Path) -> None:
    for name, ctx in untrusting_contexts(tmp_path).items():
        t = tag()
        with pytest.raises(ssl.SSLCertVerificationError):
            syslog_receiver.send(rfc5424(f"{t} {name}"), tls=True, context=ctx)
    with pytest.raises(ssl.SSLCertVerificationError, match="match|mismatch"):
        syslog_receiver.send(rfc5424("wrong name"), tls=True, server_hostname="audit.example.org")


def test_plain_tcp_to_the_tls_port_delivers_nothing(syslog_receiver: Rsyslog) -> None:
    t = tag()
    with socket.create_connection(("127.0.0.1", syslog_receiver.tls_port), timeout=5) as sock:
        message = rfc5424(f"{t} cleartext")
        sock.sendall(str(len(message)).encode() + b" " + message)
        sock.settimeout(5)
        try:
            assert sock.recv(1024) == b""  # the server gives up on the handshake and closes
        except ConnectionResetError:
            pass
    syslog_receiver.send(rfc5424(f"{t} marker"), tls=True)
    syslog_receiver.wait_for(lambda m: f"{t} marker" in m["msg"], listener="tls")
    assert not [m for m in syslog_receiver.messages("tls") if f"{t} cleartext" in m["rawmsg"]]
