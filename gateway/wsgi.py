"""WSGI entry point for gunicorn: ``gateway.wsgi:app`` (settings from GATEWAY_* / config)."""
from . import create_app

app = create_app()
