"""The token validator against the forged loopback issuer (real HTTP discovery and JWKS).

Every malformed token of the forge is refused for its own reason, with the RFC 6750 answer
it must get; keys come only from the issuer's discovery; the JWKS is cached, refreshed on
rotation and never hammered by unknown kids (requests counted on the issuer).
"""
from __future__ import annotations

import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm

from gateway.access import (
    ExpiredToken,
    InvalidToken,
    IssuerUnavailable,
    JwksCache,
    TokenValidator,
)
from gateway.access.principal import token_hash
from tests.support.forged_issuer import ForgedIssuer
from tests.support.procs import free_port
from tests.support.tokens import SigningKey, b64url_json, unverified

SCOPE = "patient/ImagingStudy.rs patient/Observation.rs"
JWKS = "/jwks"
ATTACKER = ("/attacker/jwks", "/attacker/cert.pem")


class Clock:
    """A monotonic clock the test moves (JWKS max-age and refresh interval)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_validator(issuer: ForgedIssuer, clock: Clock, *, leeway: float = 30,
                   max_age: float = 300, interval: float = 15) -> TokenValidator:
    jwks = JwksCache(issuer.url, max_age=max_age, min_refresh_interval=interval, clock=clock)
    return TokenValidator(issuer.url, issuer.forge.audience, jwks=jwks, leeway=leeway)


@pytest.fixture
def validator(forged_issuer: ForgedIssuer, clock: Clock) -> TokenValidator:
    return make_validator(forged_issuer, clock)


def refused(validator: TokenValidator, token: str, kind: type = InvalidToken) -> InvalidToken:
    with pytest.raises(kind) as info:
        validator.principal(token)
    assert type(info.value) is kind
    return info.value


def test_a_valid_token_gives_its_principal(forged_issuer: ForgedIssuer,
                                           validator: TokenValidator) -> None:
    token = forged_issuer.forge.token(SCOPE, patient="PAT-1", sub="alice", client_id="app",
                                      collections=["COVID-19-AR"])
    p = validator.principal(token)
    claims = unverified(token)[1]
    assert (p.sub, p.client_id, p.patient, p.issuer) == ("alice", "app", "PAT-1", forged_issuer.url)
    assert p.scopes == tuple(SCOPE.split()) and p.jti == claims["jti"]
    assert p.collections == {"COVID-19-AR"} and p.expires_at == claims["exp"]
    assert p.token_hash == token_hash(token) and len(p.token_hash) == 16
    assert token not in repr(p) and p.source == "jwt"
    # discovery then JWKS, once each
    assert forged_issuer.hits["/.well-known/openid-configuration"] == 1
    assert forged_issuer.hits[JWKS] == 1


def test_a_verified_token_is_cached_by_digest(forged_issuer: ForgedIssuer,
                                              validator: TokenValidator) -> None:
    token = forged_issuer.forge.token(SCOPE, patient="PAT-1")
    first = validator.principal(token)
    assert validator.principal(token) is first  # the cached object: no second verification
    keys = list(validator._verified._items)
    assert len(keys) == 1 and keys[0] != token.encode() and len(keys[0]) == 32
    assert forged_issuer.hits[JWKS] == 1


def test_expired_and_leeway(forged_issuer: ForgedIssuer, validator: TokenValidator) -> None:
    forge = forged_issuer.forge
    error = refused(validator, forge.expired(SCOPE), ExpiredToken)
    assert (error.status, error.error, error.fhir_code) == (401, "invalid_token", "expired")
    assert 'error="invalid_token"' in error.www_authenticate()
    assert validator.principal(forge.expired(SCOPE, ago=10)).sub == "forge-user"  # within 30 s
    refused(validator, forge.expired(SCOPE, ago=45), ExpiredToken)


def test_future_nbf_and_iat(forged_issuer: ForgedIssuer, validator: TokenValidator) -> None:
    forge = forged_issuer.forge
    assert "not valid yet" in refused(validator, forge.not_yet_valid(SCOPE)).description
    now = int(time.time())
    future_iat = forge.token(SCOPE, iat=now + 3600)
    assert "not valid yet" in refused(validator, future_iat).description
    assert validator.principal(forge.token(SCOPE, nbf=now + 10)).sub  # skew within leeway


@pytest.mark.parametrize("variant, reason", [
    ("wrong_issuer", "another issuer"),
    ("wrong_audience", "another audience"),
    ("id_token", "is not at+jwt"),
    ("tampered", "signature does not verify"),
])
def test_malformed_tokens_are_refused_for_their_reason(forged_issuer: ForgedIssuer,
                                                       validator: TokenValidator,
                                                       variant: str, reason: str) -> None:
    error = refused(validator, getattr(forged_issuer.forge, variant)(SCOPE))
    assert reason in error.description
    assert (error.status, error.error, error.fhir_code) == (401, "invalid_token", "login")


def test_alg_none_and_hmac_with_the_public_key_never_reach_the_keys(
        forged_issuer: ForgedIssuer, validator: TokenValidator) -> None:
    forge = forged_issuer.forge
    assert "'none' is not allowed" in refused(validator, forge.alg_none(SCOPE)).description
    assert "'HS256' is not allowed" in refused(
        validator, forge.hs256_with_public_key(SCOPE)).description
    assert forged_issuer.hits[JWKS] == 0  # refused on the header alone


def test_key_headers_are_never_followed(forged_issuer: ForgedIssuer,
                                        validator: TokenValidator) -> None:
    forge = forged_issuer.forge
    for token in (forge.with_jku(forged_issuer.jku_url, SCOPE),
                  forge.with_x5u(forged_issuer.x5u_url, SCOPE), forge.with_jwk(SCOPE)):
        assert "unknown signing key" in refused(validator, token).description
    assert all(forged_issuer.hits[path] == 0 for path in ATTACKER)


def test_typ_forms(forged_issuer: ForgedIssuer, validator: TokenValidator) -> None:
    forge = forged_issuer.forge
    assert validator.principal(forge.sign(forge.claims(SCOPE), typ="application/at+jwt")).sub
    assert validator.principal(forge.sign(forge.claims(SCOPE), typ="AT+JWT")).sub
    no_typ = jwt.encode(forge.claims(SCOPE), forge.key.private, algorithm="RS256",
                        headers={"kid": forge.key.kid})
    assert "is not at+jwt" in refused(validator, no_typ).description


def test_required_claims(forged_issuer: ForgedIssuer, validator: TokenValidator) -> None:
    forge = forged_issuer.forge
    assert "no sub claim" in refused(validator, forge.token(SCOPE, sub=None)).description
    assert "no client_id" in refused(validator, forge.token(SCOPE, client_id=None)).description
    assert "no exp claim" in refused(validator, forge.token(SCOPE, exp=None)).description
    assert validator.principal(forge.token(SCOPE, client_id=None, azp="app")).client_id == "app"
    assert validator.principal(forge.token(SCOPE, jti=None)).jti is None


def test_crit_header_is_refused(forged_issuer: ForgedIssuer, validator: TokenValidator) -> None:
    forge = forged_issuer.forge
    token = forge.sign(forge.claims(SCOPE), headers={"crit": ["exp"]})
    assert "critical header" in refused(validator, token).description


def test_garbage_is_refused_as_invalid_token(validator: TokenValidator) -> None:
    for token in ("a.b.c", b64url_json({"alg": "RS256"}) + ".e30.", "only-opaque-no-introspection"):
        refused(validator, token)


def test_unknown_kid_flood_costs_the_issuer_one_request_per_interval(
        forged_issuer: ForgedIssuer, validator: TokenValidator, clock: Clock) -> None:
    forge = forged_issuer.forge
    assert validator.principal(forge.token(SCOPE)).sub
    assert forged_issuer.hits[JWKS] == 1
    for _ in range(50):
        refused(validator, forge.unknown_kid(SCOPE))
    assert forged_issuer.hits[JWKS] == 1  # within the interval: no refresh at all
    clock.advance(16)
    for _ in range(50):
        refused(validator, forge.unknown_kid(SCOPE))
    assert forged_issuer.hits[JWKS] == 2  # one refresh for the whole second flood
    assert forged_issuer.hits["/.well-known/openid-configuration"] == 1


def test_key_rotation_without_restart(forged_issuer: ForgedIssuer, validator: TokenValidator,
                                      clock: Clock) -> None:
    forge, old = forged_issuer.forge, forged_issuer.forge.key
    before = forge.token(SCOPE)
    assert validator.principal(before).sub
    new = SigningKey.generate()
    forged_issuer.publish([new, old])  # the operator publishes a new key and signs with it
    after = forge.token(SCOPE)
    assert unverified(after)[0]["kid"] == new.kid
    clock.advance(16)
    assert validator.principal(after).sub  # unknown kid -> one refresh -> accepted
    assert validator.principal(forge.sign(forge.claims(SCOPE), key=old)).sub
    forged_issuer.publish([new])  # the old key is retired
    clock.advance(301)  # the cached JWKS is now older than max_age
    assert "unknown signing key" in refused(validator, forge.sign(forge.claims(SCOPE), key=old)).description
    # a token verified with the old key while it was published is no longer honoured either
    assert "unknown signing key" in refused(validator, before).description
    assert validator.principal(after).sub


def test_es256_and_ps256_keys(forged_issuer: ForgedIssuer, validator: TokenValidator) -> None:
    forge = forged_issuer.forge
    ec_key = EcKey("ec-1")
    forged_issuer.publish([forge.key, ec_key], signer=forge.key)
    es = jwt.encode(forge.claims(SCOPE), ec_key.private, algorithm="ES256",
                    headers={"kid": "ec-1", "typ": "at+jwt"})
    assert validator.principal(es).sub
    ps = jwt.encode(forge.claims(SCOPE), forge.key.private, algorithm="PS256",
                    headers={"kid": forge.key.kid, "typ": "at+jwt"})
    # the RSA JWK says alg RS256 (RFC 7517 4.4): it may not verify a PS256 signature
    assert "unknown signing key" in refused(validator, ps).description
    bare = SigningKey.generate()
    forged_issuer.publish([NoAlg(bare)])
    ps_ok = jwt.encode(forge.claims(SCOPE), bare.private, algorithm="PS256",
                       headers={"kid": bare.kid, "typ": "at+jwt"})
    forged_issuer_validator = make_validator(forged_issuer, Clock())
    assert forged_issuer_validator.principal(ps_ok).sub
    es_with_rsa_kid = jwt.encode(forge.claims(SCOPE), ec_key.private, algorithm="ES256",
                                 headers={"kid": bare.kid, "typ": "at+jwt"})
    refused(forged_issuer_validator, es_with_rsa_kid)  # the kid's key is RSA: no EC verify


def test_a_token_without_kid_needs_an_unambiguous_key(forged_issuer: ForgedIssuer,
                                                      clock: Clock) -> None:
    forge = forged_issuer.forge
    no_kid = jwt.encode(forge.claims(SCOPE), forge.key.private, algorithm="RS256",
                        headers={"typ": "at+jwt"})
    assert make_validator(forged_issuer, clock).principal(no_kid).sub
    forged_issuer.publish([forge.key, SigningKey.generate()], signer=forge.key)
    assert "unknown signing key" in refused(make_validator(forged_issuer, Clock()), no_kid).description


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_weak_and_encryption_keys_are_not_used(forged_issuer: ForgedIssuer, clock: Clock) -> None:
    forge = forged_issuer.forge
    weak = SigningKey(rsa.generate_private_key(public_exponent=65537, key_size=1024), "weak")
    forged_issuer.publish([weak, EncKey(forge.key)], signer=weak)
    validator = make_validator(forged_issuer, clock)
    assert "unknown signing key" in refused(validator, forge.token(SCOPE)).description
    assert "unknown signing key" in refused(validator, forge.sign(forge.claims(SCOPE),
                                                                  key=forge.key)).description


def test_an_unreachable_issuer_is_503_and_not_retried_per_request(clock: Clock) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    jwks = JwksCache(url, min_refresh_interval=15, clock=clock)
    validator = TokenValidator(url, "aud", jwks=jwks)
    forge_token = token_for(url)
    for _ in range(3):
        with pytest.raises(IssuerUnavailable) as info:
            validator.principal(forge_token)
        assert info.value.status == 503 and info.value.www_authenticate() is None
    assert jwks.fetches == 1


def test_a_dead_issuer_keeps_the_known_keys_and_is_asked_once_per_interval(clock: Clock) -> None:
    issuer = ForgedIssuer("http://tcia-gateway.test/")
    jwks = JwksCache(issuer.url, max_age=300, min_refresh_interval=15, clock=clock)
    validator = TokenValidator(issuer.url, issuer.forge.audience, jwks=jwks)
    tokens = [issuer.forge.token(SCOPE) for _ in range(4)]
    assert validator.principal(tokens[0]).sub
    issuer.close()
    clock.advance(301)  # stale: the refresh fails, the known key still verifies
    assert validator.principal(tokens[1]).sub and jwks.fetches == 2
    assert validator.principal(tokens[2]).sub and jwks.fetches == 2  # not asked again at once
    refused(validator, issuer.forge.unknown_kid(SCOPE))
    assert jwks.fetches == 2
    clock.advance(16)
    assert validator.principal(tokens[3]).sub and jwks.fetches == 3  # one retry per interval


def test_discovery_must_name_the_configured_issuer(forged_issuer: ForgedIssuer,
                                                   clock: Clock) -> None:
    other = forged_issuer.url.replace("127.0.0.1", "localhost")
    jwks = JwksCache(other, clock=clock)
    validator = TokenValidator(other, forged_issuer.forge.audience, jwks=jwks)
    with pytest.raises(IssuerUnavailable, match="OIDC Discovery 4.3"):
        validator.principal(forged_issuer.forge.token(SCOPE, iss=other))


# ------------------------------------------------------------------ key helpers
class EcKey:
    """A P-256 key publishable by the forged issuer (it calls public_jwk())."""

    def __init__(self, kid: str) -> None:
        self.kid = kid
        self.private = ec.generate_private_key(ec.SECP256R1())

    def public_jwk(self) -> dict:
        jwk = ECAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        return {**{k: v for k, v in jwk.items() if k != "key_ops"}, "kid": self.kid,
                "use": "sig", "alg": "ES256"}


class NoAlg:
    """An RSA JWK without `alg`: usable for RS256 and PS256 (RFC 7517 4.4 is optional)."""

    def __init__(self, key: SigningKey) -> None:
        self.kid, self.key = key.kid, key

    def public_jwk(self) -> dict:
        return {k: v for k, v in self.key.public_jwk().items() if k != "alg"}


class EncKey:
    """The same RSA key published for encryption only (RFC 7517 4.2 `use: enc`)."""

    def __init__(self, key: SigningKey) -> None:
        self.kid, self.key = key.kid, key

    def public_jwk(self) -> dict:
        return {**self.key.public_jwk(), "use": "enc"}


def token_for(issuer: str) -> str:
    key = SigningKey.generate()
    now = int(time.time())
    return jwt.encode({"iss": issuer, "aud": "aud", "sub": "s", "client_id": "c", "iat": now,
                       "exp": now + 60}, key.private, algorithm="RS256",
                      headers={"kid": key.kid, "typ": "at+jwt"})
