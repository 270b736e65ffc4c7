"""`AuditRecord` -> FHIR R4 AuditEvent(s) following the IHE BALP profiles (pure).

BALP 1.1 (Basic Audit Log Patterns): RESTful events are `type` audit-event-type#rest with
the restful-interaction `subtype`; agents `client` (DCM 110153 Source Role ID or 110152
Destination Role ID by the direction of the data, with its network address), `server`, and
`user` (v3-ParticipationType IRCP/AUT + BALP UserOauthAgent, who = issuer|sub, policy = jti,
as IHE.BasicAudit.OAUTHaccessTokenUse.Minimal); entities `transaction` (the request id,
BasicAuditEntityType#XrequestId), `query` (the raw query base64, object-role 24) and
`patient` (one AuditEvent per patient, PatientQuery/PatientRead/...). BALP profiles are
claimed in `meta.profile` only where the event conforms: successful RESTful events.
Denials and DIMSE events use the DICOM event types (PS3.15 A.5.3: 110113 Security Alert,
110114 User Authentication, 110112 Query, 110104 DICOM Instances Transferred) with the
same agents and entities. Callers validate with `gateway.clinical.resources.validate`.
"""
from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Callable
from urllib.parse import urlsplit

from . import events
from .events import Action, Actor, AuditRecord, Outcome, is_ip

DCM = "http://dicom.nema.org/resources/ontology/DCM"
EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
RESTFUL = "http://hl7.org/fhir/restful-interaction"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
PROVENANCE = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
BALP = "https://profiles.ihe.net/ITI/BALP"
BALP_USER = BALP + "/CodeSystem/UserAgentTypes"
BALP_ENTITY = BALP + "/CodeSystem/BasicAuditEntityType"
PROFILE = BALP + "/StructureDefinition/IHE.BasicAudit."
DICOM_UID = "urn:dicom:uid"

REST = {"system": EVENT_TYPE, "code": "rest", "display": "Restful Operation"}
SOURCE = {"system": DCM, "code": "110153", "display": "Source Role ID"}
DESTINATION = {"system": DCM, "code": "110152", "display": "Destination Role ID"}
APPLICATION = {"system": DCM, "code": "110150", "display": "Application"}
CUSTODIAN = {"system": PROVENANCE, "code": "custodian", "display": "Custodian"}
RECIPIENT = {"system": PARTICIPATION, "code": "IRCP", "display": "information recipient"}
AUTHOR = {"system": PARTICIPATION, "code": "AUT", "display": "author (originator)"}
OAUTH_USER = {"system": BALP_USER, "code": "UserOauthAgent", "display": "User OAuth Agent participant"}

# action -> (restful interaction, action code, client role, server role, user role, BALP name)
SHAPES = {
    Action.QUERY: ("search", "E", SOURCE, DESTINATION, RECIPIENT, "Query"),
    Action.READ: ("read", "R", DESTINATION, SOURCE, RECIPIENT, "Read"),
    Action.CREATE: ("create", "C", SOURCE, DESTINATION, AUTHOR, "Create"),
    Action.UPDATE: ("update", "U", SOURCE, DESTINATION, AUTHOR, "Update"),
    Action.DELETE: ("delete", "D", APPLICATION, CUSTODIAN, AUTHOR, "Delete"),
    Action.LOGIN: (None, "E", SOURCE, DESTINATION, None, None),
    Action.SECURITY_ALERT: (None, "E", SOURCE, DESTINATION, None, None),
}
# PS3.15 A.5.3 event ids for what has no RESTful type
DICOM_TYPES = {
    Action.QUERY: ("110112", "Query"), Action.READ: ("110104", "DICOM Instances Transferred"),
    Action.CREATE: ("110104", "DICOM Instances Transferred"),
    Action.UPDATE: ("110104", "DICOM Instances Transferred"),
    Action.DELETE: ("110103", "DICOM Instances Accessed"),
    Action.LOGIN: ("110114", "User Authentication"),
    Action.SECURITY_ALERT: ("110113", "Security Alert"),
}
ALERT_NAMES = {"110132": "Use of Restricted Function", "110126": "Node Authentication"}


def to_fhir(record: AuditRecord, new_id: Callable[[], str] = events.new_id
            ) -> list[dict]:
    """One AuditEvent per patient touched (or one without a patient)."""
    return [_event(r, new_id()) for r in record.per_patient()]


def _event(r: AuditRecord, event_id: str) -> dict:
    interaction, action, client_role, server_role, user_role, balp = SHAPES[r.action]
    event: dict = {"resourceType": "AuditEvent", "id": event_id}
    profiles = _profiles(r, balp)
    if profiles:
        event["meta"] = {"profile": profiles}
    event["type"], subtypes = _types(r, interaction)
    if subtypes:
        event["subtype"] = subtypes
    event.update(action=action, recorded=instant(r.recorded), outcome=str(int(r.outcome)))
    if r.description:
        event["outcomeDesc"] = r.description
    if r.destination is not None:  # C-MOVE: the data goes to a third AE, not to the requestor
        agents = [_client(r, APPLICATION), _server(r, server_role),
                  _destination(r.destination)]
    else:
        agents = [_client(r, client_role), _server(r, server_role)]
    if r.who.has_user:
        agents.append(_user(r.who, user_role))
    event["agent"] = agents
    event["source"] = {"site": r.server.site, "observer": {"display": r.server.name},
                       "type": [{"system": SOURCE_TYPE, "code": "4",
                                 "display": "Application Server"}]}
    entities = _entities(r)
    if entities:
        event["entity"] = entities
    return event


