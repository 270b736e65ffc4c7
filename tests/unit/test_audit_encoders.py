"""The audit event model and its two encodings: FHIR AuditEvent (IHE BALP, validated with
fhir.resources R4B) and DICOM PS3.15 A.5 XML (validated against the A.5.1 schema)."""
from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path

import pytest
from lxml import etree

from gateway.access.principal import principal_from_claims
from gateway.audit.dicom import to_dicom_xml
from gateway.audit.events import (
    Action,
    Actor,
    Alert,
    AuditRecord,
    Face,
    Outcome,
    Server,
    Study,
    redact_query,
)
from gateway.audit.fhir import to_fhir
from gateway.audit.syslog import frame
from gateway.clinical.resources import validate

SCHEMA = etree.RelaxNG(etree.parse(str(Path(__file__).resolve().parents[1] / "support"
                                       / "audit_message.rng")))
BALP = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit."
CT = "1.2.840.10008.5.1.4.1.1.2"
WHEN = dt.datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=dt.UTC)
ALICE = Actor(sub="alice", client_id="viewer", issuer="http://idp.test", jti="jti-1",
              token_hash="0123456789abcdef", address="10.1.2.3")
GATEWAY = Server("http://gw.test:8080", "192.0.2.10", ae_title="TCIAGW")


def record(action: Action, face: Face = Face.DICOMWEB, **kw) -> AuditRecord:
    return AuditRecord(action, face, who=kw.pop("who", ALICE), server=GATEWAY, recorded=WHEN,
                       request_id=kw.pop("request_id", "req-42"), **kw)


def fhir(r: AuditRecord) -> list[dict]:
    events = to_fhir(r)
    for event in events:
        validate(event)  # fhir.resources R4B: the whole resource, strictly
    return events


def dicom(r: AuditRecord) -> list[etree._Element]:
    out = []
    for message in to_dicom_xml(r):
        assert message.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
        doc = etree.fromstring(message)
        assert SCHEMA.validate(doc), SCHEMA.error_log
        out.append(doc)
    return out


def entities(event: dict, role: str) -> list[dict]:
    return [e for e in event.get("entity", []) if e.get("role", {}).get("code") == role]


def agent(event: dict, code: str) -> dict:
    return next(a for a in event["agent"] if any(c["code"] == code for c in a["type"]["coding"]))


def code_of(element: etree._Element, tag: str) -> str:
    return element.find(tag).get("csd-code")


def test_a_query_over_three_patients_is_three_balp_patient_queries_and_one_a5_query() -> None:
    raw = b"PatientID=COVID*&includefield=00081030,00080060&limit=101"
    r = record(Action.QUERY, method="GET", path="/dicomweb/studies", query=raw,
               patients=("P1", "P2", "P3"))
    events = fhir(r)
    assert len(events) == 3 and len({e["id"] for e in events}) == 3
    assert [entities(e, "1")[0]["what"]["reference"] for e in events] == [
        "Patient/P1", "Patient/P2", "Patient/P3"]
    first = events[0]
    assert first["meta"]["profile"] == [BALP + "PatientQuery", BALP + "OAUTHaccessTokenUse.Minimal"]
    assert (first["type"]["code"], first["subtype"][0]["code"], first["action"]) == ("rest", "search", "E")
    assert first["recorded"] == "2024-05-06T07:08:09.123Z" and first["outcome"] == "0"
    query = entities(first, "24")[0]
    assert base64.b64decode(query["query"]) == raw
    assert query["description"] == "GET /dicomweb/studies"
    transaction = next(e for e in first["entity"] if e["type"]["code"] == "XrequestId")
    assert transaction["what"]["identifier"]["value"] == "req-42"
    client, server, user = agent(first, "110153"), agent(first, "110152"), agent(first, "IRCP")
    assert client["who"]["identifier"]["value"] == "viewer"
    assert client["network"] == {"address": "10.1.2.3", "type": "2"}
    assert server["who"]["identifier"]["value"] == "http://gw.test:8080"
    assert server["network"]["address"] == "192.0.2.10" and server["requestor"] is False
    assert user["who"]["identifier"] == {"value": "alice", "system": "http://idp.test"}
    assert user["requestor"] is True and user["policy"] == ["jti-1"]
    [message] = dicom(r)
    event = message.find("EventIdentification")
    assert (code_of(event, "EventID"), event.get("EventActionCode"),
            event.get("EventOutcomeIndicator")) == ("110112", "E", "0")
    assert event.get("EventDateTime") == "2024-05-06T07:08:09.123Z"
    [po] = message.findall("ParticipantObjectIdentification")
    assert po.get("ParticipantObjectID") == "1.2.840.10008.5.1.4.1.2.2.1"  # Study Root FIND
    assert code_of(po, "ParticipantObjectIDTypeCode") == "110181"
    assert base64.b64decode(po.findtext("ParticipantObjectQuery")) == raw
    participants = message.findall("ActiveParticipant")
    assert [p.get("UserID") for p in participants] == ["viewer", "http://gw.test:8080", "alice"]
    assert [code_of(p, "RoleIDCode") if p.find("RoleIDCode") is not None else None
            for p in participants] == ["110153", "110152", None]
    assert participants[0].get("NetworkAccessPointID") == "10.1.2.3"
    assert participants[1].get("AlternativeUserID") == "AETITLES=TCIAGW"


