"""The operations port: ``/metrics`` (Prometheus), ``/healthz`` (liveness), ``/readyz``.

``/healthz`` is 200 while the consumer loop's heartbeat is fresh. ``/readyz`` is 200 when
the loop is subscribed (partitions assigned, or waiting for an assignment) and the model is
loaded and its file still present. Redis being down does not make the pod unready: events
are deliberately scored with defaults (``DEGRADED``); the JSON body says which.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


@dataclass
class Probes:
    """Callables answering the probe questions, read on every request."""

    heartbeat: Callable[[], float]  # time.monotonic() of the loop's last iteration
    subscribed: Callable[[], bool]
    assigned: Callable[[], int]
    model_present: Callable[[], bool]
    redis_reachable: Callable[[], bool]  # a ping on a client of its own, fail-fast
    breaker_state: Callable[[], str]
    stale_after_s: float = 30.0
    details: Callable[[], dict[str, Any]] = dict  # more to show (the model versions)

    def live(self) -> tuple[bool, dict[str, Any]]:
        age = time.monotonic() - self.heartbeat()
        return age < self.stale_after_s, {"heartbeat_age_s": round(age, 3)}

    def ready(self) -> tuple[bool, dict[str, Any]]:
        assigned = self.assigned()
        consumer = "assigned" if assigned else ("waiting" if self.subscribed() else "stopped")
        checks = {
            "consumer": consumer,
            "partitions": assigned,
            "model": "loaded" if self.model_present() else "missing",
            "redis": "ok" if self.redis_reachable() else "degraded",
            "breaker": self.breaker_state(),
            **self.details(),
        }
        ok = checks["consumer"] != "stopped" and checks["model"] == "loaded"
        return ok, checks


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Probes every few seconds are not news."""


class _ThreadingServer(WSGIServer):
    daemon_threads = True

    def process_request(self, request: Any, client_address: Any) -> None:
        threading.Thread(target=self._serve, args=(request, client_address), daemon=True).start()

    def _serve(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        finally:
            self.shutdown_request(request)


def make_app(
    registry: CollectorRegistry, probes: Probes
) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return metrics(environ, start_response)  # type: ignore[no-any-return]
        if path in ("/healthz", "/readyz"):
            ok, body = probes.live() if path == "/healthz" else probes.ready()
            status = "200 OK" if ok else "503 Service Unavailable"
            start_response(status, [("Content-Type", "application/json")])
            return [json.dumps({"status": "ok" if ok else "fail", **body}).encode()]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found: try /metrics, /healthz or /readyz\n"]

    return app


class OpsServer:
    """Serves ``make_app`` on ``port`` (0: no server) in a daemon thread."""

    def __init__(
        self, port: int, registry: CollectorRegistry, probes: Probes, host: str = "0.0.0.0"
    ) -> None:
        self._server: WSGIServer | None = None
        if port:
            self._server = make_server(
                host, port, make_app(registry, probes), _ThreadingServer, _QuietHandler
            )
            threading.Thread(
                target=self._server.serve_forever, name="ops-http", daemon=True
            ).start()

    @property
    def port(self) -> int:
        return self._server.server_port if self._server else 0

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
