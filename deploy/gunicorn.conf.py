"""gunicorn configuration for `tcia-gateway serve` (production HTTP).

Bind address and worker count come from the gateway settings (GATEWAY_HTTP_BIND,
GATEWAY_WORKERS, or the TOML file in GATEWAY_CONFIG), so one source of truth.
"""
from gateway.config import Settings

_settings = Settings.load()

bind = _settings.http_bind
workers = _settings.workers
# gthread: a few threads per worker overlap file reads and socket writes of large
# multipart bodies without a second process per connection.
worker_class = "gthread"
threads = 4
# Large WADO-RS retrieves and STOW uploads can take long on slow links.
timeout = 300
graceful_timeout = 30
keepalive = 30
# Let every worker open its own database connections after fork.
preload_app = False
accesslog = "-"
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms'
errorlog = "-"
loglevel = _settings.log_level.lower()
# gunicorn 27's control socket defaults to one fixed path per user: several gateways
# (tests, benchmarks) on one machine would fight over it, and we do not use it.
control_socket_disable = True