def test_a_query_without_patients_is_one_balp_query() -> None:
    [event] = fhir(record(Action.QUERY, query=b"StudyDate=20990101", patients=()))
    assert event["meta"]["profile"][0] == BALP + "Query" and not entities(event, "1")


def test_a_retrieve_is_a_patient_read_and_instances_transferred() -> None:
    study = Study("1.2.3.4", "P1", ((CT, 12),))
    r = record(Action.READ, method="GET", path="/dicomweb/studies/1.2.3.4", studies=(study,))
    [event] = fhir(r)
    assert event["meta"]["profile"][0] == BALP + "PatientRead" and event["action"] == "R"
    assert agent(event, "110152")["who"]["identifier"]["value"] == "viewer"  # data flows to it
    assert agent(event, "110153")["who"]["identifier"]["value"] == "http://gw.test:8080"
    [data] = entities(event, "3")
    assert data["what"]["identifier"] == {"system": "urn:dicom:uid", "value": "urn:oid:1.2.3.4"}
    [message] = dicom(r)
    assert code_of(message.find("EventIdentification"), "EventID") == "110104"
    assert message.find("EventIdentification").get("EventActionCode") == "R"
    study_po, patient_po = message.findall("ParticipantObjectIdentification")
    assert (study_po.get("ParticipantObjectID"), code_of(study_po, "ParticipantObjectIDTypeCode"),
            study_po.get("ParticipantObjectTypeCodeRole")) == ("1.2.3.4", "110180", "3")
    assert study_po.find("SOPClass").attrib == {"UID": CT, "NumberOfInstances": "12"}
    assert (patient_po.get("ParticipantObjectID"), patient_po.get("ParticipantObjectTypeCode"),
            code_of(patient_po, "ParticipantObjectIDTypeCode")) == ("P1", "1", "2")
    roles = [code_of(p, "RoleIDCode") for p in message.findall("ActiveParticipant")[:2]]
    assert roles == ["110152", "110153"]


def test_a_store_over_two_patients_is_split_per_patient() -> None:
    studies = (Study("1.1", "P1", ((CT, 3),)), Study("2.2", "P2", ((CT, 1),)))
    r = record(Action.CREATE, method="POST", path="/dicomweb/studies", studies=studies)
    events = fhir(r)
    assert [e["meta"]["profile"][0] for e in events] == [BALP + "PatientCreate"] * 2
    assert [entities(e, "3")[0]["what"]["identifier"]["value"] for e in events] == [
        "urn:oid:1.1", "urn:oid:2.2"]
    assert agent(events[0], "AUT")["requestor"] is True
    messages = dicom(r)
    assert [m.find("EventIdentification").get("EventActionCode") for m in messages] == ["C", "C"]
    assert [[po.get("ParticipantObjectID") for po in m.findall("ParticipantObjectIdentification")]
            for m in messages] == [["1.1", "P1"], ["2.2", "P2"]]
    [replaced] = dicom(record(Action.UPDATE, studies=studies[:1]))
    assert replaced.find("EventIdentification").get("EventActionCode") == "U"


def test_fhir_reads_and_writes_are_patient_records() -> None:
    r = record(Action.READ, Face.FHIR, method="GET", path="/fhir/Observation/o1",
               resources=("Observation/o1",), patients=("P1",))
    [event] = fhir(r)
    assert entities(event, "4")[0]["what"]["reference"] == "Observation/o1"
    [message] = dicom(r)
    assert code_of(message.find("EventIdentification"), "EventID") == "110110"
    assert [po.get("ParticipantObjectID") for po in
            message.findall("ParticipantObjectIdentification")] == ["P1"]
    [deleted] = fhir(record(Action.DELETE, Face.FHIR, resources=("Condition/c1",), patients=("P1",)))
    assert deleted["action"] == "D" and deleted["meta"]["profile"][0] == BALP + "PatientDelete"
    assert agent(deleted, "110150") and agent(deleted, "custodian")


