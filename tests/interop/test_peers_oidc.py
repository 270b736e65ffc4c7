"""The test identity provider (oidc-provider 8.8.1) issues what the gateway will verify.

Proves the peer, not the gateway: RFC 9068 JWT access tokens for the gateway's audience with
SMART scopes and the `patient` claim, verified with PyJWT against the published JWKS; RFC 7662
introspection; RFC 7009 revocation; an authorization-code + PKCE flow through the login and
consent pages; key rotation on the same port.
"""
from __future__ import annotations

import re
from pathlib import Path

import jwt
import pytest
import requests

from tests.support.oidc_flow import authorization_code
from tests.support.oidc_idp import OidcProvider, start_oidc
from tests.support.tokens import unverified

CALLBACK = "http://127.0.0.1:9/viewer/callback"


def verify(provider: OidcProvider, token: str) -> dict:
    """What a resource server does: key by kid from jwks_uri, RS256 only, iss and aud exact."""
    key = jwt.PyJWKClient(provider.endpoint("jwks_uri"), cache_jwk_set=False)
    signing = key.get_signing_key_from_jwt(token)
    return jwt.decode(token, signing.key, algorithms=["RS256"], audience=provider.audience,
                      issuer=provider.issuer, options={"require": ["exp", "iat", "iss", "aud"]})


@pytest.fixture(scope="module")
def idp(artifacts_dir: Path):
    """Its own provider: a browser redirect URI, a `collections` claim, a login with a patient."""
    provider = start_oidc(artifacts_dir / "logs", patient_a="COVID-19-AR-1", patient_b="COVID-19-AR-2",
                          redirect_uris=[CALLBACK],
                          client_claims={"clinician": {"collections": ["COVID-19-AR", "LIDC"]}},
                          account_claims={"pat-login": {"patient": "COVID-19-AR-1"}})
    yield provider
    provider.close()


def test_client_credentials_token_is_an_rfc9068_jwt_for_the_gateway(idp: OidcProvider) -> None:
    token = idp.token("patient-a", "patient/ImagingStudy.rs patient/Observation.rs user/*.cruds")
    header, _ = unverified(token)
    assert header["typ"] == "at+jwt" and header["alg"] == "RS256"
    assert header["kid"] in [k["kid"] for k in idp.published_jwks()["keys"]]
    claims = verify(idp, token)
    assert claims["iss"] == idp.issuer and claims["aud"] == idp.audience
    # a patient/ client is never granted user/ scopes, whatever it asks for
    assert claims["scope"].split() == ["patient/ImagingStudy.rs", "patient/Observation.rs"]
    assert claims["patient"] == "COVID-19-AR-1"
    assert claims["client_id"] == claims["sub"] == "patient-a"
    assert 0 < claims["exp"] - claims["iat"] <= 600


def test_each_client_gets_its_own_context_and_claims(idp: OidcProvider) -> None:
    b = verify(idp, idp.token("patient-b", "patient/*.rs system/*.cruds"))
    assert b["patient"] == "COVID-19-AR-2" and b["scope"] == "patient/*.rs"
    clinician = verify(idp, idp.token("clinician", "user/*.cruds user/AuditEvent.rs"))
    assert clinician["scope"] == "user/*.cruds user/AuditEvent.rs"
    assert clinician["collections"] == ["COVID-19-AR", "LIDC"] and "patient" not in clinician
    granular = "user/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory"
    assert verify(idp, idp.token("clinician", granular))["scope"] == granular
    backend = verify(idp, idp.token("backend", "system/AuditEvent.rs system/ImagingStudy.c"))
    assert backend["scope"] == "system/AuditEvent.rs system/ImagingStudy.c"
    assert "scope" not in verify(idp, idp.token("backend", "patient/*.rs"))


def test_token_endpoint_errors(idp: OidcProvider) -> None:
    bad_secret = requests.post(idp.endpoint("token_endpoint"), auth=("backend", "wrong"),
                               data={"grant_type": "client_credentials"}, timeout=10)
    assert bad_secret.status_code == 401 and bad_secret.json()["error"] == "invalid_client"
    other_api = idp.token_response("backend", "system/*.rs", resource="http://other.test/")
    assert other_api.status_code == 400 and other_api.json()["error"] == "invalid_target"


def test_introspection_and_revocation_of_an_opaque_token(idp: OidcProvider) -> None:
    token = idp.token("patient-a", "patient/ImagingStudy.rs", opaque=True)
    assert token.count(".") == 0  # opaque, not a JWS
    answer = idp.introspect(token)
    assert answer["active"] is True and answer["aud"] == idp.audience
    assert answer["patient"] == "COVID-19-AR-1" and answer["scope"] == "patient/ImagingStudy.rs"
    assert answer["client_id"] == "patient-a" and answer["iss"] == idp.issuer
    idp.revoke(token, "patient-a")
    assert idp.introspect(token) == {"active": False}


