"""The DIMSE toolkit: SCU with a bounded association pool (C-ECHO/FIND/GET/MOVE/STORE),
presentation contexts, identifiers and sockets; used by the SCP and the PACS backend.
See docs/dimse.md."""
