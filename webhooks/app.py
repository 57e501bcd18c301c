"""The Flask app factory of the webhook service.

``create_app()`` loads settings like the CLI does (``$MENTORSYNC_CONFIG``, then ``MENTORSYNC_*``
environment variables). ``create_app({"service": {...}, "salesforce": {...}})`` applies a mapping
of settings sections on top (tests, embedding); upper-case keys of the mapping (``TESTING``) go
to Flask's own config. ``create_app(settings)`` takes ready :class:`Settings`.

Errors: a sender's mistake is always a 4xx with a short reason (a SOAP fault on the Outbound
Message endpoint, JSON elsewhere); only our own bugs are 500s.
"""

from __future__ import annotations

import logging
import os
import traceback
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from connector.config import Settings, load_settings
from connector.errors import ConfigError
from connector.service.worker import Worker
from webhooks import outbound
from webhooks.runtime import EXTENSION, Runtime, configured_objects, runtime
from webhooks.signing import decode_secret

log = logging.getLogger(__name__)


def _keys(setting: str, value: str) -> list[bytes]:
    """Signing keys from a setting holding one or more space-separated ``whsec_`` secrets."""
    keys = []
    for secret in value.split():
        try:
            keys.append(decode_secret(secret))
        except ValueError as exc:
            raise ConfigError(f"service.{setting}", str(exc)) from None
    return keys


def _settings(settings_or_mapping: Settings | Mapping[str, Any] | None) -> tuple[Settings, dict]:
    if isinstance(settings_or_mapping, Settings):
        return settings_or_mapping, {}
    mapping = dict(settings_or_mapping or {})
    flask_config = {k: v for k, v in mapping.items() if k.isupper()}
    sections = {k: v for k, v in mapping.items() if not k.isupper()}
    return load_settings(env=os.environ, overrides=sections), flask_config


def create_app(
    settings_or_mapping: Settings | Mapping[str, Any] | None = None,
    *,
    worker: Worker | None = None,
) -> Flask:
    """Build the webhook service. ``worker`` (the queue handle) is built from settings if None."""
    settings, flask_config = _settings(settings_or_mapping)
    svc = settings.service
    app = Flask(__name__)
    app.config.from_mapping(
        # Werkzeug refuses bodies above this with 413, for Content-Length and chunked alike.
        MAX_CONTENT_LENGTH=svc.max_body_bytes,
        MAX_FORM_MEMORY_SIZE=svc.max_body_bytes,
    )
    app.config.from_mapping(flask_config)
    salesforce_keys = _keys("events_secret", svc.events_secret.get())
    moodle_keys = _keys("moodle_events_secret", svc.moodle_events_secret.get())
    worker = worker or Worker(settings)
    app.extensions[EXTENSION] = Runtime(
        settings=settings,
        db=worker.db,
        worker=worker,
        salesforce_event_keys=salesforce_keys,
        moodle_event_keys=moodle_keys,
        configured_objects=configured_objects(settings),
    )

    from webhooks import events, health

    app.register_blueprint(outbound.blueprint)
    app.register_blueprint(events.blueprint)
    app.register_blueprint(health.blueprint)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)
    return app


def _wants_soap() -> bool:
    return request.path.startswith(outbound.PATH_PREFIX)


def _http_error(exc: HTTPException) -> Response:
    """Every HTTP error as a short body in the endpoint's own language, never an HTML page."""
    status = exc.code or 500
    reason = exc.description or exc.name
    if status == 413:
        reason = (
            f"body larger than service.max_body_bytes ({runtime().settings.service.max_body_bytes})"
        )
    if _wants_soap():
        response = Response(
            outbound.fault(reason, server=status >= 500),
            status,
            content_type=outbound.SOAP_CONTENT_TYPE,
        )
    else:
        response = jsonify(error=exc.name.lower().replace(" ", "_"), detail=reason)
        response.status_code = status
    for name, value in exc.get_headers():
        if name.lower() not in {"content-type", "content-length"}:
            response.headers[name] = value
    return response


def _unexpected_error(exc: Exception) -> Response:
    """Our own bug: log where it happened, answer a plain 500.

    The log has the exception's class and the traceback's frames, not its message: a message
    may quote request data (a name, an email), which never goes to the log. The route is the
    rule (``.../outbound/<secret>``), never the path.
    """
    frames = "".join(traceback.format_tb(exc.__traceback__))
    log.error(
        "unhandled %s on %s %s\n%s", type(exc).__name__, request.method, request.url_rule, frames
    )
    if _wants_soap():
        return Response(
            outbound.fault("internal error", server=True),
            500,
            content_type=outbound.SOAP_CONTENT_TYPE,
        )
    response = jsonify(error="internal_error")
    response.status_code = 500
    return response
