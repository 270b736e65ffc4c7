"""Who may associate with the SCP and what each association may do (docs/security.md, DIMSE).

At association time (`EVT_REQUESTED`, before pynetdicom negotiates anything): the calling
AE title (DIMSE_ALLOWED_AES) and the peer's address (DIMSE_PEER_HOSTS), refused with
A-ASSOCIATE-RJ (1, 1, 3); then the User Identity (PS3.7 D.3.3.7) by
`gateway.access.dimse.decide_identity`, refused with (1, 1, 1). pynetdicom accepts an
association without an identity item silently and answers a failed identity with (2, 2, 1),
so the gate decides both itself. Per operation: the AE's services (DIMSE_AE_PERMISSIONS) and
the token's scopes (ImagingStudy `s`/`r`/`c`), refused with status 0x0124; a `patient/`
token narrows the archive to its compartment (`Archive.scoped`).
"""
from __future__ import annotations

import logging
import threading
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pynetdicom.association import Association
from pynetdicom.pdu_primitives import UserIdentityNegotiation

from ..access import AccessSettings, build_policy, build_validator
from ..access.dimse import (IdentityOffer, PeerHosts, Service, check_service, decide_identity,
                            parse_ae_permissions, parse_peer_hosts)
from ..access.errors import (REJECT_NO_REASON, AccessError, CallingAeRefused,
                             MissingCredentials)
from ..access.policy import AuthMode, Policy
from ..access.principal import ANONYMOUS, Principal
from ..access.scopes import DicomOp
from ..access.settings import startup_problems
from ..archive.protocol import Archive
from ..archive.scope import Scope
from ..config import Settings, SettingsError
from .auditing import Auditor

if TYPE_CHECKING:
    from ..access.validator import TokenValidator

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Session:
    """One admitted association: who, from where, over what."""

    principal: Principal
    calling_ae: str
    address: str | None
    tls: bool


OPEN = Session(ANONYMOUS, "", None, False)


def access_settings(settings: Settings) -> AccessSettings:
    """The access settings of `Settings` (AUTH_MODE=requried is a ValueError)."""
    return AccessSettings.of(settings)


def dimse_problems(settings: Settings, bind: str | None = None) -> list[str]:
    """Why `dimse` must refuse to start (empty: fine). A TLS listener that requires client
    certificates (DIMSE_TLS_CA) authenticates its peers, so only the others count as open."""
    access = access_settings(settings)
    binds = [bind or settings.dimse_bind]
    if settings.dimse_tls_bind and not settings.dimse_tls_ca:
        binds.append(settings.dimse_tls_bind)
    problems = [p for p in startup_problems(access, binds=binds) if "CORS" not in p]
    if access.auth_mode == "off" and settings.dimse_require_identity and not (
            access.auth_issuer or access.auth_introspection_url):
        problems.append("DIMSE_REQUIRE_IDENTITY needs AUTH_ISSUER (or AUTH_INTROSPECTION_URL) "
                        "to check the identities")
    for name, parse in (("dimse_ae_permissions", parse_ae_permissions),
                        ("dimse_peer_hosts", parse_peer_hosts)):
        try:
            parse(getattr(settings, name))
        except ValueError as exc:
            problems.append(str(exc))
    return problems