def test_a_failed_token_is_a_user_authentication_failure() -> None:
    anonymous = Actor(token_hash="fedcba9876543210", address="10.9.9.9")
    r = record(Action.LOGIN, who=anonymous, outcome=Outcome.MINOR_FAILURE,
               description="the access token expired", attempted=Action.QUERY,
               method="GET", path="/fhir/Patient", query=b"name=x")
    [event] = fhir(r)
    assert "meta" not in event  # BALP profiles describe successes only
    assert (event["type"]["code"], event["subtype"][0]["code"], event["outcome"]) == (
        "110114", "110122", "4")
    assert event["outcomeDesc"] == "the access token expired"
    assert agent(event, "110153")["who"]["identifier"]["value"] == "10.9.9.9"
    [message] = dicom(r)
    event_id = message.find("EventIdentification")
    assert code_of(event_id, "EventTypeCode") == "110122"
    assert event_id.findtext("EventOutcomeDescription") == "the access token expired"
    claimed = message.find("ActiveParticipant")
    assert claimed.get("UserID") == "token-sha256:fedcba9876543210"
    assert claimed.get("NetworkAccessPointID") == "10.9.9.9" and claimed.get("UserIsRequestor") == "true"
    assert message.find("ParticipantObjectIdentification") is None


def test_a_denial_is_a_security_alert() -> None:
    r = record(Action.SECURITY_ALERT, outcome=Outcome.MINOR_FAILURE, alert=Alert.RESTRICTED_FUNCTION,
               attempted=Action.QUERY, method="GET", path="/dicomweb/studies", query=b"limit=1",
               description="no scope grants 's' on ImagingStudy", patients=("P9",))
    [event] = fhir(r)
    assert (event["type"]["code"], [s["code"] for s in event["subtype"]]) == ("110113", ["110132", "search"])
    alert = next(e for e in event["entity"] if e.get("detail"))
    assert alert["detail"] == [{"type": "Alert Description",
                                "valueString": "no scope grants 's' on ImagingStudy"}]
    assert base64.b64decode(entities(event, "24")[0]["query"]) == b"limit=1"
    [message] = dicom(r)
    assert code_of(message.find("EventIdentification"), "EventTypeCode") == "110132"
    reporter, performer, user = message.findall("ActiveParticipant")
    assert reporter.get("UserID") == "http://gw.test:8080"
    assert {p.get("UserIsRequestor") for p in (reporter, performer, user)} == {"false"}
    [subject] = message.findall("ParticipantObjectIdentification")
    assert subject.get("ParticipantObjectID") == "/dicomweb/studies"
    details = {d.get("type"): base64.b64decode(d.get("value")).decode()
               for d in subject.findall("ParticipantObjectDetail")}
    assert details == {"Alert Description": "no scope grants 's' on ImagingStudy", "RequestId": "req-42"}


def test_dimse_events() -> None:
    modality = Actor(calling_ae="MODALITY", address="10.0.0.7")
    identifier = b"\x08\x00\x52\x00\x06\x00\x00\x00STUDY "
    find = record(Action.QUERY, Face.DIMSE, who=modality, method="C-FIND", query=identifier,
                  query_syntax="1.2.840.10008.1.2.1", sop_class="1.2.840.10008.5.1.4.1.2.1.1",
                  request_id=None)
    [event] = fhir(find)
    assert event["type"] == {"system": "http://dicom.nema.org/resources/ontology/DCM",
                             "code": "110112", "display": "Query"} and "meta" not in event
    client = agent(event, "110153")
    assert client["who"]["identifier"]["value"] == "MODALITY" and client["altId"] == "AETITLES=MODALITY"
    assert client["requestor"] is True
    [message] = dicom(find)
    po = message.find("ParticipantObjectIdentification")
    assert po.get("ParticipantObjectID") == "1.2.840.10008.5.1.4.1.2.1.1"
    assert base64.b64decode(po.findtext("ParticipantObjectQuery")) == identifier
    detail = po.find("ParticipantObjectDetail")
    assert detail.get("type") == "TransferSyntax"
    assert base64.b64decode(detail.get("value")) == b"1.2.840.10008.1.2.1"
    refused = record(Action.SECURITY_ALERT, Face.DIMSE, who=modality, alert=Alert.NODE_AUTHENTICATION,
                     outcome=Outcome.MINOR_FAILURE, description="calling AE title not recognised")
    [alert] = fhir(refused)
    assert alert["subtype"] == [{"system": "http://dicom.nema.org/resources/ontology/DCM",
                                 "code": "110126", "display": "Node Authentication"}]
    [message] = dicom(refused)
    subject = message.find("ParticipantObjectIdentification")
    assert subject.get("ParticipantObjectID") == "MODALITY@10.0.0.7"
    assert code_of(subject, "ParticipantObjectIDTypeCode") == "110182"


