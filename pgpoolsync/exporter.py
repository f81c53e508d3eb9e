"""pgpool's own metrics, compatible with pgpool2_exporter: SHOW commands → metric families.

Owns the parsing of ``SHOW pool_nodes``, ``pool_backend_stats``, ``pool_health_check_stats``,
``pool_processes``, ``pool_pools`` and ``pool_cache`` into plain ``Family`` values (columns by
name, so 4.3-4.5 all work), and ``Scraper``: one persistent psycopg connection, reconnected on
failure, each SHOW isolated so one failure does not sink the others. Names and labels follow
pgpool2_exporter; per-node families also carry ``node_id`` so two nodes on one host:port never
collide. The ``*_cnt`` families are exposed untyped: the text format requires a counter to end in
``_total`` and pgpool2_exporter's names do not.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg

log = logging.getLogger(__name__)

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


def status_value(text: str | None) -> float:
    return 1.0 if (text or "").strip().lower() in ("true", "up", "waiting") else 0.0


_NUMBER = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)")


def number(text: Any) -> float:
    """A float from pgpool's text: ``-nan``, ``nan``, ``unknown`` and empty → NaN."""
    if text is None:
        return math.nan
    if isinstance(text, int | float):
        return float(text)
    m = _NUMBER.match(str(text))
    return float(m.group(1)) if m else math.nan


def delay_seconds(text: Any) -> float | None:
    """Replication delay in seconds when pgpool reports it as time (``0.000568 second``)."""
    if text is None or "second" not in str(text):
        return None
    return number(text)


Rows = list[dict[str, Any]]

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
    "cache_hit_ratio": "Query cache hit ratio",
    "num_hash_entries": "Number of total hash entries",
    "used_hash_entries": "Number of used hash entries",
    "num_cache_entries": "Number of used cache entries",
    "used_cache_entries_size": "Total size of used cache size",
    "free_cache_entries_size": "Total size of free cache size",
}


def _node_labels(row: dict[str, Any], index: int) -> dict[str, str]:
    return {
        "hostname": str(row.get("hostname", "")),
        "port": str(row.get("port", "")),
        "role": str(row.get("role", "")),
        "node_id": str(row.get("node_id", index)),
    }


def _per_node(prefix: str, rows: Rows, columns: dict[str, str], *, kind: str) -> list[Family]:
    status = Family(
        f"{NS}_{prefix}_status",
        "gauge",
        "Backend node Status (1 for up or waiting, 0 for down or unused)",
    )
    fams = {c: Family(f"{NS}_{prefix}_{c}", kind, h) for c, h in columns.items()}
    for i, row in enumerate(rows):
        labels = _node_labels(row, i)
        if "status" in row:
            status.add(status_value(row["status"]), **labels)
        for col, fam in fams.items():
            if col in row:
                fam.add(number(row[col]), **labels)
    return [status, *fams.values()]


def parse_pool_nodes(rows: Rows) -> list[Family]:
    fams = _per_node("pool_nodes", rows, POOL_NODES_COLS, kind="untyped")
    delay = Family(f"{NS}_pool_nodes_replication_delay", "gauge", "Replication delay")
    delay_s = Family(
        f"{NS}_pool_nodes_replication_delay_seconds",
        "gauge",
        "Replication delay in seconds (when pgpool reports it as time)",
    )
    weight = Family(f"{NS}_pool_nodes_lb_weight", "gauge", "Load balance weight (0..1)")
    pg_status = Family(
        f"{NS}_pool_nodes_pg_status",
        "gauge",
        "Actual PostgreSQL status seen by pgpool (1 up, 0 otherwise)",
    )
    for i, row in enumerate(rows):
        labels = _node_labels(row, i)
        if "replication_delay" in row:
            delay.add(number(row["replication_delay"]), **labels)
            seconds = delay_seconds(row["replication_delay"])
            if seconds is not None:
                delay_s.add(seconds, **labels)
        if "lb_weight" in row:
            weight.add(number(row["lb_weight"]), **labels)
        if "pg_status" in row:
            pg_status.add(status_value(row["pg_status"]), **labels)
    return [*fams, delay, delay_s, weight, pg_status]


def parse_backend_stats(rows: Rows) -> list[Family]:
    return _per_node("pool_backend_stats", rows, BACKEND_STATS_COLS, kind="untyped")


def parse_health_check_stats(rows: Rows) -> list[Family]:
    return _per_node("pool_health_check_stats", rows, HEALTH_COLS, kind="gauge")


def parse_processes(rows: Rows) -> list[Family]:
    used = Family(f"{NS}_frontend_used", "gauge", "Number of used child processes")
    counts: dict[tuple[str, str], int] = {}
    for row in rows:
        user, db = row.get("username") or "", row.get("database") or ""
        if user and db:
            counts[(user, db)] = counts.get((user, db), 0) + 1
    for (user, db), n in sorted(counts.items()):
        used.add(float(n), username=user, database=db)
    total = len(rows)
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