def _types(r: AuditRecord, interaction: str | None) -> tuple[dict, list[dict]]:
    if r.action is Action.SECURITY_ALERT:
        code = (r.alert.value if r.alert else "110132")
        subtypes = [{"system": DCM, "code": code, "display": ALERT_NAMES[code]}]
        attempted = SHAPES[r.attempted][0] if r.attempted else None
        if attempted and r.face.restful:
            subtypes.append(_interaction(attempted))
        return _dicom_type(r.action), subtypes
    if r.action is Action.LOGIN:
        return _dicom_type(r.action), [{"system": DCM, "code": "110122", "display": "Login"}]
    if r.face.restful:
        return dict(REST), [_interaction(interaction)] if interaction else []
    return _dicom_type(r.action), []


def _dicom_type(action: Action) -> dict:
    code, display = DICOM_TYPES[action]
    return {"system": DCM, "code": code, "display": display}


def _interaction(code: str) -> dict:
    return {"system": RESTFUL, "code": code, "display": code}


def _profiles(r: AuditRecord, balp: str | None) -> list[str]:
    """BALP profiles fix outcome Success and cover RESTful interactions only."""
    if balp is None or r.outcome is not Outcome.SUCCESS or not r.face.restful:
        return []
    profiles = [PROFILE + ("Patient" + balp if r.patients else balp)]
    if r.who.has_user and r.who.jti:
        profiles.append(PROFILE + "OAUTHaccessTokenUse.Minimal")
    return profiles


def _client(r: AuditRecord, role: dict) -> dict:
    who = r.who
    agent: dict = {"type": {"coding": [role]},
                   "who": {"identifier": {"value": who.client_id or who.calling_ae
                                          or who.address or "unknown"}},
                   "requestor": not who.has_user}
    if who.calling_ae:
        agent["altId"] = f"AETITLES={who.calling_ae}"  # PS3.15 A.5.2.1
    if who.address:
        agent["network"] = network(who.address)
    return agent


def _server(r: AuditRecord, role: dict) -> dict:
    server = r.server
    agent: dict = {"type": {"coding": [role]}, "who": {"identifier": {"value": server.name}},
                   "requestor": False}
    if server.ae_title:
        agent["altId"] = f"AETITLES={server.ae_title}"
    address = server.address or urlsplit(server.name).hostname
    if address:
        agent["network"] = network(address)
    return agent


def _destination(dest: Actor) -> dict:
    agent: dict = {"type": {"coding": [DESTINATION]},
                   "who": {"identifier": {"value": dest.calling_ae or dest.address or "unknown"}},
                   "requestor": False}
    if dest.calling_ae:
        agent["altId"] = f"AETITLES={dest.calling_ae}"
    if dest.address:
        agent["network"] = network(dest.address)
    return agent


def _user(who: Actor, role: dict | None) -> dict:
    identifier = {"value": who.sub}
    if who.issuer:
        identifier["system"] = who.issuer
    agent: dict = {"type": {"coding": [c for c in (role, OAUTH_USER) if c]},
                   "who": {"identifier": identifier}, "requestor": True}
    if who.jti:
        agent["policy"] = [who.jti]  # BALP OAUTHaccessTokenUse.Minimal: the JWT ID
    return agent


def _entities(r: AuditRecord) -> list[dict]:
    entities = []
    if r.request_id:
        entities.append({"type": {"system": BALP_ENTITY, "code": "XrequestId"},
                         "what": {"identifier": {"value": r.request_id}}})
    if r.query is not None and r.action in (Action.QUERY, Action.SECURITY_ALERT, Action.LOGIN):
        query: dict = {"type": _entity_type("2", "System Object"),
                       "role": {"system": OBJECT_ROLE, "code": "24", "display": "Query"},
                       "query": base64.b64encode(r.query).decode()}
        if r.path:
            query["description"] = f"{r.method or ''} {r.path}".strip()
        entities.append(query)
    entities.extend(_data(r))
    if r.action is Action.SECURITY_ALERT and r.description:
        entities.append({"type": _entity_type("2", "System Object"),
                         "what": {"identifier": {"value": r.path or r.who.address or "-"}},
                         "detail": [{"type": "Alert Description", "valueString": r.description}]})
    for patient in r.patients:
        entities.append({"type": _entity_type("1", "Person"),
                         "role": {"system": OBJECT_ROLE, "code": "1", "display": "Patient"},
                         "what": {"reference": f"Patient/{patient}"}})
    return entities


def _data(r: AuditRecord) -> list[dict]:
    if r.action not in (Action.READ, Action.CREATE, Action.UPDATE, Action.DELETE):
        return []
    report = {"system": OBJECT_ROLE, "code": "3", "display": "Report"}
    resource = {"system": OBJECT_ROLE, "code": "4", "display": "Domain Resource"}
    data = [{"type": _entity_type("2", "System Object"), "role": report,
             "what": {"identifier": {"system": DICOM_UID, "value": f"urn:oid:{s.uid}"}}}
            for s in r.studies]
    data += [{"type": _entity_type("2", "System Object"), "role": resource,
              "what": {"reference": ref}} for ref in r.resources]
    if not data and r.path:
        data.append({"type": _entity_type("2", "System Object"), "role": resource,
                     "what": {"identifier": {"value": r.path}}})
    return data


def _entity_type(code: str, display: str) -> dict:
    return {"system": ENTITY_TYPE, "code": code, "display": display}


def network(address: str) -> dict:
    """R4 AuditEventAgentNetworkType: 2 = IP address, 1 = machine name."""
    return {"address": address, "type": "2" if is_ip(address) else "1"}


def instant(moment: dt.datetime) -> str:
    """FHIR instant in UTC with milliseconds."""
    return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")