def test_no_raw_token_in_any_encoding() -> None:
    token = ("eyJhbGciOiJSUzI1NiIsInR5cCI6ImF0K2p3dCJ9.eyJzdWIiOiJhbGljZSIsInNjb3BlIjoidXNlci8q"
             "LnJzIn0.c2lnbmF0dXJlLXRoYXQtbXVzdC1uZXZlci1sZWFr")
    principal = principal_from_claims({"sub": "alice", "client_id": "viewer", "jti": "j-9",
                                       "scope": "user/*.rs", "iss": "http://idp.test"},
                                      token=token, source="jwt")
    who = Actor.of(principal, address="10.1.2.3")
    queries = [f"access_token={token}&limit=1", f"limit=1&ACCESS%5FTOKEN={token}",
               f"?access+token=x&access_token={token}", f"a=1;access_token={token}#frag"]
    records = [record(a, who=who, query=q.encode(), path="/dicomweb/studies", patients=("P1",),
                      description="the access token is not valid", attempted=Action.QUERY,
                      outcome=Outcome.MINOR_FAILURE)
               for q in queries for a in (Action.QUERY, Action.SECURITY_ALERT, Action.LOGIN)]
    for r in records:
        events, messages = to_fhir(r), to_dicom_xml(r)
        texts = [json.dumps(e) for e in events] + [m.decode() for m in messages]
        texts += [frame(m).decode() for m in messages]
        texts += [base64.b64decode(e["query"]).decode() for ev in events
                  for e in ev.get("entity", []) if "query" in e]
        for m in messages:
            doc = etree.fromstring(m)
            texts += [base64.b64decode(q.text or "").decode() for q in doc.iter("ParticipantObjectQuery")]
            texts += [base64.b64decode(d.get("value")).decode() for d in doc.iter("ParticipantObjectDetail")]
        everything = "\n".join(texts)
        assert "[redacted]" in everything
        for secret in (token, token.split(".")[1], token.split(".")[2]):
            assert secret not in everything


@pytest.mark.parametrize("raw, expected", [
    (b"limit=1", b"limit=1"),
    (b"access_token=abc&limit=1", b"access_token=[redacted]&limit=1"),
    (b"limit=1&Access_Token=abc", b"limit=1&Access_Token=[redacted]"),
    (b"access%5ftoken=abc", b"access%5ftoken=[redacted]"),
    (b"a=1;access_token=abc;b=2", b"a=1;access_token=[redacted];b=2"),
    (b"my_access_token=abc", b"my_access_token=abc"),
    (b"?access_token=abc", b"?access_token=[redacted]"),
])
def test_redact_query(raw: bytes, expected: bytes) -> None:
    assert redact_query(raw) == expected


def test_records_are_timezone_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        AuditRecord(Action.QUERY, Face.FHIR, recorded=dt.datetime(2024, 1, 1))


def test_the_schema_check_is_not_vacuous() -> None:
    """The A.5.1 schema refuses what a sloppy encoder might write."""
    [good] = to_dicom_xml(record(Action.QUERY, query=b"x=1"))
    assert SCHEMA.validate(etree.fromstring(good))
    broken = [
        good.replace(b' UserIsRequestor="true"', b""),                     # required attribute
        good.replace(b'EventOutcomeIndicator="0"', b'EventOutcomeIndicator="1"'),  # enumeration
        good.replace(b"csd-code=", b"code="),                              # RFC 3881 names
        good.replace(b"AuditSourceIdentification", b"AuditSource"),       # element name
    ]
    doc = etree.fromstring(good)
    doc.append(doc.find("EventIdentification"))                          # element order
    broken.append(etree.tostring(doc))
    for xml in broken:
        assert not SCHEMA.validate(etree.fromstring(xml)), xml[:200]


def test_a_c_move_names_its_destination() -> None:
    requestor = Actor(calling_ae="WORKSTATION", address="10.0.0.5")
    r = record(Action.READ, Face.DIMSE, who=requestor, method="C-MOVE",
               destination=Actor(calling_ae="ARCHIVE2", address="10.0.0.6"),
               studies=(Study("1.2.3", "P1", ((CT, 5),)),))
    [event] = fhir(r)
    destination, source = agent(event, "110152"), agent(event, "110153")
    assert destination["who"]["identifier"]["value"] == "ARCHIVE2"
    assert destination["network"]["address"] == "10.0.0.6"
    assert source["who"]["identifier"]["value"] == "http://gw.test:8080"
    assert agent(event, "110150")["altId"] == "AETITLES=WORKSTATION"  # the requestor
    [message] = dicom(r)
    participants = {p.get("UserID"): p for p in message.findall("ActiveParticipant")}
    assert code_of(participants["ARCHIVE2"], "RoleIDCode") == "110152"
    assert code_of(participants["http://gw.test:8080"], "RoleIDCode") == "110153"
    assert participants["WORKSTATION"].find("RoleIDCode") is None
    assert participants["WORKSTATION"].get("UserIsRequestor") == "true"
