"""PS3.15 A.5 audit messages reach a real rsyslog over TCP (RFC 6587 octet counting) and
TLS (RFC 5425), whole and schema-valid; an untrusted or absent collector never blocks or
raises, it is counted and logged, and a collector that comes up later gets the backlog."""
from __future__ import annotations

import datetime as dt
import logging
import socket
import uuid
from pathlib import Path

import pytest
from lxml import etree

from gateway.audit.events import Action, Actor, AuditRecord, Face, Server, Study
from gateway.audit.syslog import SyslogSender
from gateway.audit.trail import AuditTrail
from tests.support.procs import free_port, wait_until
from tests.support.syslog import Rsyslog

SCHEMA = etree.RelaxNG(etree.parse(str(Path(__file__).resolve().parents[1] / "support"
                                       / "audit_message.rng")))
CT = "1.2.840.10008.5.1.4.1.1.2"


def records(tag: str) -> list[AuditRecord]:
    who = Actor(sub="alice", client_id="viewer", address="10.1.1.1")
    server = Server(f"http://gw-{tag}.test", "127.0.0.1", ae_title="TCIAGW")  # tags the messages
    now = dt.datetime.now(dt.UTC)
    studies = (Study(f"1.2.{i}", f"P{i}", ((CT, 120),)) for i in range(2))
    return [AuditRecord(Action.QUERY, Face.DICOMWEB, who=who, server=server, recorded=now,
                        request_id=tag, query=b"PatientID=P*", patients=("P0", "P1")),
            AuditRecord(Action.READ, Face.DICOMWEB, who=who, server=server, recorded=now,
                        request_id=tag, studies=tuple(studies))]


def parsed(message: dict) -> etree._Element:
    doc = etree.fromstring(message["msg"].lstrip("\ufeff").encode())
    assert SCHEMA.validate(doc), SCHEMA.error_log
    return doc


def event_ids(docs: list[etree._Element]) -> list[str]:
    return sorted(d.find("EventIdentification/EventID").get("csd-code") for d in docs)


@pytest.mark.parametrize("listener", ["tcp", "tls"])
def test_a5_messages_arrive_and_parse(syslog_receiver: Rsyslog, listener: str) -> None:
    tag = uuid.uuid4().hex
    url = syslog_receiver.tcp_url if listener == "tcp" else syslog_receiver.tls_url
    sender = SyslogSender(url, ca_file=str(syslog_receiver.ca.cert), hostname="gw-host")
    trail = AuditTrail(sender=sender)
    for r in records(tag):
        trail.record(r)
    trail.close()  # encodes, hands over, and the sender flushes
    assert sender.stats.sent == 3 and sender.stats.dropped == 0  # 1 query + 2 per-patient reads
    mine = lambda: [m for m in syslog_receiver.messages(listener) if tag in m["msg"]]
    wait_until(lambda: len(mine()) == 3, timeout=10, what="3 audit messages")
    got = mine()
    assert {(m["app-name"], m["msgid"], m["hostname"]) for m in got} == {
        ("tcia-gateway", "IHE+RFC-3881", "gw-host")}
    assert {(m["syslogfacility"], m["syslogseverity"]) for m in got} == {("10", "5")}
    docs = [parsed(m) for m in got]
    assert event_ids(docs) == ["110104", "110104", "110112"]
    patients = sorted(po.get("ParticipantObjectID") for d in docs
                      for po in d.iter("ParticipantObjectIdentification")
                      if po.get("ParticipantObjectTypeCode") == "1")
    assert patients == ["P0", "P1"]  # one Instances Transferred per patient
    other = "tls" if listener == "tcp" else "tcp"
    assert not [m for m in syslog_receiver.messages(other) if tag in m["msg"]]


def test_an_untrusted_collector_gets_nothing_and_nothing_raises(syslog_receiver: Rsyslog,
                                                                caplog) -> None:
    tag = uuid.uuid4().hex
    sender = SyslogSender(syslog_receiver.tls_url, max_backoff=0.2)  # system CAs only
    with caplog.at_level(logging.ERROR, logger="gateway.audit.syslog"):
        trail = AuditTrail(sender=sender)
        trail.record(records(tag)[0])
        wait_until(lambda: sender.stats.connect_failures >= 2, timeout=10, what="retries")
        trail.close(timeout=0.5)
    assert sender.stats.sent == 0 and sender.stats.submitted == 1
    assert "certificate verify failed" in caplog.text
    assert caplog.text.count("cannot connect") == 1  # logged once, not per retry
    assert not [m for m in syslog_receiver.messages("tls") if tag in m["msg"]]


def test_a_full_queue_drops_counts_and_logs(caplog) -> None:
    sender = SyslogSender(f"tcp://127.0.0.1:{free_port()}", queue_size=5, max_backoff=0.2)
    with caplog.at_level(logging.ERROR, logger="gateway.audit.syslog"):
        accepted = [sender.submit(b"<AuditMessage/>") for _ in range(20)]
    assert sender.stats.submitted == 20
    assert accepted.count(False) == sender.stats.dropped >= 14  # 5 queued, at most 1 in flight
    assert "audit syslog queue full (5)" in caplog.text
    sender.close(timeout=0.2)


def test_a_collector_that_comes_up_later_gets_the_backlog() -> None:
    port = free_port()
    sender = SyslogSender(f"tcp://127.0.0.1:{port}", max_backoff=0.2)
    for i in range(3):
        sender.submit(f"<AuditMessage n='{i}'/>".encode())
    wait_until(lambda: sender.stats.connect_failures >= 1, timeout=5, what="a refused connect")
    with socket.create_server(("127.0.0.1", port)) as server:
        server.settimeout(10)
        conn, _ = server.accept()
        with conn:
            conn.settimeout(10)
            data = b""
            while data.count(b"<AuditMessage") < 3:
                chunk = conn.recv(65536)
                assert chunk, "connection closed early"
                data += chunk
    sender.close(timeout=1)
    frames = split_octet_counted(data)
    assert [f.rsplit(b"\xef\xbb\xbf", 1)[1] for f in frames] == [
        f"<AuditMessage n='{i}'/>".encode() for i in range(3)]
    assert sender.stats.sent == 3


def split_octet_counted(data: bytes) -> list[bytes]:
    """RFC 6587 3.4.1: MSG-LEN SP SYSLOG-MSG, repeated."""
    frames = []
    while data:
        length, _, rest = data.partition(b" ")
        frames.append(rest[:int(length)])
        data = rest[int(length):]
    return frames
