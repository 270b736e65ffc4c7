"""The one access table: every Flask endpoint, what it needs (docs/security.md).

A data endpoint names the SMART resource and the permission letters it needs (DICOM
operations count as ImagingStudy: QIDO `s`, every retrieval `r`, STOW `c`), the protocol
family its errors are answered in, and the audit action it is recorded as. `PUBLIC` marks
what serves no patient data (probes, discovery documents, the viewer's static files, the
FHIR 404/405 answers). `tests/integration/test_access_table.py` fails on an endpoint that is
missing here, so a new route cannot be served without a decision.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..access.scopes import IMAGING, DicomOp, dicom_permissions
from ..audit.events import Action, Face

FROM_KIND = "<kind>"  # the resource type is the route's `kind` argument


@dataclass(frozen=True)
class Rule:
    """What one endpoint needs; `resource` None means public."""

    resource: str | None = None
    permissions: str = ""
    face: Face = Face.DICOMWEB
    action: Action = Action.READ
    op: DicomOp | None = None
    whole: bool = False  # reads the archive outside any request scope: unrestricted callers only

    @property
    def public(self) -> bool:
        return self.resource is None

    def resource_of(self, view_args: dict | None) -> str:
        if self.resource == FROM_KIND:
            return str((view_args or {}).get("kind", ""))
        return self.resource or ""


PUBLIC = Rule()


def _dicom(op: DicomOp, face: Face = Face.DICOMWEB) -> Rule:
    action = {"s": Action.QUERY, "c": Action.CREATE}.get(dicom_permissions(op), Action.READ)
    return Rule(IMAGING, dicom_permissions(op), face, action, op)


def _fhir(resource: str, permissions: str, *, whole: bool = False) -> Rule:
    action = {"s": Action.QUERY, "c": Action.CREATE}.get(permissions, Action.READ)
    return Rule(resource, permissions, Face.FHIR, action, whole=whole)


def _json(resource: str, permissions: str, *, whole: bool = False) -> Rule:
    """A JSON API (cohorts): errors in the DICOMweb JSON form."""
    action = {"s": Action.QUERY, "c": Action.CREATE}.get(permissions, Action.READ)
    return Rule(resource, permissions, Face.DICOMWEB, action, whole=whole)


_QIDO = _dicom(DicomOp.QIDO)
_WADO = _dicom(DicomOp.WADO)

RULES: dict[str, Rule] = {
    # probes, discovery and static files
    "health.healthz": PUBLIC, "health.readyz": PUBLIC, "openapi.document": PUBLIC,
    "static": PUBLIC, "viewer.serve": PUBLIC, "viewer.to_slash": PUBLIC,
    "fhir.metadata": PUBLIC, "fhir.smart_configuration": PUBLIC, "fhir.unsupported": PUBLIC,
    # QIDO-RS
    "dicomweb.search_studies": _QIDO, "dicomweb.search_series": _QIDO,
    "dicomweb.search_study_series": _QIDO, "dicomweb.search_instances": _QIDO,
    "dicomweb.search_study_instances": _QIDO, "dicomweb.search_series_instances": _QIDO,
    # WADO-RS
    "dicomweb.retrieve_study": _WADO, "dicomweb.retrieve_series": _WADO,
    "dicomweb.retrieve_instance": _WADO, "dicomweb.study_metadata": _WADO,
    "dicomweb.series_metadata": _WADO, "dicomweb.instance_metadata": _WADO,
    "dicomweb.retrieve_frames": _WADO,
    "dicomweb.retrieve_bulk": _dicom(DicomOp.BULKDATA),
    "dicomweb.rendered_many": _dicom(DicomOp.RENDERED),
    "dicomweb.rendered_one": _dicom(DicomOp.RENDERED),
    "dicomweb.thumbnail_many": _dicom(DicomOp.THUMBNAIL),
    "dicomweb.thumbnail_one": _dicom(DicomOp.THUMBNAIL),
    "wado_uri.wado": _dicom(DicomOp.WADO_URI, Face.WADO_URI),
    # STOW-RS
    "dicomweb.store": _dicom(DicomOp.STOW),
    # FHIR
    "fhir.read": _fhir(FROM_KIND, "r"),
    "fhir.search_type": _fhir(FROM_KIND, "s"),
    "fhir.search_post": _fhir(FROM_KIND, "s"),
    "fhir.everything": _fhir("Patient", "r"),
    "fhir.audit_search": _fhir("AuditEvent", "s"),
    # Cohorts: frozen series lists made from searches (docs/cohorts.md). Jobs and frozen lists
    # are read outside the request that made them, so no request scope could narrow them:
    # a patient compartment or hidden collections refuse them (403 insufficient_scope).
    "fhir.group_read": _fhir("Group", "r", whole=True),
    "fhir.group_create": _fhir("Group", "c", whole=True),
    "fhir.export_system": _fhir("Patient", "r", whole=True),
    "fhir.export_patients": _fhir("Patient", "r", whole=True),
    "fhir.export_group": _fhir("Group", "r", whole=True),
    "fhir.export_poll": _fhir("Patient", "r", whole=True),
    "fhir.export_file": _fhir("Patient", "r", whole=True),
    "fhir.export_cancel": _fhir("Patient", "r", whole=True),
    "cohorts.create": _json("Group", "c", whole=True),
    "cohorts.read": _json("Group", "r", whole=True),
    "cohorts.manifest_view": _json("Group", "r", whole=True),
    "cohorts.download": _json("Group", "r", whole=True),
    "cohorts.viewer": _json("Group", "r", whole=True),
    "cohorts.facet_counts": _json("Patient", "s", whole=True),
    "cohorts.holdings": _json(IMAGING, "s", whole=True),
    "iid.invoke": _WADO,  # a redirect to the viewer, whose requests are checked themselves
    "home.index": PUBLIC,  # a static page over the JSON API above
    # The collection listing names collections and counts their studies: a search
    # (restricted collections are left out for callers not granted them).
    "collections.list_collections": _QIDO,
}
# /collections/<name>/dicomweb: the DICOMweb blueprint again (dicomweb/roots.py), same needs.
RULES.update({"collection_" + name: rule for name, rule in list(RULES.items())
              if name.startswith("dicomweb.")})


def rule_for(endpoint: str | None) -> Rule | None:
    """The rule of `endpoint`; None for an endpoint the table does not know."""
    return RULES.get(endpoint or "")
