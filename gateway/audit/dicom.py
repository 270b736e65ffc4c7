"""`AuditRecord` -> DICOM PS3.15 A.5 audit messages (XML per the A.5.1 schema), pure.

Event ids (A.5.3): Query 110112 (A.5.3.10; one message per request: the table has no
patient object), DICOM Instances Transferred 110104 (A.5.3.7; retrievals and stores of
DICOM, one message per patient), Patient Record 110110 (A.5.3.9; FHIR reads and writes),
DICOM Instances Accessed 110103 (A.5.3.5; deletes), Security Alert 110113 (A.5.3.11; with
DCID 403 type 110132 or 110126 and an "Alert Description" detail), User Authentication
110114 (A.5.3.12; Login 110122). EventOutcomeIndicator 0/4/8/12. Coded values use the
DICOM attribute names `csd-code`, `codeSystemName`, `originalText` (A.5.1
CodedValueType). ParticipantObjectQuery and ParticipantObjectDetail values are base64
(xsd:base64Binary). No token ever appears: users are `sub`, apps `client_id`.
"""
from __future__ import annotations

import base64
from xml.etree import ElementTree as ET

from .events import Action, AuditRecord, Face, Study, is_ip
from .fhir import instant

STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
EVENTS = {  # (action, DICOM data?) -> (EventID code, originalText)
    (Action.QUERY, True): ("110112", "Query"), (Action.QUERY, False): ("110112", "Query"),
    (Action.READ, True): ("110104", "DICOM Instances Transferred"),
    (Action.CREATE, True): ("110104", "DICOM Instances Transferred"),
    (Action.UPDATE, True): ("110104", "DICOM Instances Transferred"),
    (Action.DELETE, True): ("110103", "DICOM Instances Accessed"),
    (Action.READ, False): ("110110", "Patient Record"),
    (Action.CREATE, False): ("110110", "Patient Record"),
    (Action.UPDATE, False): ("110110", "Patient Record"),
    (Action.DELETE, False): ("110110", "Patient Record"),
    (Action.LOGIN, True): ("110114", "User Authentication"),
    (Action.LOGIN, False): ("110114", "User Authentication"),
    (Action.SECURITY_ALERT, True): ("110113", "Security Alert"),
    (Action.SECURITY_ALERT, False): ("110113", "Security Alert"),
}
ACTION_CODES = {Action.QUERY: "E", Action.READ: "R", Action.CREATE: "C", Action.UPDATE: "U",
                Action.DELETE: "D", Action.LOGIN: "E", Action.SECURITY_ALERT: "E"}
SOURCE = ("110153", "DCM", "Source Role ID")
DESTINATION = ("110152", "DCM", "Destination Role ID")
ALERTS = {"110132": "Use of Restricted Function", "110126": "Node Authentication"}
SINGLE_MESSAGE = (Action.QUERY, Action.LOGIN, Action.SECURITY_ALERT)


def to_dicom_xml(record: AuditRecord) -> list[bytes]:
    """The A.5 messages for `record` (UTF-8 XML documents)."""
    records = [record] if record.action in SINGLE_MESSAGE else record.per_patient()
    return [ET.tostring(_message(r), encoding="UTF-8", xml_declaration=True) for r in records]


def _message(r: AuditRecord) -> ET.Element:
    root = ET.Element("AuditMessage")
    _event(root, r)
    for participant in _participants(r):
        root.append(participant)
    source = ET.SubElement(root, "AuditSourceIdentification",
                           AuditEnterpriseSiteID=r.server.site, AuditSourceID=r.server.name)
    _code(source, "AuditSourceTypeCode", ("4", "DCM", "Application Server Process"))
    for po in _objects(r):
        root.append(po)
    return root


def _dicom_data(r: AuditRecord) -> bool:
    return r.face is not Face.FHIR


def _event(root: ET.Element, r: AuditRecord) -> None:
    code, text = EVENTS[(r.action, _dicom_data(r))]
    event = ET.SubElement(root, "EventIdentification", EventActionCode=ACTION_CODES[r.action],
                          EventDateTime=instant(r.recorded),
                          EventOutcomeIndicator=str(int(r.outcome)))
    _code(event, "EventID", (code, "DCM", text))
    if r.action is Action.LOGIN:
        _code(event, "EventTypeCode", ("110122", "DCM", "Login"))
    elif r.action is Action.SECURITY_ALERT:
        alert = r.alert.value if r.alert else "110132"
        _code(event, "EventTypeCode", (alert, "DCM", ALERTS[alert]))
    if r.description:
        ET.SubElement(event, "EventOutcomeDescription").text = r.description


