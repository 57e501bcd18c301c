"""The loopback Salesforce org: an HTTPS server thread on 127.0.0.1 speaking the real wire.

``SalesforceSandbox.start()`` makes (or reloads) a throwaway CA, issues a server certificate for
127.0.0.1, serves the login endpoints and the REST API from a threaded werkzeug server in a
daemon thread, and writes the CA certificate to ``ca_file`` for the client's CA-bundle setting.

Every call goes through the same gate, in this order: count it in ``calls`` (per operation),
wait ``latency``, apply a scripted fault from ``faults``, check the bearer session (REST), spend
one unit of the daily API budget (REST), then answer. Every answer carries
``Sforce-Limit-Info: api-usage=N/M``.

Faults: ``http503`` (503 SERVER_UNAVAILABLE), ``lock_row`` (400 UNABLE_TO_LOCK_ROW),
``invalid_session`` (401 INVALID_SESSION_ID; the session is ended, so a re-login is needed),
``budget_exhausted`` (403 REQUEST_LIMIT_EXCEEDED), ``drop`` (connection closed, nothing done),
``drop_after`` (the call takes effect, then the connection closes) and ``timeout`` (the call takes
effect, then the answer is held ``timeout_seconds``).

Operation names (for ``calls`` and ``faults``): ``login``, ``query`` (also queryAll),
``queryMore``, ``describe``, ``describeGlobal``, ``getDeleted``, ``limits``, ``resources``,
``sobject.info``, ``sobject.get``, ``sobject.create``, ``sobject.update``, ``sobject.delete``,
``sobject.upsert``, ``collections.create``, ``collections.update``, ``collections.upsert``,
``collections.retrieve``, ``collections.delete``.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import logging
import os
import re
import shutil
import socket
import ssl
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trustme
from werkzeug.serving import BaseWSGIServer
from werkzeug.wrappers import Request, Response

from sandbox.faults import FAULTS, FaultPlan
from sandbox.salesforce import api
from sandbox.salesforce.auth import Auth, OAuthError
from sandbox.salesforce.outbound import OutboundMessenger
from sandbox.salesforce.schema import object_def
from sandbox.salesforce.store import Store
from sandbox.salesforce.values import format_datetime, parse_datetime
from sandbox.serving import KeepAliveHandler, close_connections, make_loopback_server

log = logging.getLogger(__name__)

STATE_FILE = "salesforce.json"
CA_FILE = "salesforce-ca.pem"
JWT_KEY_FILE = "salesforce-jwt-key.pem"
JWT_CERT_FILE = "salesforce-jwt-cert.pem"
_DATA_RE = re.compile(r"^/services/data/v(\d+\.\d+)(?:/(.*))?$")
_SOAP_RE = re.compile(r"^/services/Soap/u/(\d+\.\d+)(?:/.*)?$")
_JSON = "application/json;charset=UTF-8"
# "drop_after": the call takes effect, then the connection closes without an answer.
SALESFORCE_FAULTS = FAULTS | {"drop_after"}


# Salesforce's longest request URI, in bytes.
MAX_REQUEST_URI = 16_384


class _QuietHandler(KeepAliveHandler):
    """No access log: request lines carry SOQL, and SOQL can carry names and emails."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Log nothing per request."""

    def log(self, type: str, message: str, *args: Any) -> None:
        """Send werkzeug's own messages (TLS errors) to debug logging."""
        log.debug("werkzeug %s: %s", type, message % args if args else message)


