"""Every endpoint of the app has a decision in the one access table (gateway/guard/table.py):
a route added without one fails here, before it can be served unguarded."""
from __future__ import annotations

from pathlib import Path

from gateway import close_app, create_app
from gateway.config import Settings
from gateway.guard.table import RULES


def test_every_endpoint_is_in_the_access_table(tmp_path: Path) -> None:
    app = create_app(Settings().replace(data_dir=tmp_path / "data"))
    try:
        endpoints = {rule.endpoint for rule in app.url_map.iter_rules()}
    finally:
        close_app(app)
    missing = sorted(endpoints - set(RULES))
    assert not missing, f"endpoints without an access rule: {missing}"
    assert not sorted(set(RULES) - endpoints), "rules for endpoints that do not exist"


def test_data_endpoints_need_a_permission_and_public_ones_serve_no_patient_data() -> None:
    public = {name for name, rule in RULES.items() if rule.public}
    assert public == {"health.healthz", "health.readyz", "openapi.document", "static",
                      "viewer.serve", "viewer.to_slash", "fhir.metadata",
                      "fhir.smart_configuration", "fhir.unsupported", "home.index"}
    for name, rule in RULES.items():
        if name.startswith(("dicomweb.", "wado_uri.", "collection_dicomweb.", "collections.")):
            assert rule.resource == "ImagingStudy" and rule.permissions in ("s", "r", "c"), name
    assert RULES["dicomweb.store"].permissions == "c"
    assert RULES["fhir.audit_search"].resource == "AuditEvent"
