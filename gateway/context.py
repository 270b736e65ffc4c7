"""Access to the app's injected collaborators from inside a request."""
from __future__ import annotations

from flask import current_app, has_request_context, request

from .archive import Archive
from .config import Settings


def settings() -> Settings:
    return current_app.extensions["tcia_gateway"]["settings"]


def archive() -> Archive:
    return current_app.extensions["tcia_gateway"]["archive"]


def public_base() -> str:
    """Scheme://host[/prefix] for absolute links: PUBLIC_URL, or what the reverse proxy
    says (X-Forwarded-Proto/Host/Prefix, first value of each) when TRUST_PROXY is set."""
    current = settings()
    if current.trust_proxy and has_request_context():
        host = request.headers.get("X-Forwarded-Host", "").split(",")[0].strip()
        if host:
            proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip()
            prefix = request.headers.get("X-Forwarded-Prefix", "").split(",")[0].strip()
            return f"{proto or request.scheme}://{host}{prefix.rstrip('/')}"
    return current.public_base
