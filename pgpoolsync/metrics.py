"""pgpoolsync's own metrics, the exporter's collector, and the /metrics, /healthz, /readyz server.

The only ``import prometheus_client``. Owns the metric families (prefix ``pgpoolsync_``) on a
registry handed in (never the global one), the per-scrape collector that turns the exporter's
plain families into Prometheus ones, and the small HTTP server. /healthz fails when a watch has
made no progress past its timeout; /readyz is ok once the first apply is on disk.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    UntypedMetricFamily,
)
from prometheus_client.registry import Collector


class FamilyLike(Protocol):
    name: str
    kind: str
    help: str
    samples: list[tuple[tuple[tuple[str, str], ...], float]]


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.applies = Counter(
            "pgpoolsync_applies", "Apply passes by result", ["result"], registry=registry
        )
        self.reloads = Counter(
            "pgpoolsync_reloads", "pgpool reloads by result", ["result"], registry=registry
        )
        self.last_success = Gauge(
            "pgpoolsync_last_successful_apply_timestamp_seconds",
            "When the files last matched the desired state and pgpool was reloaded",
            registry=registry,
        )
        self.users = Gauge("pgpoolsync_users", "Users in pool_passwd", registry=registry)
        self.invalid = Gauge(
            "pgpoolsync_invalid_inputs",
            "Inputs skipped or refused in the last apply",
            registry=registry,
        )
        self.watch_restarts = Counter(
            "pgpoolsync_watch_restarts", "Watch restarts", ["kind", "reason"], registry=registry
        )
        self.watch_staleness = Gauge(
            "pgpoolsync_watch_staleness_seconds",
            "Seconds since a watch last made progress (list, event, bookmark)",
            ["kind"],
            registry=registry,
        )
        self.tls_expiry = Gauge(
            "pgpoolsync_tls_cert_expiry_timestamp_seconds",
            "When pgpool's TLS certificate expires",
            registry=registry,
        )
        self.restart_required = Gauge(
            "pgpoolsync_restart_required",
            "1 when written changes need a pgpool restart",
            registry=registry,
        )
        self.change_to_reload = Histogram(
            "pgpoolsync_change_to_reload_seconds",
            "From a change seen by a source to pgpool reloaded with it",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
            registry=registry,
        )
        for result in ("success", "error", "unchanged"):
            self.applies.labels(result)
        for result in ("success", "error"):
            self.reloads.labels(result)


def serve(
    *,
    registry: CollectorRegistry,
    healthy: Callable[[], tuple[bool, str]],
    ready: Callable[[], bool],
    host: str,
    port: int,
) -> ThreadingHTTPServer:
    """Start the HTTP server in a daemon thread and return it (``.shutdown()`` to stop)."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, code: int, body: bytes, ctype: str = "text/plain; charset=utf-8") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                ok, why = healthy()
                self._send(200 if ok else 503, (why or "ok").encode() + b"\n")
            elif path == "/readyz":
                ok = ready()
                self._send(200 if ok else 503, b"ok\n" if ok else b"first apply not done\n")
            else:
                self._send(404, b"not found\n")

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server


def parse_listen(listen: str) -> tuple[str, int]:
    """``:9720`` → ("0.0.0.0", 9720); ``127.0.0.1:0`` → ("127.0.0.1", 0)."""
    host, _, port = listen.rpartition(":")
    return (host.strip("[]") or "0.0.0.0"), int(port)  # noqa: S104


class FamiliesCollector(Collector):
    """A per-scrape custom collector: calls ``scrape`` and yields what it returns."""

    def __init__(self, scrape: Callable[[], Iterable[FamilyLike]]) -> None:
        self._scrape = scrape

    def collect(self) -> Iterator[Metric]:
        for fam in self._scrape():
            if fam.kind == "counter":
                out: Metric = CounterMetricFamily(
                    fam.name, fam.help, labels=_label_names(fam.samples)
                )
            elif fam.kind == "gauge":
                out = GaugeMetricFamily(fam.name, fam.help, labels=_label_names(fam.samples))
            else:
                out = UntypedMetricFamily(fam.name, fam.help, labels=_label_names(fam.samples))
            for labels, value in fam.samples:
                out.add_metric([v for _, v in labels], value)  # type: ignore[attr-defined]
            yield out

    def describe(self) -> list[Metric]:
        return []  # families depend on what pgpool answers; never scrape at registration


def _label_names(samples: Sequence[tuple[tuple[tuple[str, str], ...], float]]) -> list[str]:
    return [k for k, _ in samples[0][0]] if samples else []
