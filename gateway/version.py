"""The software version, in one place (CapabilityStatement, OpenAPI, the package)."""

__version__ = "0.1.0"
