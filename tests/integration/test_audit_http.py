"""The audit trail wired into DICOMweb and FHIR: one AuditEvent per patient a request
touched (IHE BALP PatientQuery), denials audited as security alerts, `/fhir/AuditEvent`
searchable by patient/agent/date/outcome with user/ or system/ AuditEvent scopes only, and
PS3.15 A.5 messages to rsyslog when AUDIT_SYSLOG is set. Real app, forged loopback issuer."""
from __future__ import annotations

import shutil
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from gateway import close_app, create_app
from gateway.clinical import resources
from gateway.config import Settings
from tests.support.forged_issuer import ForgedIssuer
from tests.support.oidc_idp import DEFAULT_AUDIENCE

AUDITOR = "user/AuditEvent.rs user/*.rs"


@pytest.fixture(scope="module")
def gw(tmp_path_factory, loaded_data_dir: Path, syslog_receiver) -> Iterator[tuple]:
    data = tmp_path_factory.mktemp("audit") / "data"
    shutil.copytree(loaded_data_dir, data)
    with ForgedIssuer(DEFAULT_AUDIENCE) as issuer:
        app = create_app(Settings().replace(
            data_dir=data, auth_mode="public-read", auth_issuer=issuer.url,
            auth_audience=DEFAULT_AUDIENCE, cors_origins="https://viewer.test",
            audit_syslog=syslog_receiver.tcp_url))
        try:
            yield app, app.test_client(), issuer
        finally:
            close_app(app)


def _get(client, path: str, token: str | None = None, **headers: str):
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return client.get(path, headers=headers)


def _flush(app) -> None:
    assert app.extensions["tcia_gateway"]["audit"].trail.flush(10)


def _events(client, issuer, query: str) -> list[dict]:
    response = _get(client, f"/fhir/AuditEvent?{query}", issuer.forge.token(AUDITOR))
    assert response.status_code == 200, response.data[:300]
    bundle = orjson.loads(response.data)
    return [e["resource"] for e in bundle.get("entry", [])]


def test_a_qido_over_several_patients_gives_one_auditevent_each(gw) -> None:
    app, client, issuer = gw
    rid = uuid.uuid4().hex
    token = issuer.forge.token("user/*.rs", sub="reader-1")
    studies = orjson.loads(_get(client, "/dicomweb/studies", token, **{"X-Request-Id": rid}).data)
    patients = {s["00100020"]["Value"][0] for s in studies}
    assert len(patients) >= 3
    _flush(app)
    mine = [e for e in _events(client, issuer, "agent=reader-1&_count=1000")
            if any(x.get("what", {}).get("identifier", {}).get("value") == rid
                   for x in e.get("entity", []))]
    assert len(mine) == len(patients)
    for event in mine:
        resources.validate(event)
        assert event["outcome"] == "0" and event["subtype"][0]["code"] == "search"
    for pid in patients:
        found = _events(client, issuer, f"patient={pid}&agent=reader-1")
        assert found and all(any(x.get("what", {}).get("reference") == f"Patient/{pid}"
                                 for x in e["entity"]) for e in found)


def test_a_denial_is_audited_and_found_by_outcome(gw) -> None:
    app, client, issuer = gw
    rid = uuid.uuid4().hex
    denied = _get(client, "/fhir/Patient", issuer.forge.token("patient/Observation.rs",
                                                                patient="x", sub="mallory"),
                  **{"X-Request-Id": rid})
    assert denied.status_code == 403
    rid2 = uuid.uuid4().hex
    expired = _get(client, "/fhir/Patient", issuer.forge.expired("user/*.rs", sub="mallory"),
                   **{"X-Request-Id": rid2})
    assert expired.status_code == 401
    _flush(app)
    alerts = _events(client, issuer, "agent=mallory&outcome=4")
    assert [e["type"]["code"] for e in alerts] == ["110113"]  # Security Alert
    # A token that fails is not believed: its user is unknown, the request id finds it.
    failed = [e for e in _events(client, issuer, "outcome=4&_count=1000")
              if any(x.get("what", {}).get("identifier", {}).get("value") == rid2
                     for x in e.get("entity", []))]
    assert [e["type"]["code"] for e in failed] == ["110114"]  # User Authentication
    for event in alerts + failed:
        resources.validate(event)


def test_the_audit_trail_needs_a_user_or_system_auditevent_scope(gw) -> None:
    _, client, issuer = gw
    anonymous = _get(client, "/fhir/AuditEvent")
    assert anonymous.status_code == 401
    patient = _get(client, "/fhir/AuditEvent", issuer.forge.token("patient/*.rs", patient="p"))
    assert patient.status_code == 403
    assert 'scope="user/AuditEvent.s"' in patient.headers["WWW-Authenticate"]
    system = _get(client, "/fhir/AuditEvent?date=ge2000-01-01&_count=1",
                  issuer.forge.token("system/AuditEvent.rs"))
    assert system.status_code == 200


def test_public_read_lets_anonymous_reads_and_audits_them(gw) -> None:
    app, client, issuer = gw
    response = _get(client, "/fhir/Patient?_count=1")
    assert response.status_code == 200
    assert "private" not in response.headers.get("Cache-Control", "")
    assert "Authorization" in response.headers["Vary"]
    stow = client.post("/dicomweb/studies", data=b"--x--",
                       headers={"Content-Type": 'multipart/related; type="application/dicom"; '
                                                "boundary=x"})
    assert stow.status_code == 401


def test_syslog_receives_a5_messages(gw, syslog_receiver) -> None:
    app, client, issuer = gw
    rid = uuid.uuid4().hex
    _get(client, "/dicomweb/studies?limit=1", issuer.forge.token("user/*.rs"),
         **{"X-Request-Id": rid})
    _flush(app)
    message = syslog_receiver.wait_for(lambda m: rid in m["msg"] or
                                       _b64_has(m["msg"], rid), timeout=10)
    assert message["msgid"] == "IHE+RFC-3881"
    doc = ET.fromstring(message["msg"].lstrip("\ufeff").encode())
    assert doc.tag == "AuditMessage"
    assert doc.find("EventIdentification/EventID").get("csd-code") in ("110112", "110104")


def _b64_has(text: str, needle: str) -> bool:
    import base64
    import re
    for chunk in re.findall(r"[A-Za-z0-9+/=]{16,}", text):
        try:
            if needle.encode() in base64.b64decode(chunk):
                return True
        except ValueError:
            continue
    return False
