"""What a SMART client reads before it asks for a token: `/.well-known/smart-configuration`
(SMART App Launch 2.x, 2.0.0 "Conformance") and the CapabilityStatement's `rest.security`
(SMART-on-FHIR service coding, the oauth-uris extension). Endpoints come from the issuer's
own OpenID discovery document (AUTH_ISSUER), so they are the ones tokens are minted by."""
from __future__ import annotations

from typing import Any

from ..access import AccessError, Policy

SERVICE = "http://terminology.hl7.org/CodeSystem/restful-security-service"
OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
CAPABILITIES = ["launch-standalone", "client-public", "client-confidential-symmetric",
                "context-standalone-patient", "permission-patient", "permission-user",
                "permission-v1", "permission-v2", "sso-openid-connect",
                "smart-imaging-access"]  # SMART Imaging Access 0.1.0: ImagingStudy served here
SCOPES = ["openid", "fhirUser", "launch/patient", "offline_access", "patient/*.rs",
          "user/*.rs", "system/*.rs", "patient/ImagingStudy.rs", "patient/ImagingStudy.c",
          "user/AuditEvent.rs", "system/AuditEvent.rs"]
DESCRIPTION = ("OAuth 2.0 bearer tokens (RFC 6750) from the issuer named in "
               "/.well-known/smart-configuration, RFC 9068 JWTs with SMART App Launch 2.x "
               "scopes (v2, and v1 read/write). DICOM operations count as ImagingStudy "
               "(QIDO s, retrievals r, STOW c). A patient/ token sees its patient's "
               "compartment only.")


def issuer_metadata(policy: Policy) -> dict[str, Any]:
    """The issuer's discovery document; {} when it cannot be had (the issuer is down, or
    tokens are introspected without an issuer)."""
    jwks = policy.validator.jwks if policy.validator is not None else None
    if jwks is None:
        return {}
    try:
        return jwks.metadata()
    except AccessError:
        return {}


def configuration(policy: Policy) -> dict[str, Any]:
    meta = issuer_metadata(policy)
    validator = policy.validator
    issuer = validator.issuer if validator is not None else ""
    doc: dict[str, Any] = {"issuer": meta.get("issuer", issuer)}
    for key in ("jwks_uri", "authorization_endpoint", "token_endpoint", "introspection_endpoint",
                "revocation_endpoint", "registration_endpoint", "userinfo_endpoint"):
        if meta.get(key):
            doc[key] = meta[key]
    doc["grant_types_supported"] = meta.get("grant_types_supported",
                                            ["authorization_code", "client_credentials"])
    doc["token_endpoint_auth_methods_supported"] = meta.get(
        "token_endpoint_auth_methods_supported", ["client_secret_basic", "private_key_jwt"])
    doc["scopes_supported"] = SCOPES
    doc["response_types_supported"] = ["code"]
    doc["code_challenge_methods_supported"] = ["S256"]
    doc["capabilities"] = CAPABILITIES
    return doc


def security(policy: Policy | None) -> dict[str, Any] | None:
    """CapabilityStatement.rest.security; None when AUTH_MODE=off (nothing to say)."""
    if policy is None:
        return None
    meta = issuer_metadata(policy)
    uris = [{"url": name, "valueUri": meta[key]}
            for name, key in (("authorize", "authorization_endpoint"), ("token", "token_endpoint"),
                              ("introspect", "introspection_endpoint"),
                              ("revoke", "revocation_endpoint")) if meta.get(key)]
    block: dict[str, Any] = {
        "cors": True,
        "service": [{"coding": [{"system": SERVICE, "code": "SMART-on-FHIR",
                                 "display": "SMART-on-FHIR"}],
                     "text": "OAuth2 using SMART-on-FHIR profile (see http://docs.smarthealthit.org)"}],
        "description": DESCRIPTION + f" Mode: {policy.mode.value}."}
    if uris:
        block["extension"] = [{"url": OAUTH_URIS, "extension": uris}]
    return block
