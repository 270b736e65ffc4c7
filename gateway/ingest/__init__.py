"""Getting data in: DICOM files, folders and zips, and the clinical sheet (rows → FHIR)."""