def _participants(r: AuditRecord) -> list[ET.Element]:
    """Per the A.5.3 table of the event: who asked, who answered, the user when known."""
    who, server = r.who, r.server
    client_role, server_role = _roles(r)
    gateway = _participant(server.name, requestor=False, role=server_role,
                           aes=server.ae_title, address=server.address)
    if r.action is Action.LOGIN:  # A.5.3.12: the person claimed (address required), the node
        claimed = _participant(who.sub or _claimed(r), requestor=True, role=None, aes=None,
                               address=who.address or "unknown")
        return [claimed, gateway]
    alert = r.action is Action.SECURITY_ALERT  # A.5.3.11: performers are never requestors
    client = _participant(who.client_id or who.calling_ae or who.address or "unknown",
                          requestor=not who.has_user and not alert, role=client_role,
                          aes=who.calling_ae, address=who.address)
    out = [gateway, client] if alert else [client, gateway]
    if r.destination is not None:  # A.5.3.7: the receiving process; the requestor is "other"
        role_code = client.find("RoleIDCode")
        if role_code is not None:
            client.remove(role_code)
        dest = r.destination
        out.append(_participant(dest.calling_ae or dest.address or "unknown", requestor=False,
                                role=DESTINATION, aes=dest.calling_ae, address=dest.address))
    if who.has_user:
        out.append(_participant(who.sub or "", requestor=not alert, role=None, aes=None,
                                address=None))
    return out


def _claimed(r: AuditRecord) -> str:
    who = r.who
    if who.client_id:
        return who.client_id
    return f"token-sha256:{who.token_hash}" if who.token_hash else "unknown"


def _roles(r: AuditRecord) -> tuple[tuple | None, tuple | None]:
    if r.action is Action.READ:
        return DESTINATION, SOURCE  # the data flows to the client
    if r.action is Action.DELETE:
        return None, None
    return SOURCE, DESTINATION


def _participant(user_id: str, *, requestor: bool, role: tuple | None, aes: str | None,
                 address: str | None) -> ET.Element:
    attrs = {"UserID": user_id}
    if aes:
        attrs["AlternativeUserID"] = f"AETITLES={aes}"  # A.5.2.1
    attrs["UserIsRequestor"] = "true" if requestor else "false"
    if address:
        attrs["NetworkAccessPointID"] = address
        attrs["NetworkAccessPointTypeCode"] = "2" if is_ip(address) else "1"
    element = ET.Element("ActiveParticipant", attrs)
    if role:
        _code(element, "RoleIDCode", role)
    return element


def _objects(r: AuditRecord) -> list[ET.Element]:
    if r.action is Action.QUERY:
        return [_query(r)]
    if r.action is Action.LOGIN:
        return []
    if r.action is Action.SECURITY_ALERT:
        return [_alert_subject(r)]
    objects = [_study(s) for s in r.studies] if _dicom_data(r) else []
    return objects + [_patient(p) for p in r.patients]


def _query(r: AuditRecord) -> ET.Element:
    """A.5.3.10 "SOP Queried and the Query"; a non-DICOM (FHIR) query is named by its URI."""
    if _dicom_data(r):
        po = _po(r.sop_class or STUDY_ROOT_FIND, "2", "3", ("110181", "DCM", "SOP Class UID"))
    else:
        po = _po(r.path or "-", "2", "24", ("12", "RFC-3881", "URI"))
    ET.SubElement(po, "ParticipantObjectQuery").text = _b64(r.query or b"")
    if r.query_syntax:
        _detail(po, "TransferSyntax", r.query_syntax.encode())
    if r.request_id:
        _detail(po, "RequestId", r.request_id.encode())
    return po


def _alert_subject(r: AuditRecord) -> ET.Element:
    if r.face.restful:
        po = _po(r.path or "-", "2", None, ("12", "RFC-3881", "URI"))
    else:
        node = f"{r.who.calling_ae or '-'}@{r.who.address or '-'}"
        po = _po(node, "2", None, ("110182", "DCM", "Node ID"))
    _detail(po, "Alert Description", (r.description or "access denied").encode())
    if r.request_id:
        _detail(po, "RequestId", r.request_id.encode())
    return po


def _study(study: Study) -> ET.Element:
    po = _po(study.uid, "2", "3", ("110180", "DCM", "Study Instance UID"))
    for sop_class, count in study.sop_classes:
        ET.SubElement(po, "SOPClass", UID=sop_class, NumberOfInstances=str(count))
    return po


def _patient(patient: str) -> ET.Element:
    return _po(patient, "1", "1", ("2", "RFC-3881", "Patient Number"))


def _po(object_id: str, type_code: str, role: str | None, id_type: tuple) -> ET.Element:
    attrs = {"ParticipantObjectID": object_id, "ParticipantObjectTypeCode": type_code}
    if role:
        attrs["ParticipantObjectTypeCodeRole"] = role
    po = ET.Element("ParticipantObjectIdentification", attrs)
    _code(po, "ParticipantObjectIDTypeCode", id_type)
    return po


def _detail(po: ET.Element, kind: str, value: bytes) -> None:
    ET.SubElement(po, "ParticipantObjectDetail", type=kind, value=_b64(value))


def _code(parent: ET.Element, tag: str, code: tuple) -> ET.Element:
    csd, system, text = code
    return ET.SubElement(parent, tag, {"csd-code": csd, "codeSystemName": system,
                                       "originalText": text})


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
