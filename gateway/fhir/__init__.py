"""FHIR R4 API at /fhir: the clinical correlates mapped by the mapping (gateway/mapping/yaml,
or MAPPINGS_DIR), and ImagingStudy + Endpoint built from the archive. ``register(app)`` is
called by create_app."""
from __future__ import annotations

from flask import Flask

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
    state = app.extensions["tcia_gateway"]
    settings = state["settings"]
    spec = load(settings.mappings_dir or None)
    repository = Repository(make_engine(settings.index_url))
    app.extensions[EXTENSION] = FhirService(
        repository, ImagingBuilder(spec.imaging, context.public_base),
        max_count=settings.max_fhir_count, cache_items=settings.fhir_cache_items,
        cache_bytes=settings.fhir_cache_bytes)
    state["closers"].append(repository.engine.dispose)
    app.register_blueprint(routes.bp)
