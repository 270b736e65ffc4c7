"""The resource-server core against a real OpenID provider (panva's oidc-provider 8.8.1).

Its RFC 9068 JWT access tokens validate through discovery and the published JWKS and give
the principal and the policy decisions each client should get; its opaque tokens go
through RFC 7662 introspection (client gateway/gateway-secret) with a decision cache that
lets a revocation take effect within the cache TTL; its id_token is refused as an access
token; a key rotation on the running provider is followed without restart.
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from gateway.access import (
    AccessSettings,
    InsufficientScope,
    InvalidToken,
    IssuerUnavailable,
    JwksCache,
    MissingCredentials,
    TokenValidator,
    build_policy,
    build_validator,
)
from gateway.access.bearer import bearer_token
from gateway.access.introspection import Introspector
from gateway.access.scopes import DicomOp
from tests.support.oidc_flow import authorization_code
from tests.support.oidc_idp import OidcProvider, start_oidc


class Clock:
    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def idp(oidc_idp: OidcProvider) -> OidcProvider:
    """The session's provider (tests/conftest.py): patients TEST-PATIENT-A and -B."""
    return oidc_idp


PAT_A, PAT_B = "TEST-PATIENT-A", "TEST-PATIENT-B"


def settings(idp: OidcProvider, **extra: object) -> AccessSettings:
    return AccessSettings(auth_mode="required", auth_issuer=idp.issuer,
                          auth_audience=idp.audience, auth_restricted_collections="LIDC", **extra)


def test_jwt_access_tokens_of_each_client(idp: OidcProvider) -> None:
    policy = build_policy(settings(idp), public_url="http://unused.test/")
    a = policy.authenticate(bearer_token("Bearer " + idp.token("patient-a", "patient/*.rs")))
    assert (a.sub, a.client_id, a.patient, a.source) == ("patient-a", "patient-a", PAT_A, "jwt")
    assert a.issuer == idp.issuer and a.jti
    assert policy.authorize_dicom(a, DicomOp.QIDO).patient == PAT_A
    with pytest.raises(InsufficientScope) as info:
        policy.authorize_dicom(a, DicomOp.STOW)
    assert info.value.scope == "patient/ImagingStudy.c"
    b = policy.authenticate(idp.token("patient-b", "patient/ImagingStudy.rs"))
    assert policy.authorize_dicom(b, DicomOp.WADO).patient == PAT_B
    clinician = policy.authenticate(idp.token("clinician", "user/ImagingStudy.rs user/ImagingStudy.c"))
    assert policy.authorize_dicom(clinician, DicomOp.C_STORE).unrestricted
    assert not policy.collection_visible(clinician, "LIDC")  # no collections claim here
    backend = policy.authenticate(idp.token("backend", "system/AuditEvent.rs"))
    assert policy.authorize(backend, "AuditEvent", "s").unrestricted
    with pytest.raises(InsufficientScope) as info:
        policy.authorize_dicom(backend, DicomOp.QIDO)
    assert info.value.scope == "system/ImagingStudy.s"
    with pytest.raises(MissingCredentials):
        policy.authenticate(bearer_token(None))


def test_granular_and_v1_scopes_from_the_provider(idp: OidcProvider) -> None:
    policy = build_policy(settings(idp), public_url="http://unused.test/")
    lab = "http://terminology.hl7.org/CodeSystem/observation-category|laboratory"
    p = policy.authenticate(idp.token("patient-a", f"patient/Observation.rs?category={lab}"))
    permit = policy.authorize(p, "Observation", "s")
    assert permit.patient == PAT_A and permit.categories == {lab}
    with pytest.raises(InsufficientScope):
        policy.authorize(p, "Observation", "r", ["http://terminology.hl7.org/CodeSystem/observation-category|vital-signs"])
    v1 = policy.authenticate(idp.token("clinician", "user/ImagingStudy.read"))
    assert policy.authorize_dicom(v1, DicomOp.THUMBNAIL).unrestricted
    with pytest.raises(InsufficientScope):
        policy.authorize_dicom(v1, DicomOp.STOW)


