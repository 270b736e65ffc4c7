"""The audit trail every face writes to: FHIR AuditEvents into the store, PS3.15 A.5
messages to syslog. `record` never raises and never waits on the network: a store failure
or a dropped syslog message is logged and counted (`stats`), never silent."""
from __future__ import annotations

import logging
from dataclasses import dataclass

from .dicom import to_dicom_xml
from .events import AuditRecord
from .fhir import to_fhir
from .store import AuditStore
from .syslog import SyslogSender

log = logging.getLogger(__name__)


@dataclass
class TrailStats:
    records: int = 0
    stored: int = 0
    store_failures: int = 0
    encode_failures: int = 0


class AuditTrail:
    def __init__(self, store: AuditStore | None = None, sender: SyslogSender | None = None) -> None:
        self.store = store
        self.sender = sender
        self.stats = TrailStats()

    def record(self, record: AuditRecord) -> None:
        self.stats.records += 1
        try:
            events = to_fhir(record)
            messages = to_dicom_xml(record) if self.sender is not None else []
        except Exception:  # a bug in an encoder must not fail the request it describes
            self.stats.encode_failures += 1
            log.exception("audit: cannot encode %s %s (request %s)", record.face.value,
                          record.action.value, record.request_id)
            return
        if self.store is not None:
            try:
                self.stats.stored += self.store.append(events)
            except Exception:
                self.stats.store_failures += 1
                log.exception("audit: %d AuditEvents of request %s not stored", len(events),
                              record.request_id)
        for message in messages:
            self.sender.submit(message)  # type: ignore[union-attr]

    def close(self) -> None:
        if self.sender is not None:
            self.sender.close()
