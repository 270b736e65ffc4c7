"""The token forge makes exactly the tokens its names promise (checked with PyJWT).

A strict verifier (RS256 allow-list, the issuer's key, iss/aud/exp/nbf checked) must accept
`token()` and refuse each malformed variant for the stated reason; where a variant is an
attack (HS256 with the public key, jku/x5u/jwk headers), the test also shows a naive verifier
would fall for it, so the attack token is real.
"""
from __future__ import annotations

import hashlib
import hmac

import jwt
import pytest
from jwt.algorithms import RSAAlgorithm

from tests.support.tokens import (
    Forge,
    SigningKey,
    _thumbprint,
    b64url,
    jwks,
    unverified,
)

ISS, AUD = "http://127.0.0.1:1", "http://tcia-gateway.test/"


@pytest.fixture(scope="module")
def forge() -> Forge:
    return Forge(ISS, AUD, key=SigningKey.generate(), attacker=SigningKey.generate())


def strict(forge: Forge, token: str) -> dict:
    return jwt.decode(token, forge.key.public, algorithms=["RS256"], audience=AUD, issuer=ISS,
                      options={"require": ["exp", "iat", "iss", "aud"]})


def test_valid_token(forge: Forge) -> None:
    token = forge.token("patient/ImagingStudy.rs", patient="P1")
    header, _ = unverified(token)
    assert header == {"alg": "RS256", "typ": "at+jwt", "kid": forge.key.kid}
    claims = strict(forge, token)
    assert claims["scope"] == "patient/ImagingStudy.rs" and claims["patient"] == "P1"
    assert claims["exp"] - claims["iat"] == forge.ttl and claims["jti"]


def test_claims_override_and_remove(forge: Forge) -> None:
    claims = strict(forge, forge.token("user/*.rs", sub="alice", collections=["X"], client_id=None))
    assert claims["sub"] == "alice" and claims["collections"] == ["X"] and "client_id" not in claims


@pytest.mark.parametrize("variant, error", [
    ("expired", jwt.ExpiredSignatureError),
    ("not_yet_valid", jwt.ImmatureSignatureError),
    ("wrong_issuer", jwt.InvalidIssuerError),
    ("wrong_audience", jwt.InvalidAudienceError),
    ("id_token", jwt.InvalidAudienceError),
    ("alg_none", jwt.InvalidAlgorithmError),
    ("hs256_with_public_key", jwt.InvalidAlgorithmError),
    ("tampered", jwt.InvalidSignatureError),
    ("unknown_kid", jwt.InvalidSignatureError),
    ("with_jwk", jwt.InvalidSignatureError),
])
def test_malformed_variants_are_refused_by_a_strict_verifier(forge: Forge, variant: str,
                                                              error: type[Exception]) -> None:
    with pytest.raises(error):
        strict(forge, getattr(forge, variant)("patient/*.rs"))


def test_id_token_is_typ_jwt_for_the_client(forge: Forge) -> None:
    header, claims = unverified(forge.id_token())
    assert header["typ"] == "JWT" and claims["aud"] == "forge-client"


def test_id_token_with_the_gateway_audience_differs_only_in_typ(forge: Forge) -> None:
    """PyJWT does not check `typ`: a resource server must (RFC 9068 4), or this passes."""
    token = forge.id_token("user/*.rs", aud=AUD)
    assert unverified(token)[0]["typ"] == "JWT"
    assert strict(forge, token)["scope"] == "user/*.rs"


def test_alg_none_is_unsigned(forge: Forge) -> None:
    token = forge.alg_none("system/*.rs")
    assert token.endswith(".") and unverified(token)[0]["alg"] == "none"
    assert jwt.decode(token, options={"verify_signature": False})["scope"] == "system/*.rs"


def test_hs256_is_keyed_with_the_public_pem(forge: Forge) -> None:
    """A verifier that lets the header pick HMAC and uses the PEM as secret would accept it."""
    signing_input, _, signature = forge.hs256_with_public_key().rpartition(".")
    mac = hmac.new(forge.key.public_pem(), signing_input.encode(), hashlib.sha256).digest()
    assert b64url(mac) == signature


def test_tampered_keeps_the_signature_of_another_payload(forge: Forge) -> None:
    token = forge.tampered("patient/*.rs", patient="SOMEONE-ELSE")
    assert unverified(token)[1]["patient"] == "SOMEONE-ELSE"
    assert unverified(forge.tampered("patient/*.rs"))[1]["scope"] == "system/*.cruds"


@pytest.mark.parametrize("variant", ["unknown_kid", "with_jku", "with_x5u", "with_jwk"])
def test_attacker_signed_variants_verify_only_with_the_attacker_key(forge: Forge, variant: str) -> None:
    args = {"with_jku": ("http://127.0.0.1:1/attacker/jwks",),
            "with_x5u": ("http://127.0.0.1:1/attacker/cert.pem",)}.get(variant, ())
    token = getattr(forge, variant)(*args)
    header, _ = unverified(token)
    assert header["kid"] == forge.attacker.kid
    assert header["kid"] not in [k["kid"] for k in jwks([forge.key])["keys"]]
    assert jwt.decode(token, forge.attacker.public, algorithms=["RS256"], audience=AUD)["iss"] == ISS
    header_name = {"with_jku": "jku", "with_x5u": "x5u", "with_jwk": "jwk"}.get(variant)
    if header_name == "jwk":
        assert header["jwk"] == forge.attacker.public_jwk() and "d" not in header["jwk"]
    elif header_name:
        assert header[header_name] == args[0]


def test_kid_is_the_rfc7638_thumbprint() -> None:
    # RFC 7638 3.1's example key and thumbprint
    n = ("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECP"
         "ebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2Qv"
         "zqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6"
         "WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw")
    public = RSAAlgorithm.from_jwk({"kty": "RSA", "n": n, "e": "AQAB"})
    assert _thumbprint(public) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
