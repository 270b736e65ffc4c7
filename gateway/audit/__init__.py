"""Audit: one event model for every face (`events`), encoded as FHIR AuditEvents following
IHE BALP (`fhir`) and as DICOM PS3.15 A.5 messages (`dicom`), kept append-only in the index
(`store`) and sent to a syslog collector (`syslog`, RFC 5424/6587/5425). `trail.AuditTrail`
ties them together. Nothing here imports Flask."""
from __future__ import annotations

from .events import Action, Actor, Alert, AuditRecord, Face, Outcome, Server, Study

__all__ = ["Action", "Actor", "Alert", "AuditRecord", "Face", "Outcome", "Server", "Study"]
