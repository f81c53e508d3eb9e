"""Every family the exporter serves: names, types, HELP texts, and how each is read from a SHOW.

Owns the parsing of ``SHOW pool_nodes``, ``pool_backend_stats``, ``pool_health_check_stats``,
``pool_processes``, ``pool_pools`` and ``pool_cache`` into plain ``Family`` values (columns by
name, so 4.3-4.6 all work), and the scrape's own families (``up``, errors, scrapes, version).
Names, types and labels follow pgpool2_exporter v1.2.2; per-node families also carry
``node_id`` so two nodes on one host:port never collide. A family's name is its sample name:
the ten ``*_cnt`` families are counters, as pgpool2_exporter types them, under its names
without ``_total`` (the text format allows it; ``exposition`` writes names as they are). HELP
texts are pgpool2_exporter's with its typos corrected.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pgpoolsync.exporter.table import Table

NS = "pgpool2"
NODE_LABELS = ("hostname", "port", "role", "node_id")

Labels = tuple[tuple[str, str], ...]


@dataclass
class Family:
    name: str
    kind: str  # "gauge" | "counter" | "untyped"
    help: str
    samples: list[tuple[Labels, float]] = field(default_factory=list)

    def add(self, value: float, **labels: str) -> None:
        self.samples.append((tuple(labels.items()), value))

    def add_labels(self, labels: Labels, value: float) -> None:
        self.samples.append((labels, value))


def status_value(text: str | None) -> float:
    return 1.0 if (text or "").strip().lower() in ("true", "up", "waiting") else 0.0


_NUMBER = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)")


def number(text: str | float | None) -> float:
    """A float from pgpool's text: ``-nan``, ``nan``, ``unknown`` and empty → NaN,
    ``0.000568 second`` → 0.000568."""
    if text is None:
        return math.nan
    try:
        return float(text)
    except ValueError:
        m = _NUMBER.match(text) if isinstance(text, str) else None
        return float(m.group(1)) if m else math.nan


def delay_seconds(text: Any) -> float | None:
    """Replication delay in seconds when pgpool reports it as time (``0.000568 second``)."""
    if text is None or "second" not in str(text):
        return None
    return number(text)


POOL_NODES_COLS = {"select_cnt": "SELECT statement counts issued to each backend"}
BACKEND_STATS_COLS = {
    "select_cnt": "SELECT statement counts issued to each backend",
    "insert_cnt": "INSERT statement counts issued to each backend",
    "update_cnt": "UPDATE statement counts issued to each backend",
    "delete_cnt": "DELETE statement counts issued to each backend",
    "ddl_cnt": "DDL statement counts issued to each backend",
    "other_cnt": "other statement counts issued to each backend",
    "panic_cnt": "Panic message counts returned from backend",
    "fatal_cnt": "Fatal message counts returned from backend",
    "error_cnt": "Error message counts returned from backend",
}
HEALTH_COLS = {
    "total_count": "Number of health check count in total",
    "success_count": "Number of successful health check count in total",
    "fail_count": "Number of failed health check count in total",
    "skip_count": "Number of skipped health check count in total",
    "retry_count": "Number of retried health check count in total",
    "average_retry_count": "Number of average retried health check count in a session",
    "max_retry_count": "Number of maximum retried health check count in a session",
    "max_duration": "Maximum health check duration in milliseconds",
    "min_duration": "Minimum health check duration in milliseconds",
    "average_duration": "Average health check duration in milliseconds",
}
CACHE_COLS = {
    "num_cache_hits": "The number of hits against the query cache",
    "num_selects": "The number of SELECT that did not hit against the query cache",
    "cache_hit_ratio": "Query cache hit ratio",
    "num_hash_entries": "Number of total hash entries",
    "used_hash_entries": "Number of used hash entries",
    "num_cache_entries": "Number of used cache entries",
    "used_cache_entries_size": "Total size in bytes of used cache size",
    "free_cache_entries_size": "Total size in bytes of free cache size",
    "fragment_cache_entries_size": "Total size in bytes of the fragmented cache",
}


def _node_labels(t: Table) -> list[Labels]:
    def col(name: str) -> list[str]:
        values = t.column(name) or [None] * t.nrows
        return ["" if v is None else v for v in values]

    ids = t.column("node_id") or [None] * t.nrows
    return [
        (("hostname", h), ("port", p), ("role", r), ("node_id", str(i) if n is None else n))
        for i, (h, p, r, n) in enumerate(
            zip(col("hostname"), col("port"), col("role"), ids, strict=True)
        )
    ]


# (column, metric name, type, help, conversion) for one family per column of a per-node SHOW
Spec = tuple[tuple[str, str, str, str, Callable[[Any], float]], ...]


def _spec(prefix: str, columns: dict[str, str], *, kind: str) -> Spec:
    status_help = "Backend node Status (1 for up or waiting, 0 for down or unused)"
    return (
        ("status", f"{NS}_{prefix}_status", "gauge", status_help, status_value),
        *((c, f"{NS}_{prefix}_{c}", kind, h, number) for c, h in columns.items()),
    )


POOL_NODES_SPEC: Spec = (
    *_spec("pool_nodes", POOL_NODES_COLS, kind="counter"),
    (
        "replication_delay",
        f"{NS}_pool_nodes_replication_delay",
        "gauge",
        "Replication delay",
        number,
    ),
)
POOL_NODES_TAIL_SPEC: Spec = (
    ("lb_weight", f"{NS}_pool_nodes_lb_weight", "gauge", "Load balance weight (0..1)", number),
    (
        "pg_status",
        f"{NS}_pool_nodes_pg_status",
        "gauge",
        "Actual PostgreSQL status seen by pgpool (1 up, 0 otherwise)",
        status_value,
    ),
)
BACKEND_STATS_SPEC = _spec("pool_backend_stats", BACKEND_STATS_COLS, kind="counter")
HEALTH_SPEC = _spec("pool_health_check_stats", HEALTH_COLS, kind="gauge")


def _per_node(t: Table, spec: Spec, labels: list[Labels]) -> list[Family]:
    """One family per spec entry, one sample per node whose SHOW has that column."""
    fams = []
    for col, name, kind, help_, conv in spec:
        values = t.column(col)
        samples = [] if values is None else [(lab, conv(v)) for lab, v in zip(labels, values)]  # noqa: B905 - one each per row
        fams.append(Family(name, kind, help_, samples))
    return fams


def parse_pool_nodes(t: Table) -> list[Family]:
    labels = _node_labels(t)
    delay_s = Family(
        f"{NS}_pool_nodes_replication_delay_seconds",
        "gauge",
        "Replication delay in seconds (when pgpool reports it as time)",
    )
    for lab, text in zip(labels, t.column("replication_delay") or [], strict=False):
        seconds = delay_seconds(text)
        if seconds is not None:
            delay_s.add_labels(lab, seconds)
    return [
        *_per_node(t, POOL_NODES_SPEC, labels),
        delay_s,
        *_per_node(t, POOL_NODES_TAIL_SPEC, labels),
    ]


def parse_backend_stats(t: Table) -> list[Family]:
    return _per_node(t, BACKEND_STATS_SPEC, _node_labels(t))


def parse_health_check_stats(t: Table) -> list[Family]:
    return _per_node(t, HEALTH_SPEC, _node_labels(t))


def parse_processes(t: Table) -> list[Family]:
    used = Family(f"{NS}_frontend_used", "gauge", "Number of used child processes")
    counts: dict[tuple[str, str], int] = {}
    users = t.column("username") or []
    dbs = t.column("database") or []
    for user, db in zip(users, dbs, strict=False):
        if user and db:
            counts[(user, db)] = counts.get((user, db), 0) + 1
    for (user, db), n in sorted(counts.items()):
        used.add(float(n), username=user, database=db)
    total = t.nrows
    in_use = sum(counts.values())
    return [
        Family(
            f"{NS}_frontend_total", "gauge", "Number of total child processes", [((), float(total))]
        ),
        used,
        Family(
            f"{NS}_frontend_used_ratio",
            "gauge",
            "Ratio of child processes to total processes",
            [((), in_use / total if total else math.nan)],
        ),
    ]


def _by_process(t: Table) -> list[Family]:
    """pgpool2_exporter's per-child families: slots in use by (pool_pid, pool_id, backend_id,
    username, database), and per child with a slot in use, its slots and the share in use."""

    def col(name: str) -> list[str]:
        values = t.column(name) or [None] * t.nrows
        return ["" if v is None else v for v in values]

    slots: dict[str, int] = {}
    in_use: dict[tuple[str, str, str, str, str], int] = {}
    for pid, pool, backend, user, db in zip(
        col("pool_pid"),
        col("pool_id"),
        col("backend_id"),
        col("username"),
        col("database"),
        strict=True,
    ):
        if pid:
            slots[pid] = slots.get(pid, 0) + 1
        if user:
            key = (pid, pool, backend, user, db)
            in_use[key] = in_use.get(key, 0) + 1
    used = Family(
        f"{NS}_backend_by_process_used", "gauge", "Number of backend connection slots in use"
    )
    per_pid: dict[str, int] = {}
    for (pid, pool, backend, user, db), count in sorted(in_use.items()):
        used.add(
            float(count), pool_pid=pid, pool_id=pool, backend_id=backend, username=user, database=db
        )
        per_pid[pid] = per_pid.get(pid, 0) + 1  # distinct (pool, backend, user, db), as theirs
    ratio = Family(
        f"{NS}_backend_by_process_used_ratio", "gauge", "Number of backend connection slots in use"
    )
    total = Family(
        f"{NS}_backend_by_process_total", "gauge", "Number of backend connection slots in use"
    )
    for pid in sorted(per_pid):
        ratio.add(per_pid[pid] / slots[pid] if slots.get(pid) else math.nan, pool_pid=pid)
        total.add(float(slots.get(pid, 0)), pool_pid=pid)
    return [used, ratio, total]


def parse_pools(t: Table) -> list[Family]:
    total = t.nonempty("pool_pid")
    used = t.nonempty("username")
    return [
        *_by_process(t),
        Family(
            f"{NS}_backend_total",
            "gauge",
            "Number of total possible backend connection slots",
            [((), float(total))],
        ),
        Family(
            f"{NS}_backend_used",
            "gauge",
            "Number of backend connection slots in use",
            [((), float(used))],
        ),
        Family(
            f"{NS}_backend_used_ratio",
            "gauge",
            "Ratio of backend connections in use to total backend connection slots",
            [((), used / total if total else math.nan)],
        ),
    ]


def parse_cache(t: Table) -> list[Family]:
    fams = []
    for col, help_ in CACHE_COLS.items():
        fam = Family(f"{NS}_pool_cache_{col}", "gauge", help_)
        values = t.column(col)
        if values:
            fam.add(number(values[0]))
        fams.append(fam)
    return fams


QUERIES: tuple[tuple[str, Callable[[Table], list[Family]]], ...] = (
    ("pool_nodes", parse_pool_nodes),
    ("pool_backend_stats", parse_backend_stats),
    ("pool_health_check_stats", parse_health_check_stats),
    ("pool_processes", parse_processes),
    ("pool_pools", parse_pools),
    ("pool_cache", parse_cache),
)


def scrape_families(*, up: float, error: bool, scrapes: int, version: str) -> list[Family]:
    """The scrape's own families; ``version`` is ``SHOW POOL_VERSION``'s text ("" when pgpool
    does not answer: no version series then)."""
    m = re.match(r"^(\d+(?:\.\d+)+)", version)
    version = m.group(1) if m else version
    fams = [
        Family(
            f"{NS}_up",
            "gauge",
            "Whether the Pgpool-II server is up (1 for yes, 0 for no).",
            [((), up)],
        ),
        Family(
            f"{NS}_last_scrape_error",
            "gauge",
            "Whether the last scrape of metrics from "
            "Pgpool-II resulted in an error (1 for error, 0 for success).",
            [((), 1.0 if error else 0.0)],
        ),
        Family(
            f"{NS}_scrapes_total",
            "counter",
            "Total number of times Pgpool-II has been scraped for metrics.",
            [((), float(scrapes))],
        ),
    ]
    if version:
        fams += [
            Family(f"{NS}_version", "gauge", "Pgpool-II version", [((("version", version),), 1.0)]),
            Family(
                f"{NS}_version_info", "gauge", "Pgpool-II version", [((("version", version),), 1.0)]
            ),
        ]
    return fams


def duration_family(seconds: float) -> Family:
    return Family(
        f"{NS}_last_scrape_duration_seconds",
        "gauge",
        "Duration of the last scrape of metrics from Pgpool-II.",
        [((), seconds)],
    )
