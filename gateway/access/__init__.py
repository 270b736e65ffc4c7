"""Access control: the gateway as an OAuth 2.0 resource server (RFC 6750, RFC 9068, RFC 7662)
with SMART App Launch 2.x scopes, one policy for DICOMweb, WADO-URI, FHIR and DIMSE.

`build_policy(settings, public_url)` assembles the pieces: the JWKS cache and introspection
client share one `Fetcher`; the validator keeps verified tokens per process.
Nothing here imports Flask or opens a listening socket.
"""
from __future__ import annotations

from .errors import (
    AccessError,
    CallingAeRefused,
    ExpiredToken,
    IdentityRefused,
    InsufficientScope,
    InvalidRequest,
    InvalidToken,
    IssuerUnavailable,
    MissingCredentials,
    ServiceNotPermitted,
)
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .policy import AuthMode, Permit, Policy
from .principal import ANONYMOUS, Principal
from .settings import AccessSettings

if TYPE_CHECKING:
    from .fetch import Fetcher
    from .validator import TokenValidator

# The token machinery (PyJWT, cryptography: ~8 MB per worker) loads only when a validator
# is built: AUTH_MODE=off never pays for it.
_LAZY = {"Fetcher": "fetch", "Introspector": "introspection", "JwksCache": "jwks",
         "TokenValidator": "validator"}


def __getattr__(name: str) -> Any:  # PEP 562
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = ["ANONYMOUS", "AccessError", "AccessSettings", "AuthMode", "CallingAeRefused",
           "ExpiredToken", "IdentityRefused", "InsufficientScope", "InvalidRequest",
           "InvalidToken", "IssuerUnavailable", "MissingCredentials", "Permit", "Policy",
           "Principal", "ServiceNotPermitted", "TokenValidator", "build_policy",
           "build_validator"]


def build_validator(settings: AccessSettings, public_url: str,
                    fetcher: Fetcher | None = None) -> TokenValidator:
    """The validator for AUTH_ISSUER / AUTH_AUDIENCE, with introspection when configured."""
    from .fetch import Fetcher
    from .introspection import Introspector
    from .jwks import JwksCache
    from .validator import TokenValidator
    fetcher = fetcher or Fetcher()
    audience = settings.audience(public_url)
    jwks = JwksCache(settings.auth_issuer, fetcher, max_age=settings.auth_jwks_max_age,
                     min_refresh_interval=settings.auth_jwks_refresh_interval) \
        if settings.auth_issuer else None
    introspector = None
    if settings.auth_client_id and settings.auth_client_secret:
        url: str | Callable[[], str] = settings.auth_introspection_url
        if not url and jwks is not None:
            found = jwks  # the issuer's introspection_endpoint, read when first needed
            url = lambda: str(found.metadata().get("introspection_endpoint", ""))  # noqa: E731
        if url:
            introspector = Introspector(url, settings.auth_client_id, settings.auth_client_secret,
                                        audience=audience, issuer=settings.auth_issuer or None,
                                        fetcher=fetcher,
                                        collections_claim=settings.auth_collections_claim)
    return TokenValidator(settings.auth_issuer, audience, jwks=jwks, introspector=introspector,
                          leeway=settings.auth_leeway,
                          collections_claim=settings.auth_collections_claim)


def build_policy(settings: AccessSettings, public_url: str,
                 fetcher: Fetcher | None = None) -> Policy:
    mode = AuthMode(settings.auth_mode)
    validator = None if mode is AuthMode.OFF else build_validator(settings, public_url, fetcher)
    return Policy(mode, validator, restricted_collections=settings.restricted_collections)
