"""FHIR R4 API at /fhir: the clinical correlates mapped by the mapping (gateway/mapping/yaml,
or MAPPINGS_DIR), and ImagingStudy + Endpoint built from the archive. ``register(app)`` is
called by create_app."""
from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Flask

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

EXTENSION = "tcia_fhir"


def register(app: Flask) -> None:
    """Validate the mapping (a broken mapping stops start-up with file and line), open the
    repository in the index database, and add the /fhir blueprint with its error handlers."""
    from .. import context
    from ..archive.local.index import make_engine
    from ..mapping.spec import load
    from . import routes
    from .imaging import ImagingBuilder
    from ..clinical.repository import Repository
    from .service import FhirService
    from .studies import StudyIndex
    state = app.extensions["tcia_gateway"]
    settings = state["settings"]
    spec = load(settings.mappings_dir or None)
    repository = Repository(make_engine(settings.index_url))
    builder = ImagingBuilder(spec.imaging, context.public_base,
                             requires_token=None if settings.auth_mode == "off"
                             else settings.auth_mode == "required",
                             facts=context.collection_facts)
    archive = state["archive"]
    studies = StudyIndex(repository, builder) if shares_index(archive, repository.engine) else None
    app.extensions[EXTENSION] = FhirService(
        repository, builder, studies, max_count=settings.max_fhir_count,
        cache_items=settings.fhir_cache_items, cache_bytes=settings.fhir_cache_bytes)
    state["closers"].append(repository.engine.dispose)
    from . import export, group  # noqa: F401 - their views join the blueprint (Group, $export)
    from .exportjob import Jobs
    app.extensions[export.EXTENSION] = Jobs(repository.engine, settings.data_dir / "exports")
    app.register_blueprint(routes.bp)


def shares_index(archive: object, engine: "Engine") -> bool:
    """Whether the archive is the embedded one with its index in this database, so that
    ImagingStudy searches can join its tables with the FHIR tables."""
    from ..archive.local import LocalArchive
    if not isinstance(archive, LocalArchive):
        return False
    theirs = archive.index.engine.url.render_as_string(hide_password=False)
    return theirs == engine.url.render_as_string(hide_password=False)
