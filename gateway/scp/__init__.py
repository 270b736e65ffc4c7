"""The archive as a DICOM Query/Retrieve SCP (`tcia-gateway dimse`). See docs/dimse.md."""
