"""Access errors with their protocol answers as data (RFC 6750 3.1, FHIR R4 IssueType, PS3.8).

Each class carries everything a face needs to answer in its own form: the HTTP status, the
RFC 6750 `error` code (None when the client sent no credentials at all: RFC 6750 3.1 says
"SHOULD NOT include an error code"), the FHIR OperationOutcome issue code, and the DIMSE
answer where one applies (an A-ASSOCIATE-RJ triple for association-level failures, a
status for operation-level ones). The description is public text: never a token.
"""
from __future__ import annotations

from typing import ClassVar

REALM = "tcia-gateway"

# PS3.8 9.3.4 A-ASSOCIATE-RJ (result, source, reason)
REJECT_NO_REASON = (1, 1, 1)            # permanent, service-user, no-reason-given
REJECT_CALLING_AE = (1, 1, 3)           # permanent, service-user, calling-AE-title-not-recognized
REJECT_TRANSIENT = (2, 1, 1)            # transient, service-user, no-reason-given
# PS3.7 C.5.2 / PS3.4 C.4: Refused: Not Authorized
STATUS_NOT_AUTHORISED = 0x0124


class AccessError(Exception):
    """Base of every authentication/authorisation failure."""

    status: ClassVar[int] = 401
    error: ClassVar[str | None] = None          # RFC 6750 3.1 error code
    fhir_code: ClassVar[str] = "security"       # R4 IssueType
    dimse_reject: ClassVar[tuple[int, int, int] | None] = None
    dimse_status: ClassVar[int | None] = None
    default_description: ClassVar[str] = "access denied"

    def __init__(self, description: str = "", *, scope: str | None = None) -> None:
        self.description = _header_text(description or self.default_description)
        self.scope = scope
        super().__init__(self.description)

    def www_authenticate(self, realm: str = REALM) -> str | None:
        """The RFC 6750 3 challenge, or None where none is sent (e.g. 503)."""
        if self.status not in (400, 401, 403):
            return None
        parts = [f'realm="{_header_text(realm)}"']
        if self.error:
            parts.append(f'error="{self.error}"')
            parts.append(f'error_description="{self.description}"')
        if self.scope:
            parts.append(f'scope="{_header_text(self.scope)}"')
        return "Bearer " + ", ".join(parts)

    def headers(self, realm: str = REALM) -> dict[str, str]:
        challenge = self.www_authenticate(realm)
        return {"WWW-Authenticate": challenge} if challenge else {}

    def as_dict(self) -> dict[str, object]:
        """The JSON reason a DICOMweb client gets (RFC 6750 names, plus the status)."""
        body: dict[str, object] = {"status": self.status,
                                   "error": self.error or "unauthorized",
                                   "error_description": self.description}
        if self.scope:
            body["scope"] = self.scope
        return body


class MissingCredentials(AccessError):
    """No credentials at all, or an authentication scheme other than Bearer (RFC 6750 3.1)."""

    status, error, fhir_code = 401, None, "login"
    dimse_reject = REJECT_NO_REASON
    default_description = "an access token is required"


class InvalidRequest(AccessError):
    """Malformed Authorization header, a token in the query or body, two transports at once."""

    status, error, fhir_code = 400, "invalid_request", "login"
    dimse_reject = REJECT_NO_REASON
    default_description = "malformed request for a protected resource"


class InvalidToken(AccessError):
    """Bad signature, wrong iss/aud/typ/alg, unknown key, not yet valid, inactive."""

    status, error, fhir_code = 401, "invalid_token", "login"
    dimse_reject = REJECT_NO_REASON
    default_description = "the access token is not valid"


class ExpiredToken(InvalidToken):
    """RFC 6750 3.1 invalid_token, told apart for FHIR clients (IssueType `expired`)."""

    fhir_code = "expired"
    default_description = "the access token expired"


class InsufficientScope(AccessError):
    """The token is valid but its scopes do not cover the operation (RFC 6750 3.1)."""

    status, error, fhir_code = 403, "insufficient_scope", "forbidden"
    dimse_status = STATUS_NOT_AUTHORISED
    default_description = "the access token does not grant this operation"


class ServiceNotPermitted(AccessError):
    """A DIMSE service the calling AE may not use (DIMSE_AE_PERMISSIONS)."""

    status, error, fhir_code = 403, "insufficient_scope", "forbidden"
    dimse_status = STATUS_NOT_AUTHORISED
    default_description = "this AE title may not use this service"


class CallingAeRefused(AccessError):
    """The calling AE title is not allowed to associate at all."""

    status, error, fhir_code = 403, None, "forbidden"
    dimse_reject = REJECT_CALLING_AE
    default_description = "calling AE title not recognised"


class IdentityRefused(AccessError):
    """User Identity negotiation missing, of a refused type, or not over TLS (PS3.7 D.3.3.7)."""

    status, error, fhir_code = 401, "invalid_request", "login"
    dimse_reject = REJECT_NO_REASON
    default_description = "user identity refused"


class IssuerUnavailable(AccessError):
    """The issuer's keys or introspection endpoint cannot be reached: the token may be fine."""

    status, error, fhir_code = 503, None, "transient"
    dimse_reject = REJECT_TRANSIENT
    default_description = "the token issuer cannot be reached; try again later"


def _header_text(text: str) -> str:
    """RFC 6750 3: error_description and scope use %x20-21 / %x23-5B / %x5D-7E only."""
    cleaned = "".join(c if 0x20 <= ord(c) <= 0x7E and c not in '"\\' else "'" if c == '"' else " "
                      for c in text)
    return cleaned[:300]
