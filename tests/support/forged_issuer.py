"""A forged OIDC issuer on loopback: discovery + JWKS for the token forge's keys.

Serves `/.well-known/openid-configuration` (OpenID Connect Discovery 1.0 section 3) and
`/jwks` with the keys currently published, plus the attacker's JWKS and certificate that
forged `jku`/`x5u` headers point at (a resource server must never fetch those). Counts the
requests per path, so a test can prove a flood of unknown `kid`s does not hammer `/jwks`.
"""
from __future__ import annotations

import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .tokens import Forge, SigningKey, jwks


class ForgedIssuer:
    """Start with `ForgedIssuer(audience)`; `close()` stops the server thread."""

    def __init__(self, audience: str, keys: list[SigningKey] | None = None) -> None:
        self.hits: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.forge = Forge(self.url, audience, **({"key": keys[0]} if keys else {}))
        self._published = list(keys or [self.forge.key])
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True, name=f"forged-issuer-{self.port}")
        self._thread.start()

    @property
    def jwks_uri(self) -> str:
        return self.url + "/jwks"

    @property
    def jku_url(self) -> str:
        return self.url + "/attacker/jwks"

    @property
    def x5u_url(self) -> str:
        return self.url + "/attacker/cert.pem"

    def publish(self, keys: list[SigningKey], *, signer: SigningKey | None = None) -> None:
        """Replace the published JWKS (key rotation); `signer` becomes the forge's key."""
        with self._lock:
            self._published = list(keys)
        self.forge.key = signer or keys[0]

    def published(self) -> list[SigningKey]:
        with self._lock:
            return list(self._published)

    def discovery(self) -> dict:
        return {"issuer": self.url, "jwks_uri": self.jwks_uri,
                "authorization_endpoint": self.url + "/auth",
                "token_endpoint": self.url + "/token",
                "response_types_supported": ["code"], "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"]}

    def document(self, path: str) -> tuple[int, str, bytes]:
        """(status, content type, body) for a GET of `path`."""
        json_type = "application/json"
        if path == "/.well-known/openid-configuration":
            return 200, json_type, json.dumps(self.discovery()).encode()
        if path == "/jwks":
            return 200, "application/jwk-set+json", json.dumps(jwks(self.published())).encode()
        if path == "/attacker/jwks":
            return 200, "application/jwk-set+json", json.dumps(jwks([self.forge.attacker])).encode()
        if path == "/attacker/cert.pem":
            return 200, "application/pem-certificate-chain", self.forge.attacker.self_signed_cert_pem()
        return 404, json_type, b'{"error":"not_found"}'

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> ForgedIssuer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _handler(issuer: ForgedIssuer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            with issuer._lock:
                issuer.hits[path] += 1
            status, ctype, body = issuer.document(path)
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

    return Handler
