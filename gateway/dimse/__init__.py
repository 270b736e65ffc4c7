"""DIMSE both ways: the SCU that fronts a PACS (pool, C-FIND/C-GET/C-MOVE/C-STORE)
and the Query/Retrieve SCP that publishes the archive. See docs/dimse.md."""
