"""Gateway-wide error handling: JSON for routes outside the protocol families.

DICOMweb and FHIR register their own handlers on their blueprints (DICOMweb
status + reason, FHIR OperationOutcome); this one covers everything else.
"""
from __future__ import annotations

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException


def register(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        response = jsonify(status=exc.code, error=exc.name, message=exc.description)
        response.status_code = exc.code or 500
        return response
