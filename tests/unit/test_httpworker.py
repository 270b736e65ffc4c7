"""The gunicorn worker's own answers (gateway/serving/httpworker.py): which face a request line
belongs to, and each face's form, byte for byte parseable by an HTTP client."""
from __future__ import annotations

import http.client
import io

import orjson
import pytest
from gunicorn.config import Config
from gunicorn.http import errors

from gateway.serving.httpworker import client_error, error_bytes, target_of


@pytest.mark.parametrize("head, path", [
    (b"GET /fhir/Patient?name=a HTTP/1.1\r\nHost", "/fhir/Patient?name=a"),
    (b"GET http://gw:8080/dicomweb/studies?x=1", "/dicomweb/studies?x=1"),
    (b"GET /wado?requestType=WADO&studyUID=1.2.3", "/wado?requestType=WADO&studyUID=1.2.3"),
    (b"GET", ""),
    (b"", ""),
])
def test_target_of_a_request_head(head: bytes, path: str) -> None:
    assert target_of(head) == path


class _Sock:
    def __init__(self, data: bytes) -> None:
        self.file = io.BytesIO(data)

    def makefile(self, *args, **kwargs) -> io.BytesIO:
        return self.file


def parsed(raw: bytes) -> tuple[http.client.HTTPResponse, dict]:
    response = http.client.HTTPResponse(_Sock(raw))  # type: ignore[arg-type]
    response.begin()
    return response, orjson.loads(response.read())


def test_fhir_gets_an_operation_outcome() -> None:
    response, doc = parsed(error_bytes("/fhir/Patient", 414, "too long", "*"))
    assert response.status == 414 and response.getheader("Connection") == "close"
    assert response.getheader("Content-Type").startswith("application/fhir+json")
    assert response.getheader("Access-Control-Allow-Origin") == "*"
    assert doc == {"resourceType": "OperationOutcome",
                   "issue": [{"severity": "error", "code": "too-long", "diagnostics": "too long"}]}


@pytest.mark.parametrize("path, warning", [("/dicomweb/studies", True), ("/wado", True),
                                           ("/healthz", False)])
def test_dicomweb_and_the_rest_get_json(path: str, warning: bool) -> None:
    response, doc = parsed(error_bytes(path, 431, 'header "X" too large', None))
    assert response.status == 431 and response.getheader("Content-Type") == "application/json"
    assert doc == {"status": 431, "error": "Request Header Fields Too Large",
                   "message": 'header "X" too large'}
    assert (response.getheader("Warning") == "299 tcia-gateway \"header 'X' too large\"") is warning
    assert response.getheader("Access-Control-Allow-Origin") is None


@pytest.mark.parametrize("exc, status", [
    (errors.LimitRequestLine(40000, 32768), 414),
    (errors.LimitRequestHeaders("limit request headers fields size"), 431),
    (errors.InvalidChunkSize(b"zz"), 400),
    (errors.InvalidRequestLine("GET"), 400),
    (errors.UnsupportedTransferCoding("gzip"), 501),
])
def test_gunicorn_request_errors_keep_their_status(exc: Exception, status: int) -> None:
    assert client_error(exc, Config())[0] == status


def test_application_errors_stay_gunicorns() -> None:
    assert client_error(errors.InvalidResponseHeader("X"), Config()) is None
    assert client_error(RuntimeError("boom"), Config()) is None
