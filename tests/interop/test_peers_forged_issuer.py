"""The forged issuer publishes the forge's keys the way a real OIDC issuer does.

A client that discovers the JWKS through `/.well-known/openid-configuration` (PyJWT's
PyJWKClient here, the gateway later) verifies forge tokens, follows a rotation, and never
finds the attacker key behind a `jku`/`x5u` header in the issuer's JWKS.
"""
from __future__ import annotations

import jwt
import pytest
import requests

from tests.support.forged_issuer import ForgedIssuer
from tests.support.tokens import SigningKey, unverified


def discovered_key(issuer_url: str, token: str):
    doc = requests.get(issuer_url + "/.well-known/openid-configuration", timeout=5).json()
    return jwt.PyJWKClient(doc["jwks_uri"], cache_jwk_set=False).get_signing_key_from_jwt(token).key


def test_discovery_and_jwks(forged_issuer: ForgedIssuer) -> None:
    doc = requests.get(forged_issuer.url + "/.well-known/openid-configuration", timeout=5).json()
    assert doc["issuer"] == forged_issuer.url and doc["jwks_uri"] == forged_issuer.jwks_uri
    forge = forged_issuer.forge
    token = forge.token("patient/*.rs", patient="P1")
    claims = jwt.decode(token, discovered_key(forged_issuer.url, token), algorithms=["RS256"],
                        audience=forge.audience, issuer=forged_issuer.url)
    assert claims["patient"] == "P1"
    assert forged_issuer.hits["/jwks"] == 1 and forged_issuer.hits["/.well-known/openid-configuration"] == 2


def test_rotation_by_publishing(forged_issuer: ForgedIssuer) -> None:
    old = forged_issuer.forge.key
    before = forged_issuer.forge.token()
    new = SigningKey.generate()
    forged_issuer.publish([new, old])
    after = forged_issuer.forge.token()
    assert unverified(after)[0]["kid"] == new.kid
    assert discovered_key(forged_issuer.url, before) is not None
    forged_issuer.publish([new])
    discovered_key(forged_issuer.url, after)
    with pytest.raises(jwt.PyJWKClientError):
        discovered_key(forged_issuer.url, before)


def test_attacker_documents_are_served_but_not_in_the_jwks(forged_issuer: ForgedIssuer) -> None:
    forge = forged_issuer.forge
    token = forge.with_jku(forged_issuer.jku_url)
    attacker_jwks = requests.get(forged_issuer.jku_url, timeout=5).json()
    assert [k["kid"] for k in attacker_jwks["keys"]] == [forge.attacker.kid]
    cert = requests.get(forged_issuer.x5u_url, timeout=5)
    assert cert.status_code == 200 and cert.content.startswith(b"-----BEGIN CERTIFICATE-----")
    with pytest.raises(jwt.PyJWKClientError):
        discovered_key(forged_issuer.url, token)
    assert requests.get(forged_issuer.url + "/nothing", timeout=5).status_code == 404