class SalesforceSandbox:
    """A Salesforce org on loopback HTTPS, with state in ``data_dir`` (if given)."""

    def __init__(
        self,
        data_dir: Path | str | None = None,
        *,
        latency: float = 0.0,
        outbound_url: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        daily_api_limit: int = 15000,
        session_ttl: float = 7200.0,
        timeout_seconds: float = 2.0,
        page_size: int = 2000,
    ) -> None:
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.latency = latency
        self.host = host
        self.port = port
        self.daily_api_limit = daily_api_limit
        # How long a scripted "timeout" holds the answer back, after the call took effect; a
        # client's read timeout must be shorter to see it: an unknown outcome.
        self.timeout_seconds = timeout_seconds
        self.page_size = page_size
        self.calls: collections.Counter[str] = collections.Counter()
        self.faults = FaultPlan(supported=SALESFORCE_FAULTS)
        self.clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)
        self.store = Store(clock=lambda: self.clock())
        self.auth = Auth(session_ttl=session_ttl)
        self.outbound = OutboundMessenger(outbound_url)
        self.store.listeners.append(self.outbound.on_change)
        self.cursors = api.Cursors()
        self.created_at = self.clock()
        self.seed_report: Any = None  # set by sandbox.seed.seed()
        self.url = ""
        self.ca_file = ""
        self._api_used = 0
        self._api_day = self.created_at.date()
        self._lock = threading.Lock()
        self._ca_pem: tuple[str, str] | None = None
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._tempdir: str | None = None
        self._last_port = 0
        self.has_state = self._load()

    # -- credentials (the org's API user and connected app) -------------------------------------

    @property
    def org_id(self) -> str:
        """The org's 18-character Id (00D...), as Outbound Messages carry it."""
        return self.auth.org_id

    @property
    def username(self) -> str:
        """The API user's username."""
        return self.auth.username

    @property
    def password(self) -> str:
        """The API user's password (without the security token)."""
        return self.auth.password

    @property
    def security_token(self) -> str:
        """The API user's security token (appended to the password on login)."""
        return self.auth.security_token

    @property
    def consumer_key(self) -> str:
        """The connected app's consumer key (OAuth client_id, JWT iss)."""
        return self.auth.consumer_key

    @property
    def consumer_secret(self) -> str:
        """The connected app's consumer secret."""
        return self.auth.consumer_secret

    @property
    def jwt_private_key_pem(self) -> str:
        """The private key whose certificate the connected app trusts for the JWT grant."""
        return self.auth.jwt_private_key_pem

    @property
    def jwt_certificate_pem(self) -> str:
        """The connected app's certificate (checks JWT assertions)."""
        return self.auth.jwt_certificate_pem

    @property
    def jwt_key_file(self) -> str:
        """Path of the JWT private key file (written at start), for ``private_key_FILE``."""
        return str(self._files_dir() / JWT_KEY_FILE)

    def expire_sessions(self) -> None:
        """End every session (the next REST call gets 401 INVALID_SESSION_ID)."""
        self.auth.expire_sessions()

    # -- API budget --------------------------------------------------------------------------

    @property
    def api_used(self) -> int:
        """Calls counted against today's budget."""
        with self._lock:
            self._roll_day()
            return self._api_used

    @api_used.setter
    def api_used(self, value: int) -> None:
        with self._lock:
            self._roll_day()
            self._api_used = value

    def api_usage(self) -> tuple[int, int]:
        """(used, limit) of the daily API budget."""
        return self.api_used, self.daily_api_limit

    def _roll_day(self) -> None:
        today = self.clock().date()
        if today != self._api_day:
            self._api_day, self._api_used = today, 0

    def _spend(self) -> bool:
        """Count one REST call; False if the daily budget is spent."""
        with self._lock:
            self._roll_day()
            if self._api_used >= self.daily_api_limit:
                return False
            self._api_used += 1
            return True

    @property
    def connections(self) -> int:
        """TCP connections accepted since start (kept alive: about one per client session)."""
        server: Any = self._server
        return int(server.connections) if server is not None else 0

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> str:
        """Start serving; return the instance URL ``https://127.0.0.1:PORT``."""
        if self._server is not None:
            return self.url
        self._stopping.clear()
        ca = self._ca()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ca.issue_cert(self.host, "localhost").configure_cert(context)
        self._server = self._bind(context)
        self.port = self._server.server_port
        self.url = f"https://{self.host}:{self.port}"
        files = self._files_dir()
        files.mkdir(parents=True, exist_ok=True)
        self.ca_file = str(files / CA_FILE)
        ca.cert_pem.write_to_path(self.ca_file)
        _write_private(files / JWT_KEY_FILE, self.jwt_private_key_pem)
        (files / JWT_CERT_FILE).write_text(self.jwt_certificate_pem, encoding="utf-8")
        self.outbound.org_id = self.org_id
        self.outbound.instance_url = self.url
        self.outbound.start()
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},  # stop() waits at most this long
            name="sf-sandbox",
            daemon=True,
        )
        self._thread.start()
        log.info("Salesforce sandbox listening on %s (org %s)", self.url, self.org_id)
        return self.url

    def _bind(self, context: ssl.SSLContext) -> BaseWSGIServer:
        def serve(port: int) -> BaseWSGIServer:
            return make_loopback_server(self.host, port, self._wsgi, _QuietHandler, context)

        if self.port == 0 and self._last_port:
            # Come back on the port of the last run, so a written config stays valid.
            try:
                return serve(self._last_port)
            except OSError:
                log.info("Salesforce sandbox: port %d is taken, using another", self._last_port)
        return serve(self.port)

    def stop(self) -> None:
        """Stop serving and delivering; save state when ``data_dir`` is set."""
        self._stopping.set()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            close_connections(server)  # kept connections, and their threads
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.outbound.stop()
        if self.data_dir is not None:
            self.save()
        if self._tempdir is not None:
            shutil.rmtree(self._tempdir, ignore_errors=True)
            self._tempdir = None

    def __enter__(self) -> SalesforceSandbox:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _files_dir(self) -> Path:
        if self.data_dir is not None:
            return self.data_dir
        if self._tempdir is None:
            self._tempdir = tempfile.mkdtemp(prefix="sf-sandbox-")
        return Path(self._tempdir)

    def _ca(self) -> trustme.CA:
        if self._ca_pem is not None:
            return trustme.CA.from_pem(self._ca_pem[0].encode(), self._ca_pem[1].encode())
        ca = trustme.CA(organization_name="mentorsync sandbox")
        self._ca_pem = (ca.cert_pem.bytes().decode(), ca.private_key_pem.bytes().decode())
        return ca

    # -- persistence -------------------------------------------------------------------------

    def save(self) -> None:
        """Write the state file (atomically) so a new sandbox on ``data_dir`` resumes here."""
        if self.data_dir is None:
            raise ValueError("SalesforceSandbox.save(): no data_dir")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self._lock:
            api_state = {"day": self._api_day.isoformat(), "used": self._api_used}
        state = {
            "version": 1,
            "created_at": format_datetime(self.created_at),
            "port": self.port,
            "auth": self.auth.to_state(),
            "ca": list(self._ca_pem) if self._ca_pem else None,
            "api": api_state,
            "store": self.store.to_state(),
            "outbound": self.outbound.to_state(),
        }
        target = self.data_dir / STATE_FILE
        temporary = target.with_suffix(".tmp")
        _write_private(temporary, json.dumps(state, separators=(",", ":")))
        os.replace(temporary, target)

    def _load(self) -> bool:
        if self.data_dir is None or not (self.data_dir / STATE_FILE).is_file():
            return False
        path = self.data_dir / STATE_FILE
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: unreadable sandbox state ({exc})") from None
        if state.get("version") != 1:
            raise ValueError(f"{path}: unknown sandbox state version {state.get('version')!r}")
        self.created_at = parse_datetime(state["created_at"])
        self._last_port = int(state.get("port") or 0)
        self.auth.load_state(state["auth"])
        if state.get("ca"):
            self._ca_pem = (state["ca"][0], state["ca"][1])
        self._api_day = dt.date.fromisoformat(state["api"]["day"])
        self._api_used = int(state["api"]["used"])
        self.store.load_state(state["store"])
        self.outbound.load_state(state.get("outbound", {}))
        return True

    # -- HTTP --------------------------------------------------------------------------------

    def _wsgi(self, environ: dict, start_response: Callable) -> Any:
        request = Request(environ)
        try:
            response = self._handle(request, environ)
        except Exception:
            # A sandbox bug: answer like Salesforce's 500, log the traceback (no bodies).
            log.exception("Salesforce sandbox: unexpected error on %s", request.method)
            response = self._json(
                500,
                [
                    {
                        "message": "sandbox internal error",
                        "errorCode": "UNKNOWN_EXCEPTION",
                        "fields": [],
                    }
                ],
            )
        if response is None:
            # A scripted dropped connection: the socket is already shut, so writing this
            # answer fails as a dropped connection, which werkzeug handles quietly.
            response = Response(b"", status=500)
        return response(environ, start_response)

    def _handle(self, request: Request, environ: dict) -> Response | None:
        path = request.path
        # Salesforce refuses a request URI over 16,384 bytes (help article 000386264): a
        # SOQL GET with too many Ids in it must be split by the caller.
        uri = environ.get("RAW_URI") or (path + "?" + environ.get("QUERY_STRING", ""))
        if len(uri.encode()) > MAX_REQUEST_URI:
            return Response(b"<h1>414 Request-URI Too Large</h1>", status=414, mimetype="text/html")
        if path == "/services/oauth2/token":
            return self._gate(request, environ, "login", rest=False, handler=self._oauth)
        soap = _SOAP_RE.match(path)
        if soap:
            return self._gate(
                request,
                environ,
                "login",
                rest=False,
                handler=lambda r: self._soap(r, soap.group(1)),
            )
        if path.rstrip("/") == "/services/data":
            return self._json(
                200, [{"label": "Winter '24", "url": "/services/data/v59.0", "version": "59.0"}]
            )
        data = _DATA_RE.match(path)
        if not data:
            return self._json(404, api.not_found().body())
        version = data.group(1)
        parts = [p for p in (data.group(2) or "").split("/") if p]
        route = _route(request.method, parts)
        if route is None:
            return self._json(404, api.not_found().body())
        operation, allowed = route
        if request.method not in allowed:
            return self._json(
                405,
                [
                    {
                        "message": f"HTTP Method '{request.method}' not allowed. Allowed are "
                        f"{','.join(sorted(allowed))}",
                        "errorCode": "METHOD_NOT_ALLOWED",
                        "fields": [],
                    }
                ],
            )
        return self._gate(
            request,
            environ,
            operation,
            rest=True,
            handler=lambda r: self._rest(r, operation, parts, version),
        )

    def _gate(
        self,
        request: Request,
        environ: dict,
        operation: str,
        *,
        rest: bool,
        handler: Callable[[Request], Response],
    ) -> Response | None:
        with self._lock:
            self.calls[operation] += 1
        if self.latency:
            self._stopping.wait(self.latency)
        fault = self.faults.take(operation)
        if fault == "drop":
            _drop(environ)
            return None
        if fault == "http503":
            return self._json(
                503,
                [
                    {
                        "message": "Server Unavailable",
                        "errorCode": "SERVER_UNAVAILABLE",
                        "fields": [],
                    }
                ],
            )
        if fault == "lock_row":
            return self._json(
                400,
                [
                    {
                        "message": "unable to obtain exclusive access to this record or 1 records",
                        "errorCode": "UNABLE_TO_LOCK_ROW",
                        "fields": [],
                    }
                ],
            )
        if fault == "invalid_session":
            self.auth.revoke(request.headers.get("Authorization"))
            return self._invalid_session()
        if fault == "budget_exhausted":
            return self._budget_exhausted()
        if rest:
            if not self.auth.check(request.headers.get("Authorization")):
                return self._invalid_session()
            if not self._spend():
                return self._budget_exhausted()
        response = handler(request)
        if fault == "timeout":
            self._stopping.wait(self.timeout_seconds)
        elif fault == "drop_after":
            _drop(environ)
            return None
        return response

    def _invalid_session(self) -> Response:
        return self._json(
            401,
            [
                {
                    "message": "Session expired or invalid",
                    "errorCode": "INVALID_SESSION_ID",
                    "fields": [],
                }
            ],
        )

    def _budget_exhausted(self) -> Response:
        return self._json(
            403,
            [
                {
                    "message": "TotalRequests Limit exceeded.",
                    "errorCode": "REQUEST_LIMIT_EXCEEDED",
                    "fields": [],
                }
            ],
        )

    def _json(self, status: int, body: Any) -> Response:
        used, limit = self.api_usage()
        response = Response(
            json.dumps(body) if body is not None else None,
            status=status,
            content_type=_JSON if body is not None else None,
        )
        response.headers["Sforce-Limit-Info"] = f"api-usage={used}/{limit}"
        return response

    def _oauth(self, request: Request) -> Response:
        if request.method != "POST":
            return self._json(
                405, {"error": "invalid_request", "error_description": "must use HTTP POST"}
            )
        try:
            body = self.auth.token(request.form, request.headers.get("Authorization"), self.url)
        except OAuthError as exc:
            return self._json(exc.status, exc.body())
        return self._json(200, body)

    def _soap(self, request: Request, version: str) -> Response:
        status, body = self.auth.soap_login(request.get_data(), self.url, version)
        response = Response(body, status=status, content_type="text/xml;charset=UTF-8")
        used, limit = self.api_usage()
        response.headers["Sforce-Limit-Info"] = f"api-usage={used}/{limit}"
        return response

    def _rest(self, request: Request, operation: str, parts: list[str], version: str) -> Response:
        try:
            status, body = self._dispatch(request, operation, parts, version)
        except api.ApiError as exc:
            return self._json(exc.status, exc.body())
        return self._json(status, body)

    def _dispatch(
        self, request: Request, operation: str, parts: list[str], version: str
    ) -> api.Result:
        if operation == "resources":
            return api.resources(version)
        if operation == "limits":
            return api.limits(self)
        if operation == "describeGlobal":
            return api.describe_global(version)
        if operation == "query":
            return api.query(self, request, version, include_deleted=parts[0] == "queryAll")
        if operation == "queryMore":
            return api.query_more(self, request, version, parts[1])
        if operation.startswith("collections."):
            kind = operation.split(".", 1)[1]
            if kind in ("create", "update"):
                return api.collection_write(self, request, kind)
            if kind == "delete":
                return api.collection_delete(self, request)
            odef = _sobject(parts[2])
            if kind == "retrieve":
                return api.collection_retrieve(self, request, odef, version)
            return api.collection_write(self, request, "upsert", odef.name, parts[3])
        odef = _sobject(parts[1])
        if operation == "describe":
            return 200, odef.describe(version)
        if operation == "getDeleted":
            return api.get_deleted(self, request, odef)
        if operation == "sobject.create":
            return api.create_record(self, request, odef)
        if operation == "sobject.info":
            return api.sobject_info(odef, version)
        if operation == "sobject.upsert":
            return api.upsert_record(self, request, odef, parts[2], parts[3], version)
        if operation == "sobject.get" and len(parts) == 4:
            return api.get_by_external(self, request, odef, parts[2], parts[3], version)
        if operation == "sobject.get":
            return api.get_record(self, request, odef, parts[2], version)
        if operation == "sobject.update":
            return api.update_record(self, request, odef, parts[2])
        if operation == "sobject.delete":
            return api.delete_record(self, odef, parts[2])
        raise api.not_found()


