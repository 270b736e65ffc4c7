"""Bearer token extraction (RFC 6750 2): the Authorization header only.

RFC 6750 2.2 (form body) and 2.3 (URI query) transports are refused on purpose: a token in
a URL ends up in proxy logs, browser history and Referer headers. A request offering a
token in two places at once is refused too (RFC 6750 3.1 "more than one method"), so the
client learns which one the gateway read. Any other authentication scheme (Basic, ...)
counts as no credentials: RFC 6750 3.1 asks for a plain challenge then.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from .errors import InvalidRequest

PARAMETER = "access_token"
# RFC 6750 2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_SCHEME = re.compile(r"([!#$%&'*+\-.^_`|~0-9A-Za-z]+)(?:[ ]+(.*))?\Z", re.DOTALL)


def bearer_token(authorization: Iterable[str] | str | None,
                 query: Mapping[str, object] | Iterable[str] = (),
                 form: Mapping[str, object] | Iterable[str] = ()) -> str | None:
    """The bearer token of a request, or None when it offers none.

    `authorization` is the Authorization header value(s) (a list when the header came more
    than once); `query` and `form` are the parameter names (or mappings) of the URI query
    and of an `application/x-www-form-urlencoded` body. Raises `InvalidRequest`.
    """
    if isinstance(authorization, str) and not query and not form:
        return _parse_header(authorization)  # one header, no parameters: every viewer request
    values = [authorization] if isinstance(authorization, str) else list(authorization or ())
    in_query, in_form = PARAMETER in _names(query), PARAMETER in _names(form)
    if in_query:
        raise InvalidRequest("access tokens in the query string are refused; "
                             "send an Authorization: Bearer header")
    if in_form:
        raise InvalidRequest("access tokens in the request body are refused; "
                             "send an Authorization: Bearer header")
    if len(values) > 1:
        raise InvalidRequest("more than one Authorization header")
    if not values:
        return None
    return _parse_header(values[0])


def _parse_header(value: str) -> str | None:
    match = _SCHEME.match(value.strip())
    if match is None:
        raise InvalidRequest("malformed Authorization header")
    scheme, credentials = match.group(1), (match.group(2) or "").strip()
    if scheme.lower() != "bearer":  # RFC 7235 2.1: the scheme is case-insensitive
        return None
    if not credentials:
        raise InvalidRequest("Bearer without a token")
    if not _B64TOKEN.fullmatch(credentials):
        raise InvalidRequest("malformed Bearer token (RFC 6750 2.1 b64token)")
    return credentials


def _names(params: Mapping[str, object] | Iterable[str]) -> set[str]:
    return set(params.keys()) if isinstance(params, Mapping) else set(params)
