"""A registry behind basic auth and TLS: a small reverse proxy in front of the real one.

Apicurio's own authentication needs a Keycloak; production registries sit behind a
gateway that checks basic auth and TLS client certificates anyway. This proxy is such a
gateway, on loopback: it refuses a request without the right ``Authorization`` header
(401, like Confluent's registry) and, with TLS, a client without a certificate from the
test CA; everything else is forwarded as it came.
"""

from __future__ import annotations

import base64
import http.client
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from tests.fixtures.tls import TlsFiles


class RegistryProxy:
    """Forwards to ``upstream`` (a registry URL) when the caller is ``user:password``."""

    def __init__(
        self, upstream: str, user: str, password: str, tls: TlsFiles | None = None
    ) -> None:
        parts = urlsplit(upstream)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._path = parts.path
        self._expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.refused = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._scheme = "http"
        if tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(tls.ca))
            context.load_cert_chain(str(tls.server_cert), str(tls.server_key))
            context.verify_mode = ssl.CERT_REQUIRED  # a client certificate from the CA
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            self._scheme = "https"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"{self._scheme}://127.0.0.1:{self._server.server_address[1]}{self._path}"

    def start(self) -> RegistryProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                if self.headers.get("Authorization") != proxy._expected:
                    proxy.refused += 1
                    body = b'{"error_code":401,"message":"Unauthorized"}'
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="registry"')
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                length = int(self.headers.get("Content-Length") or 0)
                request = self.rfile.read(length) if length else None
                upstream = http.client.HTTPConnection(*proxy._upstream, timeout=30)
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() in ("content-type", "accept")
                }
                upstream.request(self.command, self.path, body=request, headers=headers)
                response = upstream.getresponse()
                body = response.read()
                self.send_response(response.status)
                self.send_header("Content-Type", response.getheader("Content-Type") or "")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                upstream.close()

            do_GET = do_POST = do_PUT = do_DELETE = _forward  # noqa: N815 - http.server's names

            def log_message(self, format: str, *args: object) -> None:
                return  # quiet: pytest shows failures, not every request

        return Handler
