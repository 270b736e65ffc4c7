"""gunicorn configuration for `tcia-gateway serve` (production HTTP), as a module:
``gunicorn -c python:gateway.serving.gunicorn_conf gateway.wsgi:app``.

Bind address and worker count come from the gateway settings (``serve`` hands every
resolved setting to gunicorn as GATEWAY_* variables; run by hand, GATEWAY_* and the TOML
file in GATEWAY_CONFIG apply), so one source of truth. A worker that exits closes its
archive (associations with a PACS, helper processes, database connections).
"""
from typing import Any

from gateway.config import Settings

_settings = Settings.load()

bind = _settings.http_bind
workers = _settings.workers
# gthread: a few threads per worker overlap file reads and socket writes of large
# multipart bodies, and a slow viewer downloading a CT series does not hold a whole
# worker the way a sync worker would. Measured on this 2-core machine (wrk -c8, QIDO
# series of a study, 3 s runs after warm-up, 2026-11): gthread 4 workers x 4 threads
# 1760-2045 req/s, 2 threads + worker_connections=4 1720-1830, 4 threads +
# worker_connections=4 1580-1630, sync 4 workers 1720-1890, sync 5 workers 1780-1960.
# No configuration beat the default; all of them show an occasional ~720 req/s run
# when one worker happens to accept most of wrk's connections at once.
# gateway.serving.httpworker.Worker is gthread with request lines up to REQUEST_LINE_BYTES, errors
# gunicorn answers itself in each face's form, and lingering closes off the event loop.
worker_class = "gateway.serving.httpworker.Worker"
threads = 4  # UPLOAD_SLOTS (default 3) keeps one of them free of request bodies
# Large WADO-RS retrieves and STOW uploads can take long on slow links.
timeout = 300
graceful_timeout = 30
keepalive = 30
# Request line: OHIF's and dicomweb-client's QIDO URLs carry long UID lists. Header
# fields stay at gunicorn's limits (100 fields of 8190 bytes).
limit_request_line = _settings.request_line_bytes
# Let every worker open its own database connections after fork.
preload_app = False
accesslog = "-"
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms'
logger_class = "gateway.serving.accesslog.RedactingLogger"  # no access_token in any line
errorlog = "-"
loglevel = _settings.log_level.lower()
# gunicorn 27's control socket defaults to one fixed path per user: several gateways
# (tests, benchmarks) on one machine would fight over it, and we do not use it.
control_socket_disable = True


def worker_exit(server: Any, worker: Any) -> None:
    """gunicorn hook, in the worker as it exits: release what the app holds."""
    app = getattr(worker, "wsgi", None)
    if app is not None:
        from gateway import close_app
        close_app(app)
