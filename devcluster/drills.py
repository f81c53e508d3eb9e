"""Topology drills: a steady stream of new sessions through real pgpool while the cluster changes
shape under it, with `pgpoolsync run --kube` (real client, API double) mirroring the Services.

Each backend sits behind a kube-proxy-like forwarder (devcluster/forwarder.py) that the API double's
Service points at. A drill changes the cluster (drops the replica's packets, switches over),
updates the EndpointSlices as the operator and Kubernetes would, and records every session: when
it started, how long it took, whether it worked. Shared by tests/real/test_topology_real.py and
bench/failover.py; ``topology=False`` runs the same drill with pgpoolsync's topology handling
off (the files alone, as pgpool2_on_k8s runs), the baseline that must fail.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import psycopg

from devcluster import PgCluster, Pgpool, netfault
from devcluster.forwarder import Forwarder
from devcluster.kubeapi import KubeApiDouble
from devcluster.kubeobjects import endpoint_slice, secret, service
from devcluster.ports import wait_until
from devcluster.runprocess import RunProcess
from devcluster.sessions import Session, streaming

USER, PASSWORD, DB = "drill_app", "drill-pw", "drill"  # not `postgres`: pgpool pools it never


@dataclass(frozen=True)
class Pod:
    """A PostgreSQL pod as its EndpointSlice entries name it."""

    name: str
    address: str
    uid: str


ADDRESSES = ("10.1.0.1", "10.1.0.2")  # the pods' addresses in the EndpointSlices
ONE_ADDRESS = ("10.1.0.1", "10.1.0.1")  # host network, a reused IP: both pods on one address


def pods(addresses: tuple[str, str] = ADDRESSES) -> tuple[Pod, Pod]:
    """The first primary's pod and the first replica's."""
    return Pod("pg-0", addresses[0], "6d1f0c1e-0000"), Pod("pg-1", addresses[1], "9b7e4a52-0001")


PRIMARY_POD, REPLICA_POD = pods()


class DrillRig(Protocol):
    """What a drill needs of the pgpool under test and the Services in front of PostgreSQL:
    `Rig` here (pgpool on this host, forwarders, the API double) or `devcluster.kubedrill`'s
    (the Deployment on a real node, kube-proxy, the real API server)."""

    pods: tuple[Pod, Pod]

    def slices(self, *, primary: tuple[Pod, bool], replica: tuple[Pod, bool]) -> None: ...
    def repoint(self, *, primary_port: int, replica_port: int) -> None: ...
    def dropped(self, port: int) -> contextlib.AbstractContextManager[None]: ...
    def read(self) -> int: ...
    def write(self) -> int: ...
    def node_log(self, since: float) -> str: ...


@dataclass(frozen=True)
class DrillResult:
    name: str
    topology: bool
    changed_at: float  # when the EndpointSlices were updated
    sessions: tuple[Session, ...] = field(repr=False)
    measured_at: float = 0.0
    log: str = field(default="", repr=False)  # pgpoolsync's node log lines, for a failure
    recovered_at: float | None = None  # replica drill: first read served by node 1 again
    back_at: float | None = None

    def bad(self, s: Session, *, limit: float = 3.0) -> bool:
        return not s.ok or s.took(self.measured_at) > limit

    def after(self, grace: float = 2.0) -> list[Session]:
        """Sessions started more than ``grace`` seconds after the EndpointSlice change (and
        before the replica came back, in the replica drill)."""
        end = self.back_at if self.back_at is not None else float("inf")
        return [s for s in self.sessions if self.changed_at + grace < s.start < end]

    def failed_after(self, grace: float = 2.0) -> list[Session]:
        return [s for s in self.after(grace) if self.bad(s)]

    def failed_before(self, grace: float = 2.0) -> list[Session]:
        return [s for s in self.sessions if s.start <= self.changed_at + grace and self.bad(s)]

    def longest_stall(self) -> float:
        return max((s.took(self.measured_at) for s in self.sessions), default=0.0)

    def recovery(self) -> float | None:
        """From the EndpointSlice change to the start of the first session after which every
        session worked."""
        bad = [s.start for s in self.sessions if s.start > self.changed_at and self.bad(s)]
        after = self.after(0.0)
        if not after:
            return None
        last_bad = max(bad, default=self.changed_at)
        good = [s.start for s in after if s.start > last_bad]
        return (min(good) - self.changed_at) if good else None

    def describe_failures(self, grace: float = 2.0) -> list[str]:
        return [
            f"+{s.start - self.changed_at:.2f}s took {s.took(self.measured_at):.2f}s: {s.error}"
            for s in self.failed_after(grace)
        ]

    def summary(self) -> dict[str, Any]:
        errors: dict[str, int] = {}
        for s in self.sessions:
            if self.bad(s):
                key = s.error or "took over 3 s"
                errors[key] = errors.get(key, 0) + 1
        return {
            "drill": self.name,
            "topology": "mirror" if self.topology else "off (static files)",
            "sessions": len(self.sessions),
            "failed_after_2s": len(self.failed_after()),
            "sessions_after_2s": len(self.after()),
            "failed_before_2s": len(self.failed_before()),
            "longest_stall_s": round(self.longest_stall(), 2),
            "recovery_s": None if self.recovery() is None else round(self.recovery() or 0, 2),
            "replica_reads_back_s": (
                None
                if self.recovered_at is None or self.back_at is None
                else round(self.recovered_at - self.back_at, 2)
            ),
            "errors": errors,
        }


def prepare(cluster: PgCluster) -> None:
    """The drills' role, database and table (once per cluster)."""
    cluster.set_role(USER, PASSWORD)
    with cluster.connect() as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB,)).fetchone():
            conn.execute(f"CREATE DATABASE {DB} OWNER {USER}")
    with cluster.connect(dbname=DB) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS writes (at timestamptz)")
        conn.execute(f"ALTER TABLE writes OWNER TO {USER}")
    cluster.wait_replayed()


