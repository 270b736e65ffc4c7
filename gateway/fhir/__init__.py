"""FHIR R4 API at /fhir: the clinical correlates mapped by ``mappings/*.yaml``, and
ImagingStudy + Endpoint built from the archive. ``register(app)`` is called by create_app."""
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
    from ..archive.index import make_engine
    from ..mapping.spec import load
    from . import routes
    from .imaging import ImagingBuilder
    from .repository import Repository
    from .service import FhirService
    from .studies import StudyIndex
    settings = app.extensions["tcia_gateway"]["settings"]
    spec = load()
    repository = Repository(make_engine(settings.index_url))
    builder = ImagingBuilder(spec.imaging, context.public_base)
    archive = app.extensions["tcia_gateway"]["archive"]
    studies = StudyIndex(repository, builder) if shares_index(archive, repository.engine) else None
    app.extensions[EXTENSION] = FhirService(repository, builder, studies,
                                            max_count=settings.max_fhir_count)
    app.register_blueprint(routes.bp)


def shares_index(archive: object, engine: "Engine") -> bool:
    """Whether the archive is the embedded one with its index in this database, so that
    ImagingStudy searches can join its tables with the FHIR tables."""
    from ..archive.local import LocalArchive
    if not isinstance(archive, LocalArchive):
        return False
    theirs = archive.index.engine.url.render_as_string(hide_password=False)
    return theirs == engine.url.render_as_string(hide_password=False)
