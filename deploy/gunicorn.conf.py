"""Example gunicorn settings for the mentorsync webhook service.

Used either way:

    mentorsync serve --gunicorn-config deploy/gunicorn.conf.py
    gunicorn -c deploy/gunicorn.conf.py 'webhooks:create_app()'

(the second reads settings from $MENTORSYNC_CONFIG and MENTORSYNC_* like the CLI does). Values
here win over `mentorsync serve`'s own (bind from service.bind, 2 workers x 4 threads).
"""

# Behind a reverse proxy on the same machine: listen on loopback only.
bind = "127.0.0.1:8080"

# Webhook requests are short and spend their time in one database commit: a few processes with
# a few threads each. SQLite takes one writer at a time, so more processes do not add throughput
# with the default state database; with PostgreSQL, about 2 x CPU cores.
workers = 2
worker_class = "gthread"
threads = 4

# Salesforce waits up to 2 minutes for an Ack; answer well before, or free the worker.
timeout = 30
graceful_timeout = 20
keepalive = 5

# Request line and headers only; the body limit is service.max_body_bytes (answered 413).
limit_request_line = 4094
limit_request_fields = 50

# No access log: with service.outbound_path_secret the URL path carries a secret. If you need
# one, log without the path, e.g. access_log_format = '%(h)s %(m)s %(s)s %(L)s'.
accesslog = None
errorlog = "-"
loglevel = "info"

# Trust X-Forwarded-* from the local proxy only.
forwarded_allow_ips = "127.0.0.1"

# gunicorn's control socket is not used by mentorsync (and would be shared per user).
control_socket_disable = True

proc_name = "mentorsync-web"


def on_starting(server: object) -> None:
    """gunicorn logs request lines it cannot parse: take the secret path segment out of them."""
    from webhooks import logs

    logs.install()
