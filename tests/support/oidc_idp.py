"""A real OpenID provider for tests: panva's `oidc-provider` 8.8.1 under Node on loopback.

`start_oidc()` writes the effective configuration (the static `oidc/config.json` + issuer,
port, audience, patient IDs, redirect URIs) and a private JWKS into a temp dir, starts
`node oidc/provider.mjs`, and polls `/.well-known/openid-configuration`. Access tokens for
the gateway are RFC 9068 JWTs signed RS256 by the first key of the JWKS. `rotate()` and
`retire_old_keys()` restart the provider on the same port with a new key set, as an
operator rotating keys would (old+new published, then new only).
"""
from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from .procs import Proc, free_port, wait_until
from .tokens import SigningKey, jwks

OIDC_DIR = Path(__file__).resolve().parent / "oidc"
DEFAULT_AUDIENCE = "http://tcia-gateway.test/"
DEFAULT_REDIRECT = "http://127.0.0.1/callback"
OPAQUE_RESOURCE = "urn:tcia-gateway:opaque"  # RFC 8707 resource that yields opaque tokens


def smart_scopes(static: Mapping[str, Any], extra: Iterable[str] = ()) -> list[str]:
    """SMART App Launch 2.x scopes: context/type.permissions, plus granular and extra ones."""
    out = [f"{c}/{t}.{p}" for c in static["scope_contexts"] for t in static["resource_types"]
           for p in static["permissions"]]
    return out + list(static["extra_scopes"]) + [s for s in extra if s not in out]


@dataclass(frozen=True)
class Client:
    client_id: str
    secret: str | None

    @property
    def auth(self) -> tuple[str, str] | None:
        """HTTP Basic credentials (RFC 6749 2.3.1), None for a public client."""
        return (self.client_id, self.secret) if self.secret else None


@dataclass
class OidcProvider:
    root: Path
    port: int
    log_dir: Path
    config: dict[str, Any]
    keys: list[SigningKey]
    proc: Proc | None = field(default=None)

    @property
    def issuer(self) -> str:
        return self.config["issuer"]

    @property
    def audience(self) -> str:
        return self.config["audience"]

    @property
    def signing_key(self) -> SigningKey:
        return self.keys[0]

    def client(self, client_id: str) -> Client:
        for c in self.config["clients"]:
            if c["client_id"] == client_id:
                return Client(client_id, c.get("client_secret"))
        raise KeyError(client_id)

    def endpoint(self, name: str) -> str:
        """An endpoint URL from discovery (`token_endpoint`, `jwks_uri`, ...)."""
        return self.discovery()[name]

    def discovery(self) -> dict[str, Any]:
        r = requests.get(self.issuer + "/.well-known/openid-configuration", timeout=5)
        r.raise_for_status()
        return r.json()

    def published_jwks(self) -> dict[str, Any]:
        r = requests.get(self.endpoint("jwks_uri"), timeout=5)
        r.raise_for_status()
        return r.json()

    def token_response(self, client_id: str, scope: str = "", *, opaque: bool = False,
                       **params: str) -> requests.Response:
        """POST a client-credentials grant (RFC 6749 4.4); the raw response.

        `opaque=True` asks for an opaque token (the only kind RFC 7662 introspection and
        RFC 7009 revocation know: oidc-provider does not store JWT access tokens)."""
        data = {"grant_type": "client_credentials", "scope": scope, **params}
        if opaque:
            data["resource"] = self.config["opaque_resource"]
        return requests.post(self.endpoint("token_endpoint"), data=data,
                             auth=self.client(client_id).auth, timeout=10)

    def token(self, client_id: str, scope: str = "", *, opaque: bool = False,
              **params: str) -> str:
        """An access token for the gateway (client credentials)."""
        r = self.token_response(client_id, scope, opaque=opaque, **params)
        if r.status_code != 200:
            raise AssertionError(f"token for {client_id}: {r.status_code} {r.text}")
        return r.json()["access_token"]

    def introspect(self, token: str, client_id: str = "gateway") -> dict[str, Any]:
        """RFC 7662 introspection as the resource server would call it."""
        r = requests.post(self.endpoint("introspection_endpoint"), data={"token": token},
                          auth=self.client(client_id).auth, timeout=10)
        r.raise_for_status()
        return r.json()

    def revoke(self, token: str, client_id: str) -> None:
        """RFC 7009 revocation by the client the token was issued to."""
        r = requests.post(self.endpoint("revocation_endpoint"), data={"token": token},
                          auth=self.client(client_id).auth, timeout=10)
        r.raise_for_status()

    # --- lifecycle ---
    def start(self, timeout: float = 15) -> OidcProvider:
        jwks_file = self.root / "jwks.json"
        jwks_file.write_text(json.dumps(jwks(self.keys, private=True)))
        jwks_file.chmod(0o600)
        conf_file = self.root / "provider.json"
        conf_file.write_text(json.dumps({**self.config, "jwks_file": str(jwks_file)}, indent=1))
        node = shutil.which("node")
        if node is None or not (OIDC_DIR / "node_modules" / "oidc-provider").is_dir():
            raise FileNotFoundError("node or oidc-provider missing: run .ci/install "
                                    "(npm ci in tests/support/oidc)")
        self.proc = Proc([node, str(OIDC_DIR / "provider.mjs"), str(conf_file)],
                         self.log_dir / f"oidc-provider-{self.port}.log", cwd=OIDC_DIR).start()
        url = self.issuer + "/.well-known/openid-configuration"
        try:
            wait_until(lambda: requests.get(url, timeout=1).status_code == 200,
                       timeout=timeout, what="oidc-provider", proc=self.proc)
        except BaseException:
            self.proc.stop()
            raise
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def restart(self, keys: list[SigningKey] | None = None, **config: Any) -> None:
        """Stop, change the key set and/or configuration, start again on the same port."""
        self.stop()
        if keys is not None:
            self.keys = list(keys)
        self.config.update(config)
        self.start()

    def point_at(self, *, audience: str | None = None,
                 redirect_uris: Iterable[str] | None = None) -> None:
        """Restart for a gateway whose URL is known only now (its audience, the viewer's
        callback); the issuer URL and keys stay the same."""
        clients = [dict(c) for c in self.config["clients"]]
        if redirect_uris is not None:
            for c in clients:
                if "authorization_code" in c["grant_types"]:
                    c["redirect_uris"] = list(redirect_uris)
        self.restart(audience=audience or self.audience, clients=clients)

    def rotate(self) -> SigningKey:
        """Publish a new key that signs from now on, keeping the old ones for verification."""
        new = SigningKey.generate()
        self.restart([new, *self.keys])
        return new

    def retire_old_keys(self) -> None:
        """Publish only the current signing key (the old one disappears from the JWKS)."""
        self.restart([self.keys[0]])


