"""Over a real loopback HTTPS server: the CA bundle setting is used, the budget header is read."""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import trustme
from salesforce_helpers import SESSION_ID, make_client, settings

from connector.errors import SalesforceError


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        assert self.headers["Authorization"] == f"Bearer {SESSION_ID}"
        body = json.dumps({"totalSize": 1, "done": True, "records": [{"Id": "003D000000QV9n2IAD"}]})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Sforce-Limit-Info", "api-usage=7/15000")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def https_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    ca_file = tmp_path_factory.mktemp("tls") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", str(ca_file)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_ca_bundle_is_used_for_verification(https_server: tuple[str, str]) -> None:
    url, ca_file = https_server
    client, _ = make_client(settings(instance_url=url, ca_bundle=ca_file))
    records = list(client.query("SELECT Id FROM Contact"))
    assert records == [{"Id": "003D000000QV9n2IAD"}]
    assert client.budget is not None and client.budget.used == 7


def test_without_the_ca_bundle_verification_fails_and_says_where_to_look(
    https_server: tuple[str, str],
) -> None:
    url, _ = https_server
    client, sleeps = make_client(settings(instance_url=url))
    with pytest.raises(SalesforceError, match=r"salesforce\.ca_bundle") as info:
        list(client.query("SELECT Id FROM Contact"))
    assert info.value.error_code == "TLS_ERROR"
    assert sleeps == []
