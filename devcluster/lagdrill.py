"""The replica-lag drill: stale reads through real pgpool while the replica stops replaying.

Real primary + streaming replica (the replica streams over 127.0.0.1, so the primary's
``pg_stat_replication.client_addr`` is the address its EndpointSlice entry has), real pgpool,
`pgpoolsync run --kube` against the API double (devcluster/drills.py's Rig; both pods on 127.0.0.1).
Writes through pgpool every 50 ms (one session; each id's commit time recorded); a read of
``max(id)`` in a new session every 100 ms (pgpool load-balances about half to node 1); replay
paused on the replica with ``pg_wal_replay_pause()`` for ``pause`` seconds, then resumed; writes
go on for ``after`` seconds, then stop for ``idle`` seconds while the reads go on. A read's
staleness: how long before it started the first write it does not see had committed. Shared by
tests/real/test_lag_real.py and bench/failover.py; ``max_lag=None`` runs without the gate.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from devcluster import PgCluster, drills
from devcluster.ports import wait_until

MONITOR, MONITOR_PASSWORD = "drill_monitor", "drill-monitor-pw"
LOOPBACK = ("127.0.0.1", "127.0.0.1")
TABLE = "lagdrill"  # spelt out in the queries below


@dataclass
class Read:
    start: float
    end: float | None = None
    max_id: int | None = None
    port: int | None = None
    error: str = ""


@dataclass(frozen=True)
class LagResult:
    max_lag: int | None
    paused_at: float
    resumed_at: float
    idle_at: float
    ended_at: float
    replica_port: int
    reads: tuple[Read, ...] = field(repr=False)
    commits: tuple[tuple[int, float], ...] = field(repr=False)  # (id, committed by)
    log: tuple[tuple[float, str], ...] = field(default=(), repr=False)  # (monotonic, line)

    def staleness(self, r: Read) -> float:
        """Seconds between the first commit the read does not see and the read's start (0 when
        it saw every write committed before it started)."""
        if r.max_id is None:
            return 0.0
        missing = [at for i, at in self.commits if i > r.max_id and at < r.start]
        return r.start - min(missing) if missing else 0.0

    def ok(self) -> list[Read]:
        return [r for r in self.reads if r.max_id is not None]

    def stale(self, *, limit: float = 3.0, after: float = 0.0) -> list[Read]:
        """Reads that started ``after`` seconds after the pause or later and returned data
        older than ``limit``."""
        return [
            r for r in self.ok() if r.start > self.paused_at + after and self.staleness(r) > limit
        ]

    def replica_reads(self, start: float, end: float) -> list[Read]:
        return [r for r in self.ok() if start <= r.start < end and r.port == self.replica_port]

    def first_line(self, pattern: str, after: float) -> float | None:
        return next((t for t, line in self.log if t >= after and re.search(pattern, line)), None)

    def summary(self) -> dict[str, Any]:
        gated = self.first_line(r"detached node 1", self.paused_at)
        back = self.first_line(r"attached node 1", self.resumed_at)
        served = self.replica_reads(self.resumed_at, self.ended_at)
        worst = max((self.staleness(r) for r in self.ok()), default=0.0)
        return {
            "drill": "replica lag",
            "max_replica_lag": self.max_lag,
            "reads": len(self.reads),
            "failed_reads": len(self.reads) - len(self.ok()),
            "stale_reads_over_3s": len(self.stale()),
            "stale_reads_over_3s_started_6s_after_pause": len(self.stale(after=6.0)),
            "worst_staleness_s": round(worst, 2),
            "time_to_gate_s": None if gated is None else round(gated - self.paused_at, 2),
            "time_back_s": None if back is None else round(back - self.resumed_at, 2),
            "replica_reads_back_s": (
                round(served[0].start - self.resumed_at, 2) if served else None
            ),
            "replica_reads_while_idle": len(self.replica_reads(self.idle_at, self.ended_at)),
            "reads_while_idle": len([r for r in self.ok() if r.start >= self.idle_at]),
        }


def stream_over_tcp(cluster: PgCluster) -> None:
    """Make the replica stream from 127.0.0.1 rather than the Unix socket, so the primary lists
    it with an address; and give the drill its monitoring login and table (idempotent)."""
    hba = cluster.primary.datadir / "pg_hba.conf"
    line = "host replication all 127.0.0.1/32 trust\n"
    if line not in hba.read_text():
        with hba.open("a") as f:  # appending keeps the file's owner
            f.write(line)
    with cluster.connect() as conn:
        conn.execute("SELECT pg_reload_conf()")
    cluster.set_role(MONITOR, MONITOR_PASSWORD)
    with cluster.connect() as conn:
        conn.execute(f"GRANT pg_monitor TO {MONITOR}")
    with cluster.connect(dbname=drills.DB) as conn:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (id bigserial PRIMARY KEY, v int)")
        conn.execute(f"ALTER TABLE {TABLE} OWNER TO {drills.USER}")
    with cluster.connect(cluster.replica) as conn:
        conninfo = f"host=127.0.0.1 port={cluster.primary.port} user=postgres"
        conn.execute(f"ALTER SYSTEM SET primary_conninfo = '{conninfo}'")
        conn.execute("SELECT pg_reload_conf()")

    def over_tcp() -> bool:
        with cluster.connect() as conn:
            rows = conn.execute(
                "SELECT host(client_addr) FROM pg_stat_replication WHERE state = 'streaming'"
            ).fetchall()
        return rows == [("127.0.0.1",)]

    wait_until(over_tcp, what="the replica streaming over 127.0.0.1", timeout=30)
    cluster.wait_replayed()


class _Writer:
    """One session through pgpool, an INSERT every 50 ms while ``on`` is set."""

    def __init__(self, rig: drills.Rig) -> None:
        self.rig = rig
        self.commits: list[tuple[int, float]] = []
        self.on = threading.Event()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="writer", daemon=True)

    def _run(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        while not self.stop.wait(0.05):
            if not self.on.is_set():
                continue
            try:
                conn = conn or self.rig.connect()
                row = conn.execute("INSERT INTO lagdrill (v) VALUES (1) RETURNING id").fetchone()
                assert row is not None
                self.commits.append((int(row[0]), time.monotonic()))
            except psycopg.Error:
                with contextlib.suppress(psycopg.Error):
                    if conn is not None:
                        conn.close()
                conn = None
        if conn is not None:
            conn.close()


class _Reader:
    """A read of max(id) in a new session every 100 ms, each in its own thread."""

    def __init__(self, rig: drills.Rig) -> None:
        self.rig = rig
        self.reads: list[Read] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="reader", daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(0.1):
            r = Read(time.monotonic())
            self.reads.append(r)
            threading.Thread(target=self._one, args=(r,), daemon=True).start()

    def _one(self, r: Read) -> None:
        try:
            with self.rig.connect() as conn:
                row = conn.execute("SELECT max(id), inet_server_port() FROM lagdrill").fetchone()
                assert row is not None
                r.max_id, r.port = int(row[0] or 0), int(row[1])
        except psycopg.Error as exc:
            r.error = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        r.end = time.monotonic()


def replica_lag(
    base: Path,
    cluster: PgCluster,
    *,
    max_lag: int | None,
    pause: float = 12.0,
    after: float = 12.0,
    idle: float = 20.0,
) -> LagResult:
    stream_over_tcp(cluster)
    args: tuple[str, ...] = ()
    if max_lag is not None:
        pw = base / "monitor-password"
        base.mkdir(parents=True, exist_ok=True)
        pw.write_text(MONITOR_PASSWORD)
        pw.chmod(0o600)
        args = (
            "--max-replica-lag",
            str(max_lag),
            "--monitor-user",
            MONITOR,
            "--monitor-password-file",
            str(pw),
        )
    with drills.Rig(base, cluster, topology=True, addresses=LOOPBACK, args=args) as rig:
        writer, reader = _Writer(rig), _Reader(rig)
        writer.on.set()
        writer.thread.start()
        reader.thread.start()
        try:
            time.sleep(3.0)
            with cluster.connect(cluster.replica) as conn:
                conn.execute("SELECT pg_wal_replay_pause()")
                paused = time.monotonic()
                time.sleep(pause)
                conn.execute("SELECT pg_wal_replay_resume()")
                resumed = time.monotonic()
            time.sleep(after)
            writer.on.clear()
            idle_at = time.monotonic()
            time.sleep(idle)
            ended = time.monotonic()
        finally:
            reader.stop.set()
            writer.stop.set()
            reader.thread.join()
            writer.thread.join()
        time.sleep(1.0)  # the last reads finish
        offset = time.time() - time.monotonic()
        log = []
        for line in rig.run.log_text().splitlines():
            try:
                stamp = time.mktime(time.strptime(line[:19], "%Y-%m-%d %H:%M:%S"))
                stamp += int(line[20:23]) / 1000
            except ValueError:
                continue
            log.append((stamp - offset, line[24:]))
    return LagResult(
        max_lag=max_lag,
        paused_at=paused,
        resumed_at=resumed,
        idle_at=idle_at,
        ended_at=ended,
        replica_port=cluster.replica.port,
        reads=tuple(r for r in reader.reads if r.start < ended),
        commits=tuple(writer.commits),
        log=tuple(log),
    )
