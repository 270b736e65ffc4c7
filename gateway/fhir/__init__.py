"""FHIR R4 API at /fhir: the clinical correlates mapped by ``mappings/*.yaml``, and
ImagingStudy + Endpoint built from the archive. ``register(app)`` is called by create_app."""
from __future__ import annotations

from flask import Flask

EXTENSION = "tcia_fhir"


def register(app: Flask) -> None:
    """Validate the mapping (a broken mapping stops start-up with file and line), open the
    repository in the index database, and add the /fhir blueprint with its error handlers."""
    from .. import context
    from ..archive.index import make_engine
    from ..mapping.spec import load
    from . import routes
    from .imaging import ImagingBuilder
    from .repository import Repository
    from .service import FhirService
    settings = app.extensions["tcia_gateway"]["settings"]
    spec = load()
    repository = Repository(make_engine(settings.index_url))
    app.extensions[EXTENSION] = FhirService(repository, ImagingBuilder(spec.imaging, context.public_base),
                                            max_count=settings.max_fhir_count)
    app.register_blueprint(routes.bp)
