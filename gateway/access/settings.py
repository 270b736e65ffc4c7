"""Access and audit settings, documented beside their defaults like `gateway.config.Settings`.

Kept here until they join `Settings` (same names, lower case): `AccessSettings.from_env`
reads the `GATEWAY_*` variables the same way. `unknown_variables` finds `GATEWAY_*`
variables no setting knows, with the closest known name (a typo such as
`GATEWAY_AUTHMODE=required` must stop the start, not run the gateway wide open), and
`startup_problems` lists the combinations `serve`/`dimse` must refuse.
"""
from __future__ import annotations

import dataclasses
import difflib
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

PREFIX = "GATEWAY_"
MODES = ("off", "public-read", "required")


def _doc(text: str, choices: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"doc": text, "choices": choices}


@dataclass(frozen=True)
class AccessSettings:
    """Field names are the lower-case setting keys."""

    auth_mode: str = field(default="off", metadata=_doc(
        "`off` (no access control), `public-read` (anonymous reads; a token for writes, "
        "the audit trail and restricted collections) or `required` (a token for every "
        "data request).", MODES))
    auth_issuer: str = field(default="", metadata=_doc(
        "OIDC issuer URL; its `/.well-known/openid-configuration` gives `jwks_uri` "
        "(and the introspection endpoint)."))
    auth_audience: str = field(default="", metadata=_doc(
        "Value that must be in a token's `aud`. Empty means PUBLIC_URL."))
    auth_leeway: int = field(default=30, metadata=_doc(
        "Seconds of clock skew allowed on `exp`/`nbf`/`iat`."))
    auth_jwks_max_age: float = field(default=300.0, metadata=_doc(
        "Seconds a fetched JWKS is trusted before it is fetched again (a key the issuer "
        "removed stops its tokens then)."))
    auth_jwks_refresh_interval: float = field(default=15.0, metadata=_doc(
        "Least seconds between two JWKS fetches: a token with an unknown `kid` refetches at "
        "most this often (a flood of unknown kids cannot hammer the issuer)."))
    auth_introspection_url: str = field(default="", metadata=_doc(
        "RFC 7662 endpoint for opaque tokens. Empty with AUTH_CLIENT_ID set: the "
        "issuer's `introspection_endpoint`."))
    auth_client_id: str = field(default="", metadata=_doc(
        "Client id the gateway introspects with (RFC 7662 2.1)."))
    auth_client_secret: str = field(default="", metadata=_doc(
        "Its client secret (HTTP Basic, RFC 6749 2.3.1)."))
    auth_allow_anonymous_remote: bool = field(default=False, metadata=_doc(
        "Allow AUTH_MODE=off on a non-loopback HTTP_BIND or DIMSE_BIND."))
    auth_restricted_collections: str = field(default="", metadata=_doc(
        "Comma-separated limited-access collections: only tokens whose collections claim "
        "lists one see it."))
    auth_collections_claim: str = field(default="collections", metadata=_doc(
        "Token claim (array or space-separated) naming the restricted collections granted."))
    viewer_oidc_client_id: str = field(default="", metadata=_doc(
        "Turns on OHIF's `oidc[0]` (authority AUTH_ISSUER, authorization code + PKCE)."))
    dimse_tls_bind: str = field(default="", metadata=_doc(
        "HOST:PORT of a DICOM TLS listener (PS3.15 B.12; 2762 is DICOM's TLS port)."))
    dimse_tls_cert: str = field(default="", metadata=_doc(
        "PEM certificate (chain) of the TLS listener."))
    dimse_tls_key: str = field(default="", metadata=_doc("PEM private key of the TLS listener."))
    dimse_tls_ca: str = field(default="", metadata=_doc(
        "PEM CA bundle; set means client certificates are required and verified."))
    dimse_require_identity: bool = field(default=False, metadata=_doc(
        "Reject associations without User Identity negotiation (PS3.7 D.3.3.7)."))
    dimse_ae_permissions: str = field(default="", metadata=_doc(
        "`AET=find+get+move+store,...` per calling AE (also `echo`, and `*` for any other "
        "AE); empty allows every service to every AE."))
    audit_syslog: str = field(default="", metadata=_doc(
        "`tcp://host:port` or `tls://host:port`: send PS3.15 A.5 audit messages there "
        "(RFC 5424 framing; RFC 6587 octet counting, RFC 5425 over TLS)."))
    audit_syslog_tls_ca: str = field(default="", metadata=_doc(
        "PEM CA bundle that signs the syslog collector's certificate (default: system CAs)."))

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AccessSettings:
        values = {f.name: _coerce(f, env[PREFIX + f.name.upper()])
                  for f in dataclasses.fields(cls) if PREFIX + f.name.upper() in env}
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.auth_mode not in MODES:
            hint = closest(self.auth_mode, MODES)
            raise ValueError(f"AUTH_MODE={self.auth_mode!r} is not one of {', '.join(MODES)}"
                             + (f" (did you mean {hint!r}?)" if hint else ""))

    @classmethod
    def of(cls, settings: object) -> AccessSettings:
        """The access settings of a `gateway.config.Settings` (same field names; a field
        it does not have yet keeps its default here)."""
        values = {f.name: getattr(settings, f.name) for f in dataclasses.fields(cls)
                  if hasattr(settings, f.name)}
        access = cls(**values)
        access.validate()
        return access

    def audience(self, public_url: str) -> str:
        return self.auth_audience or public_url

    @property
    def restricted_collections(self) -> frozenset[str]:
        return frozenset(c.strip() for c in self.auth_restricted_collections.split(",") if c.strip())


