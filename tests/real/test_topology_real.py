"""Topology drills against real PostgreSQL (primary + streaming replica), real pgpool and
`pgpoolsync run --kube` (real client, API double), each backend behind a kube-proxy-like
forwarder; the same drills with topology handling off must fail (devcluster/drills.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from devcluster import PgCluster, drills, netfault, running_cluster
from devcluster.ports import wait_until

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def drill_cluster(pg_base: Path) -> Iterator[PgCluster]:
    """A cluster of its own: the switchover drills swap its primary and replica."""
    assert netfault.available(), "the drills need iptables and root (.ci/install installs it)"
    with running_cluster(pg_base / "drill-pg") as c:
        drills.prepare(c)
        yield c


def _show(result: drills.DrillResult) -> str:
    failures = "\n".join(result.describe_failures())
    return f"{result.summary()}\nfailed after 2 s:\n{failures}\npgpoolsync:\n{result.log}"


def test_replica_lost_every_login_after_two_seconds_succeeds_and_reads_return(
    drill_cluster: PgCluster, pg_base: Path
) -> None:
    r = drills.replica_lost(pg_base / "rl-on", drill_cluster, topology=True)
    assert len(r.after()) >= 10, _show(r)
    assert r.failed_after() == [], _show(r)
    assert r.recovered_at is not None and r.back_at is not None, _show(r)
    assert r.recovered_at - r.back_at < 10.0, _show(r)


def test_without_topology_handling_a_lost_replica_stalls_logins(
    drill_cluster: PgCluster, pg_base: Path
) -> None:
    r = drills.replica_lost(pg_base / "rl-off", drill_cluster, topology=False)
    assert r.failed_after(), _show(r)


def test_a_primary_without_ready_endpoint_is_detached_and_reads_go_on(
    drill_cluster: PgCluster, pg_base: Path
) -> None:
    with drills.Rig(pg_base / "pd", drill_cluster, topology=True) as rig:
        rig.slices(primary=(drills.PRIMARY_POD, False), replica=(drills.REPLICA_POD, True))
        wait_until(
            lambda: rig.run.metric("pgpoolsync_pgpool_node_up", 'node_id="0"') == 0,
            what="node 0 detached",
        )
        assert rig.run.metric("pgpoolsync_backend_up", 'node_id="0"') == 0
        assert rig.read() == drill_cluster.replica.port  # pgpool 4.3 serves reads on node 1
        started = time.monotonic()
        with pytest.raises(psycopg.Error, match="read-only"):
            rig.write()
        assert time.monotonic() - started < 3.0  # refused at once, not hung
        rig.slices(primary=(drills.PRIMARY_POD, True), replica=(drills.REPLICA_POD, True))
        wait_until(
            lambda: rig.run.metric("pgpoolsync_pgpool_node_up", 'node_id="0"') == 1,
            what="node 0 attached",
            timeout=30,
        )
        wait_until(lambda: _writes(rig), what="writes work again")
        conf = (rig.pool.config_dir / "pgpool.conf").read_text()
        assert "backend_flag0 = 'ALWAYS_PRIMARY|DISALLOW_TO_FAILOVER'" in conf
        log = rig.run.log_text()
        assert "detached node 0: Service has no ready endpoint" in log
        assert "attached node 0" in log


def _writes(rig: drills.Rig) -> bool:
    try:
        return rig.write() > 0
    except psycopg.Error:
        return False


def test_switchover_every_write_after_two_seconds_succeeds_on_the_new_primary(
    drill_cluster: PgCluster, pg_base: Path
) -> None:
    r = drills.switchover(pg_base / "so-on", drill_cluster, topology=True)
    after = r.after()
    assert len(after) >= 10, _show(r)
    assert r.failed_after() == [], _show(r)
    assert {s.port for s in after} == {drill_cluster.primary.port}, _show(r)


def test_without_topology_handling_a_switchover_leaves_writes_on_the_old_primary(
    drill_cluster: PgCluster, pg_base: Path
) -> None:
    r = drills.switchover(pg_base / "so-off", drill_cluster, topology=False)
    failed = r.failed_after()
    assert failed, _show(r)
    assert any("read-only" in s.error for s in failed), _show(r)


def test_switchover_between_pods_on_one_address_is_seen_and_every_write_after_two_seconds_succeeds(
    drill_cluster: PgCluster, pg_base: Path
) -> None:
    r = drills.switchover(
        pg_base / "so-one", drill_cluster, topology=True, addresses=drills.ONE_ADDRESS
    )
    after = r.after()
    assert len(after) >= 10, _show(r)
    assert r.failed_after() == [], _show(r)
    assert {s.port for s in after} == {drill_cluster.primary.port}, _show(r)
    assert "recycled" in r.log and "pod pg-1" in r.log, _show(r)
