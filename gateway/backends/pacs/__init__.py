"""A DIMSE-only PACS behind the Archive protocol, with a pull-through cache. See docs/dimse.md."""
