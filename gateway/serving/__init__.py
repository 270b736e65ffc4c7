"""How the gateway is served: the gunicorn configuration module ``gunicorn_conf``."""
