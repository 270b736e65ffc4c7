"""The clinical store: FHIR resources mapped from the clinical sheet, in the index database."""
