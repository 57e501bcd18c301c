"""The sandbox Moodle's HTTP side: ``/webservice/rest/server.php`` on a loopback thread.

A werkzeug threaded server runs a small WSGI app that behaves like Moodle 4.5's REST server:
parameters from the query string and a form-encoded body only (a JSON body is ignored), each
source cut like PHP (the query string at ``max_input_vars`` fields, the body at one more), the
token read only from ``wstoken``, errors as HTTP 200 bodies, XML unless
``moodlewsrestformat=json``, and a 303 redirect for a Host that is not the wwwroot's.

Knobs for tests and benchmarks: ``latency`` (seconds added to every call), ``faults`` (a
:class:`~sandbox.faults.FaultPlan`), ``timeout_seconds`` (how long a ``timeout`` fault holds the
answer), ``calls`` (a Counter per wsfunction).

Faults, per call, taken for the call's wsfunction:

- ``http503``: answered at once with HTTP 503 and an HTML page; nothing is processed.
- ``drop``: the connection is closed without an answer; nothing is processed.
- ``drop_after``: the call is processed (writes happen), then the connection is closed.
- ``timeout``: the call is processed (writes happen), then the answer is held for
  ``timeout_seconds`` so a client with a shorter read timeout gives up on a write that happened.

``race`` (:class:`~sandbox.faults.FirstCallRace`), once armed, acts out the race of concurrent
first calls: calls overlapping the first answer ``dmlwriteexception``, whatever the function.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from werkzeug.serving import BaseWSGIServer
from werkzeug.wrappers import Request, Response

from sandbox.faults import FaultPlan, FirstCallRace
from sandbox.moodle import catalog
from sandbox.moodle.functions import (
    FUNCTIONS,
    KNOWN_FUNCTIONS,
    XML_SHAPES,
    Caller,
    access_error,
)
from sandbox.moodle.site import Site
from sandbox.moodle.wire import (
    WRITE_EXCEPTION,
    MoodleError,
    error_xml,
    invalid_parameter,
    missing_record,
    moodle_exception,
    php_parse,
    to_xml,
    truncate_fields,
    validate_parameters,
)
from sandbox.serving import KeepAliveHandler, close_connections, make_loopback_server

log = logging.getLogger(__name__)

REST_PATH = "/webservice/rest/server.php"
STATE_FILE = "moodle.json"
MOODLE_FAULTS = frozenset({"http503", "timeout", "drop", "drop_after"})
_RESERVED = ("wstoken", "wsfunction", "moodlewsrestformat")

_PAGE_503 = (
    "<!DOCTYPE html>\n<html><head><title>503 Service Unavailable</title></head><body>"
    "<h1>Service Unavailable</h1><p>The server is temporarily unable to service your request "
    "due to maintenance downtime or capacity problems. Please try again later.</p></body></html>\n"
)


def _race_lost() -> tuple[None, MoodleError]:
    """What a loser of the first-call race answers (FirstCallRace), whatever the function."""
    return None, MoodleError(WRITE_EXCEPTION, "dmlwriteexception", "Error writing to database")


class _DroppedConnection(ConnectionAbortedError):
    """Raised after closing the socket on purpose; werkzeug treats it as a dropped client."""


class _QuietHandler(KeepAliveHandler):
    """No access log: request lines can carry tokens."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Log nothing per request."""


