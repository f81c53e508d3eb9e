"""The small HTTP server both commands serve: ``run``'s /metrics /healthz /readyz and the
exporter's /metrics. Owns the handler, its thread and ``--listen``'s syntax; what each path
answers is handed in. Imports nothing of the package.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TEXT = "text/plain; charset=utf-8"

# path → () → (status, body, content type)
Routes = Mapping[str, Callable[[], tuple[int, bytes, str]]]


def serve(*, routes: Routes, host: str, port: int) -> ThreadingHTTPServer:
    """Start the server in a daemon thread and return it (``.shutdown()`` to stop). Any other
    path is 404."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            route = routes.get(self.path.split("?", 1)[0])
            code, body, ctype = route() if route else (404, b"not found\n", TEXT)
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server


def parse_listen(listen: str) -> tuple[str, int]:
    """``:9720`` → ("0.0.0.0", 9720); ``127.0.0.1:0`` → ("127.0.0.1", 0)."""
    host, _, port = listen.rpartition(":")
    return (host.strip("[]") or "0.0.0.0"), int(port)  # noqa: S104