def test_an_id_token_is_not_an_access_token(idp: OidcProvider) -> None:
    answer = authorization_code(idp, "viewer", "user/ImagingStudy.rs", login="dora")
    validator = build_validator(settings(idp), public_url="http://unused.test/")
    assert validator.principal(answer["access_token"]).sub == "dora"
    with pytest.raises(InvalidToken, match="is not at\\+jwt"):
        validator.principal(answer["id_token"])


def test_restricted_collections_from_a_claim(artifacts_dir: Path) -> None:
    provider = start_oidc(artifacts_dir / "logs",
                          client_claims={"clinician": {"collections": ["LIDC"]}})
    try:
        policy = build_policy(settings(provider), public_url="http://unused.test/")
        clinician = policy.authenticate(provider.token("clinician", "user/ImagingStudy.rs"))
        backend = policy.authenticate(provider.token("backend", "system/ImagingStudy.rs"))
        assert clinician.collections == {"LIDC"} and policy.collection_visible(clinician, "LIDC")
        assert not policy.collection_visible(backend, "LIDC")
        assert policy.hidden_collections(backend) == {"LIDC"}
    finally:
        provider.close()


def test_opaque_tokens_by_introspection_with_a_decision_cache(idp: OidcProvider) -> None:
    clock = Clock(time.time())
    introspector = Introspector(idp.endpoint("introspection_endpoint"), "gateway", "gateway-secret",
                                audience=idp.audience, issuer=idp.issuer, ttl=30, clock=clock)
    validator = TokenValidator(idp.issuer, idp.audience, introspector=introspector)
    token = idp.token("patient-a", "patient/ImagingStudy.rs", opaque=True)
    p = validator.principal(token)
    assert (p.source, p.client_id, p.patient, p.scopes) == (
        "introspection", "patient-a", PAT_A, ("patient/ImagingStudy.rs",))
    assert validator.principal(token) is p and introspector.calls == 1  # cached
    idp.revoke(token, "patient-a")
    assert validator.principal(token) is p  # still within the 30 s decision cache
    clock.now += 31
    with pytest.raises(InvalidToken, match="not active"):
        validator.principal(token)
    with pytest.raises(InvalidToken, match="not active"):
        validator.principal(token)  # the negative answer is cached too
    assert introspector.calls == 2
    with pytest.raises(InvalidToken, match="not active"):
        validator.principal("made-up-opaque-token")


def test_introspection_found_through_discovery(idp: OidcProvider) -> None:
    validator = build_validator(settings(idp, auth_client_id="gateway",
                                         auth_client_secret="gateway-secret"),
                                public_url="http://unused.test/")
    token = idp.token("clinician", "user/ImagingStudy.rs", opaque=True)
    assert validator.principal(token).client_id == "clinician"
    assert validator.principal(idp.token("clinician", "user/ImagingStudy.rs")).source == "jwt"


def test_wrong_introspection_credentials_are_503_not_invalid_token(idp: OidcProvider) -> None:
    validator = build_validator(settings(idp, auth_client_id="gateway",
                                         auth_client_secret="wrong"),
                                public_url="http://unused.test/")
    with pytest.raises(IssuerUnavailable, match="HTTP 401") as info:
        validator.principal(idp.token("clinician", "user/ImagingStudy.rs", opaque=True))
    assert info.value.status == 503


def test_key_rotation_on_a_running_provider(artifacts_dir: Path) -> None:
    provider = start_oidc(artifacts_dir / "logs")
    try:
        clock = Clock(1000.0)
        jwks = JwksCache(provider.issuer, max_age=300, min_refresh_interval=15, clock=clock)
        validator = TokenValidator(provider.issuer, provider.audience, jwks=jwks)
        before = provider.token("backend", "system/*.rs")
        assert validator.principal(before).sub == "backend"
        provider.rotate()
        after = provider.token("backend", "system/*.rs")
        clock.now += 16
        assert validator.principal(after).sub == "backend"  # new kid: one refresh, no restart
        assert validator.principal(provider.token("backend", "system/*.rs")).sub == "backend"
        provider.retire_old_keys()
        clock.now += 301
        with pytest.raises(InvalidToken, match="unknown signing key"):
            validator.principal(before)
        assert validator.principal(after).sub == "backend"
        assert jwks.fetches == 3
    finally:
        provider.close()
