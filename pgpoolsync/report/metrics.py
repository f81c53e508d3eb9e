"""pgpoolsync's own metrics and what ``run`` serves: /metrics, /healthz, /readyz.

The only ``import prometheus_client``. Owns the metric families (prefix ``pgpoolsync_``) on a
registry handed in (never the global one) and what each path answers (the server itself is
``httpserve``). /healthz fails when a watch has made no progress past its timeout; /readyz is
ok once the first apply is on disk.
"""

from __future__ import annotations

from collections.abc import Callable
from http.server import ThreadingHTTPServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from pgpoolsync import httpserve


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
) -> ThreadingHTTPServer:
    """Start /metrics (the registry), /healthz and /readyz in a daemon thread and return the
    server (``.shutdown()`` to stop)."""

    def health() -> tuple[int, bytes, str]:
        ok, why = healthy()
        return 200 if ok else 503, (why or "ok").encode() + b"\n", httpserve.TEXT

    def readiness() -> tuple[int, bytes, str]:
        ok = ready()
        return 200 if ok else 503, b"ok\n" if ok else b"first apply not done\n", httpserve.TEXT

    return httpserve.serve(
        routes={
            "/metrics": lambda: (200, generate_latest(registry), CONTENT_TYPE_LATEST),
            "/healthz": health,
            "/readyz": readiness,
        },
        host=host,
        port=port,
    )
