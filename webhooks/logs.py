"""Keep the secret path segment out of the web server's own log lines.

With ``service.outbound_path_secret`` the Outbound Message URL is a credential. mentorsync never
logs it (its error handler logs the route pattern, and the access log is off), but gunicorn logs
the request line of a request it cannot parse ("Invalid request from ip=...: Invalid HTTP
request line: 'POST /hooks/salesforce/outbound/<secret> ...'") and the URI of a request whose
handling failed outside the app. :func:`install` puts a filter on gunicorn's error logger that
replaces whatever follows the Outbound Message path with ``<redacted>``.
"""

from __future__ import annotations

import logging
import re

SECRET_PATH = re.compile(r"(/hooks/salesforce/outbound/)[^\s'\"]+")
REDACTED = r"\1<redacted>"


class RedactSecretPaths(logging.Filter):
    """Rewrites a record's message when it holds a path below the Outbound Message endpoint."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Always keep the record; redact its message first if needed."""
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001  (a bad format: the handler reports it, not a filter)
            return True
        redacted = SECRET_PATH.sub(REDACTED, message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def install(logger_name: str = "gunicorn.error") -> None:
    """Add the filter to ``logger_name`` (once; gunicorn's workers inherit it on fork)."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, RedactSecretPaths) for f in logger.filters):
        logger.addFilter(RedactSecretPaths())
