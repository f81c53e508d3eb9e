"""pgpoolsync's own metrics, the text exposition of the exporter's families, and the /metrics,
/healthz, /readyz server.

The only ``import prometheus_client``. Owns the metric families (prefix ``pgpoolsync_``) on a
registry handed in (never the global one), ``exposition`` that writes the exporter's plain
families in the same text format, and the small HTTP server. /healthz fails when a watch has
made no progress past its timeout; /readyz is ok once the first apply is on disk.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable
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


class FamilyLike(Protocol):
    name: str
    kind: str
    help: str
    samples: list[tuple[tuple[tuple[str, str], ...], float]]


def new_registry() -> CollectorRegistry:
    """A registry of its own, never prometheus_client's global one."""
    return CollectorRegistry()


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
        self.rollouts_requested = Counter(
            "pgpoolsync_rollouts_requested",
            "Rolling restarts of the Deployment this sidecar asked for (--restart-policy rollout)",
            registry=registry,
        )
        self.rollout_pending = Gauge(
            "pgpoolsync_rollout_pending",
            "1 while the Deployment rolls out the restart this pod's pgpool needs (the pod "
            "waits to be replaced)",
            registry=registry,
        )
        self.rollout_requested = Gauge(
            "pgpoolsync_rollout_requested_timestamp_seconds",
            "When the Deployment's last rollout was requested (0: never)",
            registry=registry,
        )
        self.unapplied = Gauge(
            "pgpoolsync_unapplied_params",
            "Reloadable parameters pgpool does not run with after a reload (refused values)",
            registry=registry,
        )
        self.change_to_reload = Histogram(
            "pgpoolsync_change_to_reload_seconds",
            "From a change seen by a source to pgpool reloaded with it",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
            registry=registry,
        )
        self.backend_up = Gauge(
            "pgpoolsync_backend_up",
            "Desired node state: 1 when the node's Service has a ready endpoint (and the "
            "replica-lag gate does not hold it out)",
            ["node_id"],
            registry=registry,
        )
        self.pgpool_node_up = Gauge(
            "pgpoolsync_pgpool_node_up",
            "pgpool's node status as PCP reports it: 1 up or waiting, 0 down",
            ["node_id"],
            registry=registry,
        )
        self.node_commands = Counter(
            "pgpoolsync_node_commands",
            "PCP node commands (detach, attach, recycle) by result",
            ["node_id", "command", "result"],
            registry=registry,
        )
        self.replica_lag = Gauge(
            "pgpoolsync_replica_lag_seconds",
            "With --max-replica-lag: how far each ready replica address behind the replica "
            "Service is behind the primary (age of the oldest WAL it has not replayed)",
            ["address"],
            registry=registry,
        )
        self.lag_gate_closed = Gauge(
            "pgpoolsync_replica_lag_gate_closed",
            "With --max-replica-lag: 1 while every ready replica lags more than the threshold "
            "and node 1 is held out of rotation",
            registry=registry,
        )
        self.lag_probes = Counter(
            "pgpoolsync_replica_lag_probes",
            "Replica-lag probes of the primary by result (a failed probe changes nothing)",
            ["result"],
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
    extra: Callable[[], bytes] | None = None,
) -> ThreadingHTTPServer:
    """Start the HTTP server in a daemon thread and return it (``.shutdown()`` to stop).

    /metrics is the registry's exposition followed by ``extra()`` (the exporter's families)."""

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
                body = generate_latest(registry)
                self._send(200, body + extra() if extra else body, CONTENT_TYPE_LATEST)
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


def exposition(fams: Iterable[FamilyLike]) -> bytes:
    """Families in the Prometheus text format 0.0.4, byte for byte what prometheus_client's
    ``generate_latest`` writes for the same families (counters get ``_total``, labels sorted,
    Go-style floats), without its per-sample validation: names here are constants, and label
    values are escaped. ``generate_latest`` on the ~70 samples of one pgpool scrape took 1.7 ms,
    nearly as long as the SHOW queries themselves (bench/scrape)."""
    out: list[str] = []
    # A node's labels tuple is shared by every family of its SHOW: key by identity (all are
    # alive in ``fams`` for the whole call) to skip re-hashing, sorting and escaping.
    label_text: dict[int, str] = {}
    for fam in fams:
        name, header = _header(fam.name, fam.kind, fam.help)
        out.append(header)
        for labels, value in fam.samples:
            text = repr(value)
            if len(text) > 8 or "n" in text:  # nan, inf, or a long one Go writes with e+
                text = _go_float(value)
            if labels:
                inner = label_text.get(id(labels))
                if inner is None:
                    inner = label_text[id(labels)] = ",".join(
                        f'{k}="{_escape_label(v)}"' for k, v in sorted(labels)
                    )
                out.append(f"{name}{{{inner}}} {text}\n")
            else:
                out.append(f"{name} {text}\n")
    return "".join(out).encode()


@functools.lru_cache(maxsize=512)
def _header(name: str, kind: str, help_: str) -> tuple[str, str]:
    name = f"{name}_total" if kind == "counter" else name
    help_ = help_.replace("\\", "\\\\").replace("\n", "\\n")
    return name, f"# HELP {name} {help_}\n# TYPE {name} {kind}\n"


def _escape_label(text: str) -> str:
    if "\\" in text or "\n" in text or '"' in text:
        return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return text


_GO_SPECIAL = {"nan": "NaN", "inf": "+Inf", "-inf": "-Inf"}


def _go_float(value: float) -> str:
    s = repr(float(value))
    if s in _GO_SPECIAL:
        return _GO_SPECIAL[s]
    dot = s.find(".")
    if value > 0 and dot > 6:  # Go switches to an exponent sooner than Python
        mantissa = f"{s[0]}.{s[1:dot]}{s[dot + 1 :]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return s