SETTING_NAMES = tuple(f.name.upper() for f in dataclasses.fields(AccessSettings))


def settings_table() -> list[tuple[str, str, str]]:
    """(KEY, default, doc) rows, as `gateway.config.settings_table` gives for the README."""
    return [(f.name.upper(), str(f.default), f.metadata["doc"])
            for f in dataclasses.fields(AccessSettings)]


def closest(value: str, choices: Iterable[str]) -> str | None:
    """The most similar choice (difflib), compared case- and separator-insensitively."""
    norm = {_squash(c): c for c in choices}
    match = difflib.get_close_matches(_squash(value), list(norm), n=1, cutoff=0.6)
    return norm[match[0]] if match else None


def unknown_variables(env: Mapping[str, str], known: Iterable[str],
                      prefix: str = PREFIX) -> list[tuple[str, str | None]]:
    """(`GATEWAY_X`, closest known `GATEWAY_Y` or None) for every variable no setting knows.

    `known` are setting names without the prefix (`AUTH_MODE`, `CONFIG`, ...).
    """
    names = {k.upper() for k in known}
    out = []
    for variable in sorted(env):
        if not variable.startswith(prefix) or variable[len(prefix):] in names:
            continue
        hint = closest(variable[len(prefix):], names)
        out.append((variable, prefix + hint if hint else None))
    return out


def startup_problems(settings: AccessSettings, *, binds: Iterable[str],
                     cors_origins: str = "") -> list[str]:
    """Why `serve`/`dimse` must refuse to start, one sentence each (empty: fine)."""
    problems = []
    remote = [b for b in binds if b and not is_loopback_bind(b)]
    if settings.auth_mode == "off" and remote and not settings.auth_allow_anonymous_remote:
        problems.append(
            f"AUTH_MODE=off on {', '.join(remote)} would let anyone on the network read and "
            "write every patient; set AUTH_MODE=public-read or required with AUTH_ISSUER, "
            "bind to 127.0.0.1, or set AUTH_ALLOW_ANONYMOUS_REMOTE=true if that is intended")
    if settings.auth_mode != "off":
        if not settings.auth_issuer and not settings.auth_introspection_url:
            problems.append(f"AUTH_MODE={settings.auth_mode} needs AUTH_ISSUER (or "
                            "AUTH_INTROSPECTION_URL) to check tokens")
        if "*" in [o.strip() for o in cors_origins.split(",")]:
            problems.append("CORS_ORIGINS=* with access control on lets any web page use a "
                            "signed-in user's token; list the viewer origins instead")
    if settings.auth_introspection_url and not (settings.auth_client_id
                                                and settings.auth_client_secret):
        problems.append("AUTH_INTROSPECTION_URL needs AUTH_CLIENT_ID and AUTH_CLIENT_SECRET")
    return problems


def is_loopback_bind(bind: str) -> bool:
    """`127.0.0.1:8080`, `[::1]:80`, `localhost:1`: loopback; `0.0.0.0:80`, a name: not."""
    host = bind.rsplit(":", 1)[0].strip("[]") if ":" in bind else bind
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _squash(text: str) -> str:
    return "".join(c for c in text.lower() if c.isalnum())


def _coerce(f: dataclasses.Field, raw: str) -> Any:
    if f.type in (bool, "bool"):
        lowered = raw.strip().lower()
        if lowered not in ("1", "true", "yes", "on", "0", "false", "no", "off", ""):
            raise ValueError(f"{f.name.upper()}={raw!r} is not a boolean")
        return lowered in ("1", "true", "yes", "on")
    if f.type in (int, "int"):
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"{f.name.upper()}={raw!r} is not a whole number") from None
    return raw
