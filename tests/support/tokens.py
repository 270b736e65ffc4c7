"""Signing keys and a token forge for the security suite.

`SigningKey` is an RS256 key with a `kid` (RFC 7638 thumbprint); the test identity provider
(`oidc_idp.py`) takes its JWKS from these. `Forge` mints RFC 9068 access tokens with a local
key and every malformed variant a resource server must refuse (RFC 8725 3.1-3.2, RFC 7515
4.1.2-4.1.5). `ForgedIssuer` publishes the forge's keys from a loopback HTTP server with an
`/.well-known/openid-configuration`, so a gateway can be pointed at it as its issuer.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from jwt.algorithms import RSAAlgorithm


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_json(obj: Any) -> str:
    return b64url(json.dumps(obj, separators=(",", ":")).encode())


def unverified(token: str) -> tuple[dict, dict]:
    """(header, payload) of a compact JWS, without verifying anything."""
    header, payload = token.split(".")[:2]
    return json.loads(_b64decode(header)), json.loads(_b64decode(payload))


def _b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


@dataclass(frozen=True)
class SigningKey:
    """An RSA key pair with its JWK forms; `kid` defaults to the RFC 7638 thumbprint."""

    private: rsa.RSAPrivateKey
    kid: str

    @classmethod
    def generate(cls, kid: str | None = None, bits: int = 2048) -> SigningKey:
        key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        return cls(key, kid or _thumbprint(key.public_key()))

    @property
    def public(self) -> rsa.RSAPublicKey:
        return self.private.public_key()

    def public_jwk(self) -> dict[str, str]:
        return self._jwk(self.public)

    def private_jwk(self) -> dict[str, str]:
        return self._jwk(self.private)

    def _jwk(self, key: rsa.RSAPrivateKey | rsa.RSAPublicKey) -> dict[str, str]:
        # PyJWT adds key_ops ["sign"]/["verify"]; a JWKS for both uses carries none (RFC 7517 4.3).
        jwk = {k: v for k, v in RSAAlgorithm.to_jwk(key, as_dict=True).items() if k != "key_ops"}
        return {**jwk, "kid": self.kid, "use": "sig", "alg": "RS256"}

    def public_pem(self) -> bytes:
        return self.public.public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)

    def self_signed_cert_pem(self) -> bytes:
        """A certificate for this key (what an `x5u` header would point to)."""
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"forged {self.kid}")])
        now = dt.datetime.now(dt.UTC)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(self.public).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5))
                .not_valid_after(now + dt.timedelta(days=1))
                .sign(self.private, hashes.SHA256()))
        return cert.public_bytes(serialization.Encoding.PEM)


def _thumbprint(public: rsa.RSAPublicKey) -> str:
    # RFC 7638 3.1: the required members in lexicographic order, no whitespace.
    jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
    canonical = json.dumps({"e": jwk["e"], "kty": "RSA", "n": jwk["n"]}, separators=(",", ":"))
    return b64url(hashlib.sha256(canonical.encode()).digest())


def jwks(keys: list[SigningKey], *, private: bool = False) -> dict[str, list[dict]]:
    return {"keys": [k.private_jwk() if private else k.public_jwk() for k in keys]}


@dataclass
class Forge:
    """Mints access tokens for `issuer`/`audience`; `key` signs, `keys` is what is published.

    Every method returns a compact JWS string; each malformed variant differs from `token()`
    in exactly the one way its name says.
    """

    issuer: str
    audience: str
    key: SigningKey = field(default_factory=SigningKey.generate)
    attacker: SigningKey = field(default_factory=SigningKey.generate)
    ttl: int = 300

    def claims(self, scope: str = "", *, patient: str | None = None, sub: str = "forge-user",
               client_id: str = "forge-client", **extra: Any) -> dict[str, Any]:
        """RFC 9068 2.2 claims; `extra` overrides or adds (None removes)."""
        now = int(time.time())
        body: dict[str, Any] = {"iss": self.issuer, "aud": self.audience, "sub": sub,
                                "client_id": client_id, "iat": now, "nbf": now,
                                "exp": now + self.ttl, "jti": uuid.uuid4().hex, "scope": scope}
        if patient is not None:
            body["patient"] = patient
        body.update(extra)
        return {k: v for k, v in body.items() if v is not None}

    def sign(self, payload: dict[str, Any], *, key: SigningKey | None = None,
             headers: dict[str, Any] | None = None, typ: str = "at+jwt") -> str:
        key = key or self.key
        head = {"kid": key.kid, "typ": typ, **(headers or {})}
        return jwt.encode(payload, key.private, algorithm="RS256", headers=head)

    def token(self, scope: str = "", **claims: Any) -> str:
        """A valid access token (RFC 9068: typ at+jwt, RS256, kid of a published key)."""
        return self.sign(self.claims(scope, **claims))

    # --- malformed variants (each one thing wrong) ---
    def expired(self, scope: str = "", *, ago: int = 3600, **claims: Any) -> str:
        now = int(time.time())
        return self.token(scope, iat=now - ago - self.ttl, nbf=now - ago - self.ttl,
                          exp=now - ago, **claims)

    def not_yet_valid(self, scope: str = "", *, ahead: int = 3600, **claims: Any) -> str:
        now = int(time.time())
        return self.token(scope, nbf=now + ahead, exp=now + ahead + self.ttl, **claims)

    def wrong_issuer(self, scope: str = "", **claims: Any) -> str:
        return self.token(scope, iss=self.issuer.rstrip("/") + "/evil", **claims)

    def wrong_audience(self, scope: str = "", **claims: Any) -> str:
        return self.token(scope, aud="https://other.example/api", **claims)

    def id_token(self, scope: str = "", **claims: Any) -> str:
        """typ JWT, aud = the client: an OIDC id_token offered as an access token (RFC 9068 4)."""
        return self.sign(self.claims(scope, aud=claims.pop("aud", "forge-client"), **claims),
                         typ="JWT")

    def alg_none(self, scope: str = "", **claims: Any) -> str:
        """Unsigned (RFC 7518 3.6): header alg none, empty signature."""
        head = {"alg": "none", "typ": "at+jwt", "kid": self.key.kid}
        return f"{b64url_json(head)}.{b64url_json(self.claims(scope, **claims))}."

    def hs256_with_public_key(self, scope: str = "", **claims: Any) -> str:
        """HMAC keyed with the issuer's public PEM: the classic algorithm confusion (RFC 8725 2.1).

        PyJWT refuses to HMAC with a PEM, so the MAC is computed with hmac here.
        """
        head = {"alg": "HS256", "typ": "at+jwt", "kid": self.key.kid}
        signing_input = f"{b64url_json(head)}.{b64url_json(self.claims(scope, **claims))}"
        mac = hmac.new(self.key.public_pem(), signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{b64url(mac)}"

    def tampered(self, scope: str = "", **changes: Any) -> str:
        """A valid token whose payload was edited after signing (signature kept).

        `changes` are applied to the payload after signing; by default the scope is raised.
        """
        original = self.token(scope)
        header, _, signature = original.split(".")
        payload = unverified(original)[1]
        payload.update(changes or {"scope": "system/*.cruds"})
        return f"{header}.{b64url_json(payload)}.{signature}"

    def unknown_kid(self, scope: str = "", **claims: Any) -> str:
        """Signed by a key the issuer never published, under a kid it does not know."""
        return self.sign(self.claims(scope, **claims), key=self.attacker)

    def with_jku(self, jku_url: str, scope: str = "", **claims: Any) -> str:
        """Signed by the attacker key; `jku` points at a JWKS holding it (RFC 7515 4.1.2)."""
        return self.sign(self.claims(scope, **claims), key=self.attacker, headers={"jku": jku_url})

    def with_x5u(self, x5u_url: str, scope: str = "", **claims: Any) -> str:
        """Signed by the attacker key; `x5u` points at its certificate (RFC 7515 4.1.5)."""
        return self.sign(self.claims(scope, **claims), key=self.attacker, headers={"x5u": x5u_url})

    def with_jwk(self, scope: str = "", **claims: Any) -> str:
        """Signed by the attacker key, which is embedded in the `jwk` header (RFC 7515 4.1.3)."""
        return self.sign(self.claims(scope, **claims), key=self.attacker,
                         headers={"jwk": self.attacker.public_jwk()})