class Rig:
    """Forwarders as Services, the API double, pgpool and `pgpoolsync run --kube`."""

    def __init__(
        self,
        base: Path,
        cluster: PgCluster,
        *,
        topology: bool,
        addresses: tuple[str, str] = ADDRESSES,
        args: tuple[str, ...] = (),
    ) -> None:
        self.base = base
        self.cluster = cluster
        self.topology = topology
        self.pods = pods(addresses)
        base.mkdir(parents=True, exist_ok=True)
        self.primary_fwd = Forwarder(cluster.primary.port)
        self.replica_fwd = Forwarder(cluster.replica.port)
        self.api = KubeApiDouble(bookmark_interval=1.0).start()
        self.api.put("services", service("pg", port=self.primary_fwd.port, cluster_ip="127.0.0.1"))
        self.api.put(
            "services", service("pg-repl", port=self.replica_fwd.port, cluster_ip="127.0.0.1")
        )
        self.slices(primary=(self.pods[0], True), replica=(self.pods[1], True))
        self.api.put(
            "secrets",
            secret("drill-app", {"username": USER, "password": PASSWORD}, labels={"app": "drill"}),
        )
        self.pool = Pgpool(base, base / "config", key_file=base / "config" / ".pgpoolkey")
        self.run = RunProcess(
            self.pool,
            None,
            log=base / "run.log",
            env={"PGPOOL_PARAMS_NUM_INIT_CHILDREN": "8", "PGPOOL_PARAMS_MAX_POOL": "2"},
            args=[
                "--kubeconfig",
                str(self.api.write_kubeconfig(base / "kubeconfig", namespace="default")),
                "--primary-service",
                "pg",
                "--replica-service",
                "pg-repl",
                "--service-address",
                "cluster-ip",
                "--secret-selector",
                "app=drill",
                "--watch-timeout-seconds",
                "5",
                "--topology",
                "mirror" if topology else "off",
                *args,
            ],
        )

    def node_log(self, since: float) -> str:
        """pgpoolsync's node lines, stamped relative to ``since`` (monotonic)."""
        offset = time.time() - time.monotonic()
        out = []
        for line in self.run.log_text().splitlines():
            if "node" not in line or "DEBUG" in line:
                continue
            try:
                stamp = time.mktime(time.strptime(line[:19], "%Y-%m-%d %H:%M:%S"))
                stamp += int(line[20:23]) / 1000
            except ValueError:
                continue
            out.append(f"+{stamp - offset - since:.2f}s {line[24:]}")
        return "\n".join(out)

    def slices(self, *, primary: tuple[Pod, bool], replica: tuple[Pod, bool]) -> None:
        for name, svc, (pod, ready) in (
            ("pg-x1", "pg", primary),
            ("pg-repl-x1", "pg-repl", replica),
        ):
            self.api.put(
                "endpointslices",
                endpoint_slice(name, svc, [(pod.address, ready)], pods=[(pod.name, pod.uid)]),
            )

    def repoint(self, *, primary_port: int, replica_port: int) -> None:
        """The Services now lead to these ports (kube-proxy following the EndpointSlices)."""
        self.primary_fwd.repoint(primary_port)
        self.replica_fwd.repoint(replica_port)

    def dropped(self, port: int) -> contextlib.AbstractContextManager[None]:
        return netfault.dropped(port)

    def __enter__(self) -> Rig:
        self.run.start()
        self.pool.start()
        self.run.wait_first_reload()
        wait_until(self._nodes_up, what="both nodes up in pgpool", timeout=30)
        return self

    def _nodes_up(self) -> bool:
        with contextlib.suppress(psycopg.Error), self.connect() as conn:
            rows = conn.execute("SHOW pool_nodes").fetchall()
            return len(rows) == 2 and all(r[3] in ("up", "waiting") for r in rows)
        return False

    def __exit__(self, *exc: object) -> None:
        self.run.stop()
        self.pool.stop()
        self.primary_fwd.close()
        self.replica_fwd.close()
        self.api.stop()

    def connect(self, **kw: Any) -> psycopg.Connection[Any]:
        return psycopg.connect(
            host="127.0.0.1",
            port=self.pool.port,
            user=USER,
            password=PASSWORD,
            dbname=DB,
            autocommit=True,
            connect_timeout=20,
            application_name="drill",  # as most drivers set one (JDBC, psql, ...)
            **kw,
        )

    def read(self) -> int:
        return read(self.connect)

    def write(self) -> int:
        return write(self.connect)


