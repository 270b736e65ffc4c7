"""DIMSE operations as audit records (gateway/audit: IHE BALP AuditEvents, PS3.15 A.5).

C-FIND is a Query (110112) naming every patient in its matches; C-GET/C-MOVE are reads and
C-STORE a create (DICOM Instances Transferred 110104, one per patient); a refused operation
is a Security Alert (110113, Use of Restricted Function); a refused association a Security
Alert (Node Authentication) for its AE title or address, a User Authentication failure
(110114) for its identity. The raw C-FIND identifier is the query. C-ECHO is audited only
when refused. `record` only queues (gateway/audit/trail.py): never a request's cost or
failure.
"""
from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable
from typing import Any

from ..access.errors import AccessError, CallingAeRefused
from ..access.principal import ANONYMOUS, Principal
from ..archive.protocol import StoredInstance
from ..audit.events import Action, Actor, Alert, AuditRecord, Face, Outcome, Server, Study
from ..audit.trail import AuditTrail
from ..config import Settings

PATIENT_ID, STUDY_UID = "00100020", "0020000D"


class Auditor:
    """Builds the records of one SCP; `trail` None: auditing off (AUTH_MODE=off)."""

    def __init__(self, trail: AuditTrail | None, ae_title: str, address: str | None = None
                 ) -> None:
        self.trail = trail
        self.server = Server(name=ae_title, address=address, ae_title=ae_title)

    def _record(self, **fields: Any) -> None:
        if self.trail is not None:
            self.trail.record(AuditRecord(face=Face.DIMSE, server=self.server,
                                          request_id=uuid.uuid4().hex, **fields))

    def refused_association(self, exc: AccessError, calling: str, address: str | None,
                            tls: bool) -> None:
        who = Actor.of(ANONYMOUS, address=address, calling_ae=calling)
        note = f"{exc.description} ({'TLS' if tls else 'TCP'})"
        if isinstance(exc, CallingAeRefused):
            self._record(action=Action.SECURITY_ALERT, outcome=Outcome.MINOR_FAILURE, who=who,
                         alert=Alert.NODE_AUTHENTICATION, description=note,
                         method="A-ASSOCIATE")
        else:
            self._record(action=Action.LOGIN, outcome=Outcome.MINOR_FAILURE, who=who,
                         description=note, method="A-ASSOCIATE")

    def refused(self, who: Actor, method: str, attempted: Action, exc: AccessError,
                query: bytes | None = None, patient: str | None = None) -> None:
        """A refused operation; `patient`: whose instance a refused C-STORE carried."""
        self._record(action=Action.SECURITY_ALERT, outcome=Outcome.MINOR_FAILURE, who=who,
                     alert=Alert.RESTRICTED_FUNCTION, attempted=attempted, method=method,
                     description=exc.description, query=query,
                     patients=(patient,) if patient else ())

    def find(self, who: Actor, *, sop_class: str, query: bytes, syntax: str,
             matches: Iterable[dict], outcome: Outcome = Outcome.SUCCESS,
             description: str | None = None) -> None:
        studies, patients = [], []
        for match in matches:
            patient, study = _value(match, PATIENT_ID), _value(match, STUDY_UID)
            if study:
                studies.append(Study(study, patient))
            elif patient:
                patients.append(patient)
        self._record(action=Action.QUERY, outcome=outcome, who=who, method="C-FIND",
                     sop_class=sop_class, query=query, query_syntax=syntax,
                     studies=tuple(dict.fromkeys(studies)), patients=tuple(patients),
                     description=description)

    def transferred(self, who: Actor, method: str, instances: Iterable[StoredInstance],
                    patients: dict[str, str | None], *, destination: Actor | None = None,
                    outcome: Outcome = Outcome.SUCCESS, description: str | None = None,
                    action: Action = Action.READ) -> None:
        """C-GET / C-MOVE / C-STORE: `patients` maps study UID -> PatientID."""
        counts: dict[str, Counter] = {}
        for inst in instances:
            counts.setdefault(inst.study_uid, Counter())[inst.sop_class_uid] += 1
        studies = tuple(Study(uid, patients.get(uid), tuple(sorted(c.items())))
                        for uid, c in counts.items())
        self._record(action=action, outcome=outcome, who=who, method=method, studies=studies,
                     destination=destination, description=description)

    def stored(self, who: Actor, *, study: str, patient: str | None, sop_class: str,
               outcome: Outcome, description: str | None = None) -> None:
        self._record(action=Action.CREATE, outcome=outcome, who=who, method="C-STORE",
                     studies=(Study(study, patient, ((sop_class, 1),)),) if study else (),
                     patients=(patient,) if patient and not study else (),
                     description=description)


def actor(principal: Principal, calling_ae: str, address: str | None) -> Actor:
    return Actor.of(principal, address=address, calling_ae=calling_ae or None)


def _value(match: dict, tag: str) -> str | None:
    values = (match.get(tag) or {}).get("Value") or []
    return str(values[0]) if values and values[0] not in (None, "") else None


def open_trail(settings: Settings) -> AuditTrail | None:
    """The SCP process's audit trail: AuditEvents in the index database, A.5 messages to
    AUDIT_SYSLOG when set; None when access control is off and no syslog is named (the SCP
    as it always was: nothing written)."""
    from sqlalchemy import create_engine

    from ..audit.store import AuditStore
    from ..audit.syslog import SyslogSender
    syslog = str(getattr(settings, "audit_syslog", "") or "")
    on = (str(getattr(settings, "auth_mode", "off")) != "off" or settings.dimse_require_identity)
    if not on and not syslog:
        return None
    store = AuditStore(create_engine(settings.index_url))
    store.create()
    sender = (SyslogSender(syslog, ca_file=str(getattr(settings, "audit_syslog_tls_ca", "")))
              if syslog else None)
    return AuditTrail(store, sender)
