"""Cohorts: a question across clinical data and images, frozen as a list of series, then handed
to a manifest, a ZIP download, a FHIR Group and Bulk Data export, or the viewer (docs/cohorts.md).

This face sits above the others (it composes them): it parses FHIR searches with the FHIR
face's parser and SQL, reads the embedded archive's index and files, and offers its cohort
book to the FHIR face (Group, $export) through ``app.extensions[EXTENSION]``, which the FHIR
face reads by the protocol it declares (fhir/group.py), never by importing this package.
"""
from __future__ import annotations

from flask import Flask

EXTENSION = "tcia_cohorts"


def register(app: Flask) -> None:
    """With the embedded archive and FHIR on the same index: the book and /cohorts."""
    from . import routes
    from .book import CohortBook
    fhir = app.extensions.get("tcia_fhir")
    if fhir is None or fhir.studies is None:  # a remote PACS: nothing to join or stream
        return
    archive = app.extensions["tcia_gateway"]["archive"]
    app.extensions[EXTENSION] = CohortBook(fhir.repository.engine, fhir, archive)
    app.register_blueprint(routes.bp)