def _route(method: str, parts: list[str]) -> tuple[str, set[str]] | None:
    """(operation name, allowed methods) of a REST path under /services/data/vXX.X/."""
    n = len(parts)
    if n == 0:
        return "resources", {"GET"}
    head = parts[0]
    if head in ("query", "queryAll"):
        if n == 1:
            return "query", {"GET"}
        if n == 2:
            return "queryMore", {"GET"}
        return None
    if head == "limits" and n == 1:
        return "limits", {"GET"}
    if head == "sobjects":
        if n == 1:
            return "describeGlobal", {"GET"}
        if n == 2:
            return ("sobject.create" if method == "POST" else "sobject.info"), {"GET", "POST"}
        if n == 3 and parts[2] == "describe":
            return "describe", {"GET"}
        if n == 3 and parts[2] == "deleted":
            return "getDeleted", {"GET"}
        if n == 3:
            operation = {"PATCH": "sobject.update", "DELETE": "sobject.delete"}.get(
                method, "sobject.get"
            )
            return operation, {"GET", "PATCH", "DELETE"}
        if n == 4:
            return ("sobject.upsert" if method == "PATCH" else "sobject.get"), {"GET", "PATCH"}
        return None
    if head == "composite" and n >= 2 and parts[1] == "sobjects":
        if n == 2:
            operation = {
                "POST": "collections.create",
                "PATCH": "collections.update",
                "DELETE": "collections.delete",
            }.get(method, "collections.create")
            return operation, {"POST", "PATCH", "DELETE"}
        if n == 3:
            return "collections.retrieve", {"GET"}
        if n == 4:
            return "collections.upsert", {"PATCH"}
    return None


def _sobject(name: str) -> Any:
    odef = object_def(name)
    if odef is None:
        raise api.not_found()
    return odef


def _drop(environ: dict) -> None:
    """Close the client's connection without an answer (a scripted ``drop``)."""
    connection = environ.get("werkzeug.socket")
    if connection is None:
        return
    try:
        connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed by the client: nothing left to drop


def _write_private(path: Path, text: str) -> None:
    """Write a file readable by its owner only (it holds keys and passwords)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)
