"""Access errors as protocol answers, pure data (the faces only serialise these).

- FHIR: an OperationOutcome whose issue code is the error's (`login`, `expired`,
  `forbidden`, ...), with the RFC 6750 challenge in `WWW-Authenticate`.
- DICOMweb and WADO-URI: a JSON reason with the RFC 6750 names, the same challenge.
Both bodies carry `Cache-Control: no-store`: an error about a token is never cached.
"""
from __future__ import annotations

from dataclasses import dataclass

from .errors import REALM, AccessError


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: dict[str, object]


def fhir_answer(error: AccessError, realm: str = REALM) -> Answer:
    issue: dict[str, object] = {"severity": "error", "code": error.fhir_code,
                                 "diagnostics": error.description}
    if error.scope:
        issue["details"] = {"text": f"scope needed: {error.scope}"}
    body: dict[str, object] = {"resourceType": "OperationOutcome", "issue": [issue]}
    return Answer(error.status, _headers(error, realm), body)


def dicomweb_answer(error: AccessError, realm: str = REALM) -> Answer:
    return Answer(error.status, _headers(error, realm), error.as_dict())


def _headers(error: AccessError, realm: str) -> dict[str, str]:
    headers = {"Cache-Control": "no-store", **error.headers(realm)}
    if error.status == 503:
        headers["Retry-After"] = "5"
    return headers
