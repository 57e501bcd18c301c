"""Serving a sandbox's WSGI app on loopback with HTTP/1.1 keep-alive, and stopping it cleanly.

werkzeug's development server (3.x) answers every request with ``Connection: close`` and then
drains the socket for 10 ms; with keep-alive that drain would swallow the client's next request.
So every call paid a new connection (for the Salesforce sandbox, a TLS handshake: about 20 ms a
call on loopback against 3 ms with a kept connection). :class:`KeepAliveHandler` answers the
plain requests mentorsync's clients send itself: it reads the request body to its
``Content-Length`` (what the app left unread too, so the next request line comes next), sends the
answer with a ``Content-Length`` in one write, and keeps the connection open. Anything unusual
(a chunked body, ``HEAD``, ``Expect``, a client asking to close) goes to werkzeug's own path,
which closes the connection.

A kept connection parks its handler thread in ``readline()``. :func:`close_connections`, called
by a sandbox's ``stop()`` after ``server.shutdown()``, shuts the read side of every connection
(an answer being written still goes out) and joins the threads, so none is left behind.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.exceptions import ClientDisconnected
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wsgi import LimitedStream

log = logging.getLogger(__name__)

# Answers that never carry a body (RFC 9110), so no Content-Length either.
_BODYLESS = frozenset({204, 304})
# Hop-by-hop and framing headers this handler sets itself.
_OWN_HEADERS = frozenset({"content-length", "connection", "transfer-encoding", "keep-alive"})


class KeepAliveHandler(WSGIRequestHandler):
    """A werkzeug request handler that keeps HTTP/1.1 connections open between requests."""

    protocol_version = "HTTP/1.1"
    # Several small writes per answer on the fallback path: without this, Nagle's algorithm and
    # the client's delayed ACK add 40 ms to a call.
    disable_nagle_algorithm = True

    def handle(self) -> None:
        """Serve the connection's requests, registered so the server's stop can end it."""
        server: Any = self.server
        with server.handlers_lock:
            # Threads are joined by close_connections() until they end, not only while they
            # handle: one that just finished may still be closing its socket.
            server.threads = {t for t in server.threads if t.is_alive()}
            server.threads.add(threading.current_thread())
            if server.closing:
                return  # accepted while stopping: close without serving
            server.handlers.add(self)
            server.connections += 1
        try:
            super().handle()
        finally:
            with server.handlers_lock:
                server.handlers.discard(self)

    def run_wsgi(self) -> None:
        """Run the app for one request; keep the connection open when the request allows it."""
        length = self._plain_length()
        if length is None:
            self.close_connection = True
            super().run_wsgi()
            return
        environ = self.make_environ()
        body = LimitedStream(self.rfile, length)
        environ["wsgi.input"] = body
        environ["wsgi.input_terminated"] = True  # the app reads this stream as it is
        try:
            status, headers, payload = _run_app(self.server.app, environ)
        except ConnectionError:
            raise  # a scripted dropped connection: werkzeug's handle() ends it quietly
        except Exception:
            log.exception("sandbox app failed on a %s request", self.command)
            status, headers, payload = "500 INTERNAL SERVER ERROR", [], b""
            self.close_connection = True
        try:
            body.exhaust()  # what the app left unread, so the next request line comes next
        except (ClientDisconnected, OSError):
            self.close_connection = True
            return  # the client went away mid-request: nobody to answer
        self.wfile.write(self._head(status, headers, payload) + payload)

    def _plain_length(self) -> int | None:
        """The request body's length when this handler can answer and keep the connection."""
        if self.close_connection or self.command == "HEAD" or "Expect" in self.headers:
            return None
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return None
        value = self.headers.get("Content-Length", "0").strip()
        return int(value) if value.isdigit() else None

    def _head(self, status: str, headers: Iterable[tuple[str, str]], payload: bytes) -> bytes:
        code = int(status.split(None, 1)[0])
        lines = [f"{self.protocol_version} {status}"]
        lines += [f"{k}: {v}" for k, v in headers if k.lower() not in _OWN_HEADERS]
        if code not in _BODYLESS and code >= 200:
            lines.append(f"Content-Length: {len(payload)}")
        if self.close_connection:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _run_app(app: Callable[..., Any], environ: dict[str, Any]) -> tuple[str, list, bytes]:
    """Call a WSGI app and collect its whole answer: (status, headers, body)."""
    started: list[Any] = []
    written: list[bytes] = []

    def start_response(status: str, headers: list, exc_info: Any = None) -> Callable:
        started[:] = [status, headers]
        return written.append

    result = app(environ, start_response)
    try:
        written.extend(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    if not started:
        raise RuntimeError("the WSGI app did not call start_response")
    return started[0], started[1], b"".join(written)


def make_loopback_server(
    host: str,
    port: int,
    app: Callable[..., Any],
    handler: type[KeepAliveHandler] = KeepAliveHandler,
    ssl_context: Any = None,
) -> BaseWSGIServer:
    """A threaded werkzeug server for ``app`` whose handlers keep connections alive."""
    server: Any = make_server(
        host, port, app, threaded=True, request_handler=handler, ssl_context=ssl_context
    )
    server.handlers = set()
    server.threads = set()
    server.handlers_lock = threading.Lock()
    server.closing = False
    server.connections = 0  # accepted so far: with keep-alive, about one per client session
    return server


def close_connections(server: BaseWSGIServer, timeout: float = 10.0) -> None:
    """After ``server.shutdown()``: end every kept connection and wait for its thread."""
    state: Any = server
    with state.handlers_lock:
        state.closing = True
        handlers = list(state.handlers)
        threads = list(state.threads)
    for handler in handlers:
        try:
            # socket.socket's shutdown, not SSLSocket's (which drops TLS before an answer is
            # written): the parked readline() sees end of stream, a running answer still goes out.
            socket.socket.shutdown(handler.connection, socket.SHUT_RD)
        except OSError:
            pass  # already closed by the client
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