class Gate:
    """The SCP's access decisions; one per process, shared by the plain and TLS listeners."""

    def __init__(self, settings: Settings, auditor: Auditor, *,
                 policy: Policy | None = None, validator: TokenValidator | None = None) -> None:
        self.policy = policy or Policy()
        self.validator = validator or self.policy.validator
        self.required = settings.dimse_require_identity
        self.auditor = auditor
        self.called_ae = settings.ae_title.strip()
        self.allowed = [x.strip() for x in settings.dimse_allowed_aes.split(",") if x.strip()]
        self.hosts: PeerHosts = parse_peer_hosts(settings.dimse_peer_hosts)
        self.permissions = parse_ae_permissions(settings.dimse_ae_permissions)
        # C-STORE may replace a stored instance only under DUPLICATE_POLICY=overwrite: there
        # it asks for `u` as well as `c`, as STOW does (docs/security.md)
        self.replaces = settings.duplicate_policy == "overwrite"
        self._sessions: weakref.WeakKeyDictionary[Association, Session] = (
            weakref.WeakKeyDictionary())
        self._lock = threading.Lock()

    @classmethod
    def build(cls, settings: Settings, auditor: Auditor) -> Gate:
        """The policy and validator AUTH_* names; a validator also when only
        DIMSE_REQUIRE_IDENTITY asks for identities."""
        access = access_settings(settings)
        try:
            policy = build_policy(access, settings.public_url)
        except ValueError as exc:
            raise SettingsError(str(exc)) from exc
        validator = policy.validator
        if validator is None and settings.dimse_require_identity:
            validator = build_validator(access, settings.public_url)
        return cls(settings, auditor, policy=policy, validator=validator)

    # ---------------------------------------------------------------- association
    def on_requested(self, event: Any, tls: bool) -> None:
        """EVT_REQUESTED: admit the association or send A-ASSOCIATE-RJ."""
        assoc = event.assoc
        if not assoc.is_acceptor:
            return
        rq = assoc.requestor
        calling = str(rq.primitive.calling_ae_title).strip()
        address = str(rq.address) if rq.address else None
        offer = (IdentityOffer.from_pynetdicom(rq.user_identity)
                 if rq.user_identity is not None else None)
        try:
            principal = self._admit(calling, str(rq.primitive.called_ae_title).strip(),
                                    address, offer, tls)
        except AccessError as exc:
            self.auditor.refused_association(exc, calling, address, tls)
            log.info("DIMSE association from %s@%s refused: %s", calling, address, exc)
            assoc.acse.send_reject(*(exc.dimse_reject or REJECT_NO_REASON))
            assoc.kill()
            return
        with self._lock:
            self._sessions[assoc] = Session(principal, calling, address, tls)
        if offer is not None and offer.positive_response_requested and not principal.anonymous:
            response = UserIdentityNegotiation()  # PS3.7 D.3.3.7.2: empty server response
            response.server_response = b""
            assoc.acceptor.add_negotiation_item(response)

    def _admit(self, calling: str, called: str, address: str | None,
               offer: IdentityOffer | None, tls: bool) -> Principal:
        if called != self.called_ae:
            raise _CalledAeRefused(f"called AE {called!r} is not {self.called_ae!r}")
        if self.allowed and calling not in self.allowed:
            raise CallingAeRefused(f"calling AE {calling!r} is not in DIMSE_ALLOWED_AES")
        if not self.hosts.admits(calling, address or ""):
            raise CallingAeRefused(f"calling AE {calling!r} may not connect from {address}")
        if self.validator is None:
            return ANONYMOUS  # AUTH_MODE=off: identities are not even looked at
        principal = decide_identity(offer, tls=tls, required=self.required,
                                    validate=self.validator.principal)
        if principal.anonymous and self.policy.mode is AuthMode.REQUIRED:
            raise MissingCredentials("AUTH_MODE=required: send a User Identity (a JWT)")
        return principal

    def session(self, assoc: Association) -> Session:
        with self._lock:
            return self._sessions.get(assoc, OPEN)

    # ---------------------------------------------------------------- operations
    def check(self, assoc: Association, service: Service) -> Session:
        """May this association's AE use `service` (DIMSE_AE_PERMISSIONS)? Else 0x0124."""
        session = self.session(assoc)
        check_service(self.permissions, session.calling_ae or _calling(assoc), service)
        return session

    def enter(self, assoc: Association, service: Service, op: DicomOp,
              archive: Archive, *, replaces: bool = False) -> tuple[Session, Archive, Scope]:
        """May this association use `service`? The archive as its token sees it, or an
        `AccessError` whose `dimse_status` is 0x0124."""
        session = self.check(assoc, service)
        try:
            permit = self.policy.authorize_dicom(session.principal, op, replaces=replaces)
        except MissingCredentials as exc:  # an anonymous association: a DIMSE refusal
            raise _NotAuthorised(exc.description) from None
        patients = frozenset({permit.patient}) if permit.patient is not None else None
        scope = Scope(patients=patients, hidden=self.policy.hidden_collections(session.principal))
        if scope.unrestricted:
            return session, archive, scope
        try:
            return session, archive.scoped(scope), scope
        except NotImplementedError:  # a backend that cannot narrow: refuse, never widen
            raise _NotAuthorised("this archive cannot serve a patient compartment") from None


    @staticmethod
    def outside(patient: str | None) -> AccessError:
        """The refusal of an instance outside the token's compartment (PS3.4 B.2.3: 0x0124)."""
        del patient  # never echoed: the answer must not depend on whose it is
        return _NotAuthorised("the instance is outside the token's patient compartment")


class _CalledAeRefused(CallingAeRefused):
    """PS3.8 9.3.2: the called AE title must be ours."""

    dimse_reject = (1, 1, 7)  # permanent, service-user, called-AE-title-not-recognized
    default_description = "called AE title not recognised"


class _NotAuthorised(AccessError):
    status, error, fhir_code = 403, "insufficient_scope", "forbidden"
    dimse_status = 0x0124
    default_description = "not authorised"


def _calling(assoc: Association) -> str:
    return str(assoc.requestor.ae_title or "").strip()