def test_jwt_access_tokens_are_not_introspectable(idp: OidcProvider) -> None:
    """oidc-provider keeps no record of JWT access tokens: a gateway validates them locally."""
    assert idp.introspect(idp.token("patient-a", "patient/*.rs")) == {"active": False}


def test_authorization_code_with_pkce_through_login_and_consent(idp: OidcProvider) -> None:
    answer = authorization_code(idp, "viewer", "user/ImagingStudy.rs user/Patient.rs", login="alice")
    claims = verify(idp, answer["access_token"])
    assert claims["sub"] == "alice" and claims["client_id"] == "viewer"
    assert claims["scope"] == "user/ImagingStudy.rs user/Patient.rs"
    assert unverified(answer["id_token"])[1]["aud"] == "viewer"  # the id_token is for the client
    patient = authorization_code(idp, "viewer", "patient/*.rs", login="pat-login")
    assert verify(idp, patient["access_token"])["patient"] == "COVID-19-AR-1"


def test_login_and_consent_pages_are_the_ones_a_browser_test_drives(idp: OidcProvider) -> None:
    pages: list[str] = []
    authorization_code(idp, "viewer", "user/*.rs", login="dora", pages=pages)
    login, consent = pages
    assert 'name="login"' in login and 'type="password" name="password"' in login
    assert re.search(r"<button[^>]*>Sign-in</button>", login)
    assert re.search(r"<button[^>]*>Continue</button>", consent) and "user/*.rs" in consent


def test_point_at_a_gateway_known_later(artifacts_dir: Path) -> None:
    idp = start_oidc(artifacts_dir / "logs")
    try:
        issuer, kid = idp.issuer, idp.signing_key.kid
        idp.point_at(audience="http://127.0.0.1:7/", redirect_uris=["http://127.0.0.1:7/viewer/cb"])
        assert idp.issuer == issuer and idp.signing_key.kid == kid
        assert verify(idp, idp.token("clinician", "user/*.rs"))["aud"] == "http://127.0.0.1:7/"
        answer = authorization_code(idp, "viewer", "user/*.rs")
        assert verify(idp, answer["access_token"])["aud"] == "http://127.0.0.1:7/"
    finally:
        idp.close()


def test_public_client_needs_pkce_and_its_own_origin(idp: OidcProvider) -> None:
    r = requests.get(idp.endpoint("authorization_endpoint"), allow_redirects=False, timeout=10,
                     params={"client_id": "viewer", "response_type": "code",
                             "redirect_uri": CALLBACK, "scope": "openid user/*.rs"})
    assert r.status_code == 303 and r.headers["Location"].startswith(CALLBACK + "?error=invalid_request")
    token = idp.endpoint("token_endpoint")
    data = {"grant_type": "authorization_code", "code": "x", "client_id": "viewer",
            "redirect_uri": CALLBACK, "code_verifier": "v" * 43}
    ours = requests.post(token, data=data, headers={"Origin": "http://127.0.0.1:9"}, timeout=10)
    assert ours.headers["Access-Control-Allow-Origin"] == "http://127.0.0.1:9"
    theirs = requests.post(token, data=data, headers={"Origin": "http://evil.test"}, timeout=10)
    assert "Access-Control-Allow-Origin" not in theirs.headers


def test_key_rotation_on_the_same_port(artifacts_dir: Path) -> None:
    idp = start_oidc(artifacts_dir / "logs")
    try:
        port, old = idp.port, idp.signing_key.kid
        before = idp.token("backend", "system/*.rs")
        new = idp.rotate()
        assert idp.port == port and new.kid != old
        assert [k["kid"] for k in idp.published_jwks()["keys"]] == [new.kid, old]
        after = idp.token("backend", "system/*.rs")
        assert unverified(after)[0]["kid"] == new.kid
        assert verify(idp, before)["sub"] == "backend"  # still verifiable while published
        idp.retire_old_keys()
        assert [k["kid"] for k in idp.published_jwks()["keys"]] == [new.kid]
        assert verify(idp, after)["sub"] == "backend"
        with pytest.raises(jwt.PyJWKClientError):
            verify(idp, before)
    finally:
        idp.close()


def test_session_fixture_serves_discovery(oidc_idp: OidcProvider) -> None:
    doc = oidc_idp.discovery()
    assert doc["issuer"] == oidc_idp.issuer
    assert {"client_credentials", "authorization_code"} <= set(doc["grant_types_supported"])
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert doc["introspection_endpoint"] and doc["revocation_endpoint"]
