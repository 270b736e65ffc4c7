"""Drive an authorization-code + PKCE flow (RFC 6749 4.1, RFC 7636) with a plain HTTP client.

Follows oidc-provider's development interactions as a person would: the login form
(`login`, `password`; any values, the login becomes `sub`), then the consent form
("Continue"), then takes the code from the redirect to the client and exchanges it.
"""
from __future__ import annotations

import base64
import hashlib
import html
import re
import secrets
from dataclasses import dataclass
from urllib.parse import parse_qs, urljoin, urlsplit

import requests

from .oidc_idp import OidcProvider

_FORM = re.compile(r'<form[^>]*action="([^"]+)"[^>]*>(.*?)</form>', re.DOTALL)
_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"')


@dataclass(frozen=True)
class Pkce:
    verifier: str
    challenge: str

    @classmethod
    def new(cls) -> Pkce:
        verifier = secrets.token_urlsafe(48)  # RFC 7636 4.1: 43-128 characters
        digest = hashlib.sha256(verifier.encode()).digest()
        return cls(verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode())


def _form(page: requests.Response) -> tuple[str, dict[str, str]]:
    """The action URL and hidden fields of the page's (single) interaction form."""
    match = _FORM.search(page.text)
    if match is None:
        raise AssertionError(f"no form on {page.url}: {page.status_code} {page.text[:500]}")
    action = urljoin(page.url, html.unescape(match.group(1)))
    return action, {k: html.unescape(v) for k, v in _HIDDEN.findall(match.group(2))}


def _follow(session: requests.Session, response: requests.Response,
            issuer: str) -> requests.Response | str:
    """Follow redirects while they stay on the issuer; return the first URL that leaves it."""
    while response.is_redirect:
        target = urljoin(response.url, response.headers["Location"])
        if not target.startswith(issuer + "/"):
            return target
        response = session.get(target, allow_redirects=False, timeout=10)
    return response


def authorization_code(provider: OidcProvider, client_id: str, scope: str, *,
                       login: str = "alice", password: str = "any",
                       redirect_uri: str | None = None, openid: bool = True,
                       session: requests.Session | None = None,
                       pages: list[str] | None = None) -> dict:
    """The token endpoint's JSON after logging in as `login` and consenting.

    `pages`, if given, receives the HTML of each interaction page shown (login, consent)."""
    session = session or requests.Session()
    client = provider.client(client_id)
    meta = next(c for c in provider.config["clients"] if c["client_id"] == client_id)
    redirect_uri = redirect_uri or meta["redirect_uris"][0]
    pkce, state = Pkce.new(), secrets.token_urlsafe(12)
    params = {"client_id": client_id, "response_type": "code", "redirect_uri": redirect_uri,
              "scope": ("openid " if openid else "") + scope, "state": state,
              "code_challenge": pkce.challenge, "code_challenge_method": "S256"}
    first = session.get(provider.endpoint("authorization_endpoint"), params=params,
                        allow_redirects=False, timeout=10)
    page = _follow(session, first, provider.issuer)
    for fields in ({"login": login, "password": password}, {}):  # login, then consent
        if isinstance(page, str):
            break
        if pages is not None:
            pages.append(page.text)
        action, hidden = _form(page)
        posted = session.post(action, data={**hidden, **fields}, allow_redirects=False, timeout=10)
        page = _follow(session, posted, provider.issuer)
    if not isinstance(page, str):
        raise AssertionError(f"flow did not return to the client: {page.status_code} {page.text[:500]}")
    query = parse_qs(urlsplit(page).query)
    if "code" not in query:
        raise AssertionError(f"no code in the redirect: {page}")
    if query.get("state") != [state]:
        raise AssertionError(f"state mismatch in {page}")
    data = {"grant_type": "authorization_code", "code": query["code"][0],
            "redirect_uri": redirect_uri, "code_verifier": pkce.verifier}
    if client.auth is None:
        data["client_id"] = client_id
    r = requests.post(provider.endpoint("token_endpoint"), data=data, auth=client.auth, timeout=10)
    if r.status_code != 200:
        raise AssertionError(f"code exchange: {r.status_code} {r.text}")
    return r.json()