class MoodleSandbox:
    """A Moodle 4.5 stand-in on 127.0.0.1 for tests, benchmarks and the demo.

    ``site`` holds the data (with helpers for tests); ``token`` is the integration token.
    With ``data_dir`` the state is read from ``data_dir/moodle.json`` at construction and
    written there by :meth:`stop` (and :meth:`save`).
    """

    def __init__(
        self,
        data_dir: Path | None = None,
        *,
        max_input_vars: int = 5000,
        latency: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
        timeout_seconds: float = 2.0,
        debugging: bool = False,
        check_host: bool = True,
    ) -> None:
        if max_input_vars < 1:
            raise ValueError(f"max_input_vars must be >= 1, got {max_input_vars}")
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.max_input_vars = max_input_vars
        self.latency = latency
        self.host = host
        self.port = port
        self.timeout_seconds = timeout_seconds
        self.debugging = debugging
        self.check_host = check_host
        self.faults = FaultPlan(supported=MOODLE_FAULTS)
        self.race = FirstCallRace()  # the dmlwriteexception race of first calls; arm() to use
        self.calls: Counter[str] = Counter()
        self._calls_lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""
        state = self.state_file
        self.site = Site.load(state) if state is not None and state.exists() else Site.fresh()

    @property
    def state_file(self) -> Path | None:
        """Where the state is kept, when ``data_dir`` is set."""
        return self.data_dir / STATE_FILE if self.data_dir is not None else None

    @property
    def token(self) -> str:
        """The integration user's token (every function of the "Mentorship sync" service)."""
        return self.site.integration_token

    @property
    def connections(self) -> int:
        """TCP connections accepted since start (kept alive: about one per client session)."""
        server: Any = self._server
        return int(server.connections) if server is not None else 0

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> str:
        """Serve on ``host:port`` (0 = a free port) in a daemon thread; return the base URL."""
        if self._server is not None:
            raise RuntimeError("the Moodle sandbox is already running")
        self._stopping.clear()
        server = make_loopback_server(self.host, self.port, self._wsgi, _QuietHandler)
        self._server = server
        port = server.socket.getsockname()[1]
        self.url = f"http://{self.host}:{port}"
        self.site.wwwroot = self.url
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"moodle-sandbox-{port}",
            daemon=True,
        )
        self._thread.start()
        log.info("moodle sandbox listening on port %d", port)
        return self.url

    def stop(self) -> None:
        """Stop serving, release held answers, and save the state when ``data_dir`` is set."""
        self._stopping.set()
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            # Calls in flight (a held ``timeout`` fault, latency) were released above; kept
            # connections are closed and their threads joined.
            close_connections(server)
            server.server_close()
        if thread is not None:
            thread.join(timeout=10)
        self.save()

    def save(self) -> None:
        """Write the state to ``data_dir`` (no-op without one)."""
        state = self.state_file
        if state is None:
            return
        state.parent.mkdir(parents=True, exist_ok=True)
        with self.site.lock:
            self.site.save(state)

    def __enter__(self) -> MoodleSandbox:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ HTTP

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        response = self._respond(request, environ)
        return response(environ, start_response)

    def _respond(self, request: Request, environ: dict[str, Any]) -> Response:
        if self.check_host and self._wrong_host(request):
            return self._redirect(request)
        if request.path != REST_PATH:
            return Response("<h1>Not Found</h1>", status=404, content_type="text/html")
        params = self._parameters(request)
        wsfunction = params.get("wsfunction")
        name = wsfunction if isinstance(wsfunction, str) else ""
        with self._calls_lock:
            self.calls[name] += 1
        fault = self.faults.take(name)
        if fault == "http503":
            log.info("moodle sandbox fault http503 on %s", name)
            return Response(_PAGE_503, status=503, content_type="text/html; charset=utf-8")
        if fault == "drop":
            log.info("moodle sandbox fault drop on %s", name)
            self._drop(environ)
        if self.latency > 0:
            self._stopping.wait(self.latency)
        fmt = "json" if params.get("moodlewsrestformat") == "json" else "xml"
        result, error = self.race.run(
            lambda: self._dispatch(params, name), _race_lost, self._stopping.wait
        )
        if fault == "timeout":
            log.info("moodle sandbox fault timeout on %s", name)
            self._stopping.wait(self.timeout_seconds)
        elif fault == "drop_after":
            log.info("moodle sandbox fault drop_after on %s", name)
            self._drop(environ)
        if fmt == "json":
            body = error.body(self.debugging) if error else result
            return Response(json.dumps(body), content_type="application/json")
        if error:
            text = error_xml(error, self.debugging)
        else:
            text = to_xml(XML_SHAPES.get(name, lambda r: r)(result))
        return Response(text, content_type="application/xml; charset=utf-8")

    def _wrong_host(self, request: Request) -> bool:
        if self.host in ("0.0.0.0", "::", ""):  # noqa: S104 - comparing, not binding
            return False
        return request.host != urlsplit(self.url).netloc

    def _redirect(self, request: Request) -> Response:
        """Moodle's wwwroot check: a 303 HTML page pointing at the right host (recording 71)."""
        target = self.url + request.full_path.rstrip("?")
        html = (
            '<!DOCTYPE html>\n<html  lang="en" xml:lang="en">\n<head><title>Redirect</title>'
            "</head>\n<body><h1>Redirect</h1><div>This page should automatically redirect. If "
            'nothing is happening please use the continue link below.<br /><a href="'
            f'{target.replace("&", "&amp;")}">Continue</a></div></body>\n</html>\n'
        )
        return Response(
            html, status=303, headers={"Location": target}, content_type="text/html; charset=UTF-8"
        )

    def _parameters(self, request: Request) -> dict[str, Any]:
        """``array_merge($_GET, $_POST)``, each cut like PHP (:func:`truncate_fields`)."""
        query = parse_qsl(
            request.query_string.decode("latin-1"), keep_blank_values=True, encoding="utf-8"
        )
        merged = php_parse(truncate_fields(query, self.max_input_vars, body=False))
        if request.mimetype == "application/x-www-form-urlencoded":
            body = parse_qsl(request.get_data(as_text=True), keep_blank_values=True)
            kept = truncate_fields(body, self.max_input_vars, body=True)
            if len(kept) < len(body):
                # PHP's only trace is a warning in its own log; keep it that quiet.
                log.warning(
                    "moodle sandbox dropped %d form fields past max_input_vars=%d",
                    len(body) - len(kept),
                    self.max_input_vars,
                )
            merged.update(php_parse(kept))
        return merged

    def _drop(self, environ: dict[str, Any]) -> None:
        sock = environ.get("werkzeug.socket")
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError as exc:  # already gone: nothing left to drop
                log.debug("moodle sandbox drop: socket already closed (%s)", exc)
        raise _DroppedConnection("connection dropped by a scripted fault")

    def _dispatch(self, params: dict[str, Any], name: str) -> tuple[Any, MoodleError | None]:
        """Authenticate, find the function, check access, validate, run."""
        started = time.monotonic()
        try:
            token = params.get("wstoken")
            info = self.site.tokens.get(token) if isinstance(token, str) else None
            if info is None:
                raise moodle_exception("invalidtoken", "Invalid token - token not found")
            if not name:
                raise invalid_parameter("Missing function name")
            if name not in KNOWN_FUNCTIONS:
                raise missing_record("external_functions", name, "name")
            if name not in catalog.SERVICE_FUNCTIONS[info["service"]]:
                raise access_error()
            function = FUNCTIONS[name]
            args = {k: v for k, v in params.items() if k not in _RESERVED}
            typed = validate_parameters(function.params, args)
            with self.site.lock:
                result = function.handler(self.site, Caller(info["userid"], info["service"]), typed)
            log.debug("moodle sandbox %s ok in %.3fs", name, time.monotonic() - started)
            return result, None
        except MoodleError as error:
            log.debug("moodle sandbox %s error %s", name, error.errorcode)
            return None, error
