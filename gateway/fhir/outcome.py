"""OperationOutcome for every FHIR error (R4 OperationOutcome, issue-type codes)."""
from __future__ import annotations

import orjson


class FhirError(Exception):
    """An error a FHIR client should see as an OperationOutcome with this HTTP status."""

    def __init__(self, status: int, code: str, message: str, *, expression: str | None = None,
                 headers: dict | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code  # R4 issue-type: not-found, invalid, not-supported, processing, exception
        self.message = message
        self.expression = expression
        self.headers = headers or {}

    def with_headers(self, headers: dict) -> "FhirError":
        self.headers.update(headers)
        return self


def not_found(message: str) -> FhirError:
    return FhirError(404, "not-found", message)


def invalid(message: str, parameter: str | None = None) -> FhirError:
    return FhirError(400, "invalid", message, expression=parameter)


def not_supported(status: int, message: str, parameter: str | None = None) -> FhirError:
    return FhirError(status, "not-supported", message, expression=parameter)


def issue(severity: str, code: str, message: str, parameter: str | None = None) -> dict:
    item: dict[str, object] = {"severity": severity, "code": code, "diagnostics": message}
    if parameter:
        # The offending search parameter, named where a client (and a person) looks first.
        item["details"] = {"text": f"parameter: {parameter}"}
    return item


def outcome(issues: list[dict]) -> dict:
    return {"resourceType": "OperationOutcome", "issue": issues}


def error_body(error: FhirError) -> bytes:
    return orjson.dumps(outcome([issue("error", error.code, error.message, error.expression)]))