def parse_pools(rows: Rows) -> list[Family]:
    total = sum(1 for r in rows if r.get("pool_pid"))
    used = sum(1 for r in rows if r.get("username"))
    return [
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


def parse_cache(rows: Rows) -> list[Family]:
    fams = []
    for col, help_ in CACHE_COLS.items():
        fam = Family(f"{NS}_pool_cache_{col}", "gauge", help_)
        for row in rows[:1]:
            if col in row:
                fam.add(number(row[col]))
        fams.append(fam)
    return fams


QUERIES: tuple[tuple[str, Callable[[Rows], list[Family]]], ...] = (
    ("pool_nodes", parse_pool_nodes),
    ("pool_backend_stats", parse_backend_stats),
    ("pool_health_check_stats", parse_health_check_stats),
    ("pool_processes", parse_processes),
    ("pool_pools", parse_pools),
    ("pool_cache", parse_cache),
)


def _rows(conn: psycopg.Connection[Any], what: str) -> Rows:
    """Rows of every result set: pgpool 4.3 answers SHOW pool_processes with an empty result
    set first and the real one second."""
    cur = conn.execute(f"SHOW {what}")
    rows: Rows = []
    while True:
        cols = [d.name for d in cur.description or []]
        rows += [dict(zip(cols, r, strict=False)) for r in cur.fetchall()]
        if not cur.nextset():
            return rows


class Scraper:
    """One persistent connection to pgpool; ``scrape()`` returns every family, never raises."""

    def __init__(
        self,
        *,
        conninfo: str,
        password: str | None = None,
        connect_timeout: int = 5,
        clock: Callable[[], float] = time.monotonic,
        connect: Callable[..., psycopg.Connection[Any]] = psycopg.connect,
    ) -> None:
        self._conninfo = conninfo
        self._password = password
        self._timeout = connect_timeout
        self._clock = clock
        self._connect = connect
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()
        self.scrapes = 0
        self.version = ""

    def _ensure(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            # Client-side binding sends the simple query protocol, which pgpool's SHOW needs
            # to return every result set.
            kw: dict[str, Any] = {
                "autocommit": True,
                "connect_timeout": self._timeout,
                "cursor_factory": psycopg.ClientCursor,
            }
            if self._password is not None:
                kw["password"] = self._password
            self._conn = self._connect(self._conninfo, **kw)
        return self._conn

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None

    def _ping(self) -> str:
        for attempt in (1, 2):
            try:
                conn = self._ensure()
                rows = _rows(conn, "POOL_VERSION")
                return str(next(iter(rows[-1].values()))) if rows else ""
            except psycopg.Error as exc:
                self._drop()
                if attempt == 2:
                    raise
                log.debug("pgpool ping failed (%s); reconnecting", type(exc).__name__)
        return ""

    def scrape(self) -> list[Family]:
        with self._lock:
            return self._scrape()

    def _scrape(self) -> list[Family]:
        start = self._clock()
        self.scrapes += 1
        fams: list[Family] = []
        error = False
        up = 1.0
        try:
            self.version = self._ping()
        except psycopg.Error as exc:
            log.warning("pgpool is not reachable: %s", type(exc).__name__)
            up = 0.0
            error = True
        if up:
            assert self._conn is not None
            for what, parse in QUERIES:
                try:
                    fams.extend(parse(_rows(self._conn, what)))
                except psycopg.Error as exc:
                    error = True
                    log.info(
                        "SHOW %s failed: %s",
                        what,
                        str(exc).strip().splitlines()[0]
                        if str(exc).strip()
                        else type(exc).__name__,
                    )
                    if self._conn.broken or self._conn.closed:
                        self._drop()
                        break
        m = re.match(r"^(\d+(?:\.\d+)+)", self.version)
        version = m.group(1) if m else self.version
        fams += [
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
                f"{NS}_scrapes",
                "counter",
                "Total number of times Pgpool-II has been scraped for metrics.",
                [((), float(self.scrapes))],
            ),
        ]
        if version:
            fams += [
                Family(
                    f"{NS}_version", "gauge", "Pgpool-II version", [((("version", version),), 1.0)]
                ),
                Family(
                    f"{NS}_version_info",
                    "gauge",
                    "Pgpool-II version",
                    [((("version", version),), 1.0)],
                ),
            ]
        fams.append(
            Family(
                f"{NS}_last_scrape_duration_seconds",
                "gauge",
                "Duration of the last scrape of metrics from Pgpool-II.",
                [((), self._clock() - start)],
            )
        )
        return fams


def conninfo_from_env(
    environ: dict[str, str] | Any, *, uri: str | None, user: str | None
) -> tuple[str, str | None]:
    """pgpool2_exporter's conventions: DATA_SOURCE_NAME, else DATA_SOURCE_URI/USER/PASS.

    Returns (conninfo, password); the password is kept out of the conninfo when separate.
    """
    dsn = environ.get("DATA_SOURCE_NAME")
    if dsn and not uri:
        return dsn, None
    uri = uri or environ.get("DATA_SOURCE_URI") or "127.0.0.1:9999/postgres?sslmode=disable"
    user = user or environ.get("DATA_SOURCE_USER") or "postgres"
    password = environ.get("DATA_SOURCE_PASS")
    prefix = "" if uri.startswith(("postgres://", "postgresql://")) else "postgresql://"
    from urllib.parse import quote  # noqa: PLC0415

    if prefix:
        return f"postgresql://{quote(user, safe='')}@{uri}", password
    return uri, password


def mask(conninfo: str) -> str:
    """A conninfo (URL or key=value) with any password replaced, for logs."""
    text = re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", conninfo)
    return re.sub(r"(password\s*=\s*)('[^']*'|\S+)", r"\1***", text)
