"""The Python ceiling: one trivial Flask route, served by the same gunicorn config."""
from flask import Flask

app = Flask(__name__)


@app.get("/healthz")
def healthz() -> tuple[str, int]:
    return "ok", 200
