"""Archive backends beyond the embedded one (``backends.pacs``: a PACS in front of a cache)."""
