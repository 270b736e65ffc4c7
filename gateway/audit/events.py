"""One audit event model for every face (DICOMweb, WADO-URI, FHIR, DIMSE).

An `AuditRecord` says who (sub, client_id, AE titles, address), what (action, resources,
studies, the raw query), which patients, the outcome (PS3.15 A.5 / FHIR AuditEvent codes
0/4/8/12, denials included), when and under which request id. The encoders
(`fhir.py`, `dicom.py`) turn one record into one message per patient where the target
format asks for that (IHE BALP PatientQuery: one AuditEvent per patient in a result).

A record never holds a token: the caller is identified by `sub`, `client_id`, `jti` and
the token's digest, and `redact_query` removes `access_token` parameters from raw queries.
"""
from __future__ import annotations

import copy
import datetime as dt
import enum
import functools
import ipaddress
import random
import re
from dataclasses import dataclass, field
from urllib.parse import unquote_to_bytes

from ..access.principal import Principal


class Action(str, enum.Enum):
    QUERY = "query"                    # QIDO, C-FIND, FHIR search
    READ = "read"                      # WADO-RS/URI, rendered, thumbnail, bulkdata, C-GET/C-MOVE, FHIR read
    CREATE = "create"                  # STOW, C-STORE, FHIR create
    UPDATE = "update"                  # a replacement (overwrite policy), FHIR update
    DELETE = "delete"
    LOGIN = "login"                    # a token was checked (failures are what get audited)
    SECURITY_ALERT = "security-alert"  # a denial: scope, compartment, AE, TLS, identity


class Outcome(enum.IntEnum):
    """PS3.15 A.5.1 EventOutcomeIndicator = FHIR R4 AuditEventOutcome."""

    SUCCESS = 0
    MINOR_FAILURE = 4     # e.g. a refused request: nothing served, nothing harmed
    SERIOUS_FAILURE = 8   # the action was terminated prematurely (server error)
    MAJOR_FAILURE = 12    # the action was made unavailable


class Face(str, enum.Enum):
    DICOMWEB = "dicomweb"
    WADO_URI = "wado-uri"
    FHIR = "fhir"
    DIMSE = "dimse"

    @property
    def restful(self) -> bool:
        return self is not Face.DIMSE


class Alert(str, enum.Enum):
    """DCID 403 Security Alert Type Codes the gateway raises."""

    RESTRICTED_FUNCTION = "110132"    # Use of Restricted Function: scope, compartment, AE service
    NODE_AUTHENTICATION = "110126"    # Node Authentication: AE title, TLS, association identity


@dataclass(frozen=True)
class Actor:
    """The requesting side: the user (sub) through an app (client_id) at an address / AE."""

    sub: str | None = None
    client_id: str | None = None
    issuer: str | None = None
    jti: str | None = None
    token_hash: str | None = None
    address: str | None = None
    calling_ae: str | None = None

    @classmethod
    def of(cls, principal: Principal, *, address: str | None = None,
           calling_ae: str | None = None) -> Actor:
        return cls(principal.sub, principal.client_id, principal.issuer, principal.jti,
                   principal.token_hash, address, calling_ae)

    @property
    def has_user(self) -> bool:
        return self.sub is not None


@dataclass(frozen=True)
class Server:
    """The gateway as a participant: its public URL or AE title, its network address."""

    name: str = "tcia-gateway"
    address: str | None = None
    ae_title: str | None = None
    site: str = "tcia-gateway"


@dataclass(frozen=True)
class Study:
    """A study touched, with the patient it belongs to and what of it was touched."""

    uid: str
    patient: str | None = None
    sop_classes: tuple[tuple[str, int], ...] = ()  # (SOP Class UID, number of instances)


@dataclass(frozen=True)
class AuditRecord:
    action: Action
    face: Face
    outcome: Outcome = Outcome.SUCCESS
    who: Actor = field(default_factory=Actor)
    server: Server = field(default_factory=Server)
    recorded: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    request_id: str | None = None
    method: str | None = None            # GET / POST / C-FIND / C-GET ...
    path: str | None = None              # /dicomweb/studies, /fhir/Patient/X ...
    query: bytes | None = None           # the raw query: URL query string or C-FIND identifier
    query_syntax: str | None = None      # transfer syntax of a DICOM-encoded query
    sop_class: str | None = None         # the Q/R information model of a C-FIND
    resources: tuple[str, ...] = ()      # FHIR references, e.g. ("Observation/o1",)
    studies: tuple[Study, ...] = ()
    patients: tuple[str, ...] = ()       # every patient touched (searched, read, written)
    description: str | None = None       # outcome text (the error description of a denial)
    alert: Alert | None = None           # SECURITY_ALERT only
    attempted: Action | None = None      # SECURITY_ALERT / LOGIN: what was being attempted
    destination: Actor | None = None     # C-MOVE: the AE the instances were sent to

    def __post_init__(self) -> None:
        if self.recorded.tzinfo is None:
            raise ValueError("AuditRecord.recorded must be timezone-aware")
        if self.query is not None:
            object.__setattr__(self, "query", redact_query(self.query))
        patients = list(dict.fromkeys([*self.patients, *(s.patient for s in self.studies
                                                         if s.patient)]))
        object.__setattr__(self, "patients", tuple(patients))

    def per_patient(self) -> list[AuditRecord]:
        """One record per patient touched (IHE BALP PatientQuery), or just this one."""
        if len(self.patients) <= 1:
            return [self]
        return [self._narrowed(p) for p in self.patients]

    def _narrowed(self, patient: str) -> AuditRecord:
        # A copy without __post_init__: the fields are already normalised and redacted.
        clone = copy.copy(self)
        object.__setattr__(clone, "patients", (patient,))
        object.__setattr__(clone, "studies", tuple(s for s in self.studies
                                                   if s.patient in (patient, None)))
        return clone


_SEPARATORS = re.compile(rb"([&;])")
REDACTED = b"[redacted]"


def redact_query(raw: bytes) -> bytes:
    """Replace the value of every `access_token` parameter (RFC 6750 2.3) of a URL query,
    however its name is percent-encoded; anything else is kept byte for byte."""
    if b"token" not in raw.lower() and b"%" not in raw:
        return raw
    parts = _SEPARATORS.split(raw)
    for i in range(0, len(parts), 2):
        name, eq, _ = parts[i].partition(b"=")
        if eq and _param_name(name) == b"access_token":
            parts[i] = name + b"=" + REDACTED
    return b"".join(parts)


def _param_name(name: bytes) -> bytes:
    return unquote_to_bytes(name.replace(b"+", b" ")).strip().lstrip(b"?").lower()


def new_id() -> str:
    """A random version-4 UUID for ids that need uniqueness, not secrecy (AuditEvent ids,
    request ids): the Mersenne Twister, reseeded in every forked worker, instead of
    `uuid.uuid4()`, whose getrandom() call measured ~2 ms on the shared CI machines."""
    h = "%032x" % ((random.getrandbits(128) & _V4_CLEAR) | _V4_SET)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_V4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_V4_SET = (0x4000 << 64) | (0x8000 << 48)


@functools.lru_cache(maxsize=4096)
def is_ip(address: str) -> bool:
    """An IP address (v4, or v6 with or without brackets), not a host name."""
    try:
        ipaddress.ip_address(address.strip("[]"))
        return True
    except ValueError:
        return False
