"""The audit trail of the real `tcia-gateway dimse` process: DCMTK operations and refusals
become AuditEvents in the index (read back from the store) and PS3.15 A.5 messages that a
real rsyslog receives over TLS (RFC 5425), schema-valid; an AE not allowed gets
A-ASSOCIATE-RJ (1, 1, 3) as DCMTK reports it."""
from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from lxml import etree
from sqlalchemy import create_engine

from gateway.audit.store import AuditQuery, AuditStore
from tests.support import dcmtk
from tests.support.dicomfiles import make_file
from tests.support.oidc_idp import DEFAULT_AUDIENCE
from tests.support.procs import wait_until
from tests.support.remote import start_scp

pytestmark = pytest.mark.timeout(300)
SCHEMA = etree.RelaxNG(etree.parse(str(Path(__file__).resolve().parents[1] / "support"
                                       / "audit_message.rng")))


def test_dimse_operations_and_refusals_are_audited(data_copy: Path, artifacts_dir: Path,
                                                   tmp_path: Path, forged_issuer,
                                                   syslog_receiver) -> None:
    aet = "GW" + uuid.uuid4().hex[:8].upper()           # tags this run's messages
    env = {"GATEWAY_AUTH_MODE": "required", "GATEWAY_AUTH_ISSUER": forged_issuer.url,
           "GATEWAY_AUTH_AUDIENCE": DEFAULT_AUDIENCE, "GATEWAY_DIMSE_ALLOWED_AES": "DCMTK,MODALITY",
           "GATEWAY_AUDIT_SYSLOG": syslog_receiver.tls_url,
           "GATEWAY_AUDIT_SYSLOG_TLS_CA": str(syslog_receiver.ca.cert)}
    scp = start_scp(data_copy, artifacts_dir / "logs", aet=aet, extra_env=env)
    try:
        stranger = dcmtk.run("echoscu", dcmtk.peer_args(aet, scp.port, calling="STRANGER"),
                             check=False)
        text = stranger.stdout + stranger.stderr
        assert "Association Rejected" in text and "Calling AE Title Not Recognized" in text, text
        token = tmp_path / "t.jwt"
        token.write_text(forged_issuer.forge.token("system/*.cruds", sub="modality-user"))
        dcmtk.run("storescu", ["--jwt", token, *dcmtk.peer_args(aet, scp.port),
                               make_file(tmp_path / "a.dcm", patient="AUDITED", study="st-a")])
        anonymous = dcmtk.run("storescu", [*dcmtk.peer_args(aet, scp.port),
                                           make_file(tmp_path / "b.dcm", patient="AUDITED")],
                              check=False)
        assert "Association Rejected" in anonymous.stdout + anonymous.stderr
        store = AuditStore(create_engine(f"sqlite:///{data_copy / 'index.sqlite'}"))
        wait_until(lambda: len(store.search(AuditQuery())) >= 3, timeout=15,
                   what="3 AuditEvents in the index")
        events = store.search(AuditQuery())
        codes = sorted(e["type"]["code"] for e in events)
        assert codes == ["110104", "110113", "110114"], codes
        created = store.search(AuditQuery(patient="AUDITED"))
        assert [e["type"]["code"] for e in created] == ["110104"] and created[0]["outcome"] == "0"
        assert store.search(AuditQuery(agent="modality-user")) == created
        assert [e["type"]["code"] for e in store.search(AuditQuery(agent="STRANGER"))] == ["110113"]
        mine = lambda: [m for m in syslog_receiver.messages("tls") if aet in m["msg"]]
        wait_until(lambda: len(mine()) >= 3, timeout=15, what="3 A.5 messages over TLS")
        docs = [etree.fromstring(m["msg"].lstrip("\ufeff").encode()) for m in mine()]
        for doc in docs:
            assert SCHEMA.validate(doc), SCHEMA.error_log
        ids = sorted(d.find("EventIdentification/EventID").get("csd-code") for d in docs)
        assert ids == ["110104", "110113", "110114"]
        assert not any("eyJ" in m["msg"] for m in mine())  # never a token
    finally:
        scp.proc.stop()