def start_oidc(log_dir: Path, *, audience: str = DEFAULT_AUDIENCE,
               patient_a: str = "TEST-PATIENT-A", patient_b: str = "TEST-PATIENT-B",
               redirect_uris: Iterable[str] = (DEFAULT_REDIRECT,),
               client_claims: Mapping[str, Mapping[str, Any]] | None = None,
               account_claims: Mapping[str, Mapping[str, Any]] | None = None,
               extra_scopes: Iterable[str] = (), scopes: Iterable[str] | None = None,
               access_token_ttl: int | None = None, port: int | None = None) -> OidcProvider:
    """Start the provider; `client_claims` add token claims per client (e.g. `collections`),
    `account_claims` per login (the `sub` of an authorization-code token)."""
    static = json.loads((OIDC_DIR / "config.json").read_text())
    port = port or free_port()
    values = {"patient_a": patient_a, "patient_b": patient_b}
    clients = [_client_metadata(c, values, list(redirect_uris), (client_claims or {}))
               for c in static["clients"]]
    ttl = {**static["ttl"], **({"access_token": access_token_ttl} if access_token_ttl else {})}
    config = {"issuer": f"http://127.0.0.1:{port}", "host": "127.0.0.1", "port": port,
              "audience": audience, "opaque_resource": OPAQUE_RESOURCE, "ttl": ttl,
              "clients": clients,
              "scopes": list(scopes) if scopes is not None else smart_scopes(static, extra_scopes),
              "account_claims": dict(account_claims or {})}
    root = Path(tempfile.mkdtemp(prefix="tcia-oidc-"))
    provider = OidcProvider(root, port, log_dir, config, [SigningKey.generate()])
    try:
        return provider.start()
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise


def _client_metadata(static: Mapping[str, Any], values: Mapping[str, str],
                     redirect_uris: list[str],
                     client_claims: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """oidc-provider client metadata (OIDC Dynamic Registration 2) + our `scope_prefixes`/`claims`."""
    grants = list(static["grant_types"])
    code = "authorization_code" in grants
    claims = {k: v.format_map(values) if isinstance(v, str) else v
              for k, v in static["claims"].items()}
    claims.update(client_claims.get(static["client_id"], {}))
    meta: dict[str, Any] = {
        "client_id": static["client_id"], "grant_types": grants,
        "response_types": ["code"] if code else [], "redirect_uris": redirect_uris if code else [],
        "scope_prefixes": static["scope_prefixes"], "claims": claims}
    if static.get("public"):
        meta["token_endpoint_auth_method"] = "none"
    else:
        meta["client_secret"] = static["client_secret"]
    return meta