def read(connect: Callable[[], psycopg.Connection[Any]]) -> int:
    """A drill's read in a new session: the port of the PostgreSQL that served it."""
    with connect() as conn:
        row = conn.execute("SELECT inet_server_port()").fetchone()
        assert row is not None
        return int(row[0])


def write(connect: Callable[[], psycopg.Connection[Any]]) -> int:
    """A drill's write in a new session: the port of the PostgreSQL that took it."""
    with connect() as conn:
        row = conn.execute(
            "INSERT INTO writes VALUES (now()) RETURNING inet_server_port()"
        ).fetchone()
        assert row is not None
        return int(row[0])


def replica_lost(
    base: Path, cluster: PgCluster, *, topology: bool, hold: float = 6.0
) -> DrillResult:
    """The replica's packets dropped and its endpoint not ready, then both back."""
    with Rig(base, cluster, topology=topology) as rig:
        return replica_lost_on(rig, cluster, topology=topology, hold=hold)


def replica_lost_on(
    rig: DrillRig, cluster: PgCluster, *, topology: bool, hold: float = 6.0
) -> DrillResult:
    """`replica_lost` on a rig already running."""
    with streaming(rig.read) as stream:
        time.sleep(2.0)
        replica_port = cluster.replica.port
        primary_pod, replica_pod = rig.pods
        with rig.dropped(replica_port):
            changed = time.monotonic()
            rig.slices(primary=(primary_pod, True), replica=(replica_pod, False))
            time.sleep(hold)
            back = time.monotonic()
            measured = back + 3.0  # sessions started before ``back`` have had 3 s
        rig.slices(primary=(primary_pod, True), replica=(replica_pod, True))
        recovered = None
        deadline = back + 15.0
        while time.monotonic() < deadline and recovered is None:
            time.sleep(0.2)
            recovered = next(
                (
                    s.start
                    for s in list(stream.sessions)
                    if s.start > back and s.ok and s.port == replica_port
                ),
                None,
            )
        if time.monotonic() < measured:
            time.sleep(measured - time.monotonic())
        sessions = tuple(stream.sessions)
        log = rig.node_log(changed)
    return DrillResult(
        "replica lost",
        topology,
        changed,
        sessions,
        measured_at=measured,
        recovered_at=recovered,
        back_at=back,
        log=log,
    )


def switchover(
    base: Path,
    cluster: PgCluster,
    *,
    topology: bool,
    hold: float = 6.0,
    addresses: tuple[str, str] = ADDRESSES,
) -> DrillResult:
    """Stop the primary, promote the replica, restart the old primary as its standby (the
    Services still lead to the old pods for a while), then re-point the Services: each now has
    the other pod as its ready endpoint (``ONE_ADDRESS``: both pods on one address, so only the
    pods tell the endpoints apart)."""
    with Rig(base, cluster, topology=topology, addresses=addresses) as rig:
        name = "switchover" if addresses[0] != addresses[1] else "switchover, pods on one address"
        return switchover_on(rig, cluster, topology=topology, hold=hold, name=name)


def switchover_on(
    rig: DrillRig,
    cluster: PgCluster,
    *,
    topology: bool,
    hold: float = 6.0,
    name: str = "switchover",
) -> DrillResult:
    """`switchover` on a rig already running, its primary Service on ``rig.pods[0]``."""
    with streaming(rig.write) as stream:
        time.sleep(2.0)
        cluster.switchover()
        time.sleep(2.0)  # the operator has not updated the Services yet
        changed = time.monotonic()
        rig.repoint(primary_port=cluster.primary.port, replica_port=cluster.replica.port)
        rig.slices(primary=(rig.pods[1], True), replica=(rig.pods[0], True))
        time.sleep(hold)
        measured = time.monotonic() + 3.0
        time.sleep(3.0)
        sessions = tuple(s for s in stream.sessions if s.start < measured - 3.0)
        log = rig.node_log(changed)
    return DrillResult(name, topology, changed, sessions, measured_at=measured, log=log)
