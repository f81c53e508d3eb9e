"""The replica-lag drill (devcluster/lagdrill.py) on real PostgreSQL and real pgpool: with
``--max-replica-lag 3`` no read returns data older than 3 s once the gate has had its 3 s, node 1
serves reads again soon after replay resumes and stays in rotation while the primary is idle;
without the flag the same drill returns stale reads."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devcluster import PgCluster, drills, lagdrill, netfault, running_cluster
from devcluster.forwarder import Forwarder

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def lag_cluster(pg_base: Path) -> Iterator[PgCluster]:
    with running_cluster(pg_base / "lag-pg") as c:
        drills.prepare(c)
        yield c


def _show(r: lagdrill.LagResult) -> str:
    lines = "\n".join(f"+{t - r.paused_at:.2f}s {line}" for t, line in r.log if "node" in line)
    stale = "\n".join(
        f"+{s.start - r.paused_at:.2f}s port {s.port}: {r.staleness(s):.2f}s old" for s in r.stale()
    )
    return f"{r.summary()}\nstale reads:\n{stale}\npgpoolsync:\n{lines}"


def test_with_max_replica_lag_no_read_is_stale_after_the_gate_and_node_1_returns_and_stays(
    lag_cluster: PgCluster, pg_base: Path
) -> None:
    r = lagdrill.replica_lag(pg_base / "lag-on", lag_cluster, max_lag=3)
    late = [s for s in r.ok() if s.start > r.paused_at + 6.0]
    assert len(late) >= 100, _show(r)
    assert r.stale(after=6.0) == [], _show(r)
    assert {s.port for s in r.ok() if r.paused_at + 6 < s.start < r.resumed_at} == {
        lag_cluster.primary.port
    }, _show(r)
    back = r.replica_reads(r.resumed_at, r.ended_at)
    assert back and back[0].start - r.resumed_at < 10.0, _show(r)
    # Idle: no write for 20 s, yet node 1 stays in rotation and serves reads throughout.
    assert r.first_line(r"detached node 1", r.idle_at) is None, _show(r)
    for start in (r.idle_at + 5.0, r.idle_at + 10.0, r.idle_at + 15.0):
        assert r.replica_reads(start, start + 5.0), _show(r)
    assert r.first_line(r"replica-lag gate closed", r.paused_at) is not None, _show(r)


def test_without_max_replica_lag_the_same_drill_returns_stale_reads(
    lag_cluster: PgCluster, pg_base: Path
) -> None:
    r = lagdrill.replica_lag(pg_base / "lag-off", lag_cluster, max_lag=None)
    assert len(r.stale(after=6.0)) >= 5, _show(r)


def test_the_probe_reads_the_primary_and_a_failed_one_names_it_never_the_password(
    lag_cluster: PgCluster,
) -> None:
    from pgpoolsync.pgpool.lagprobe import LagProbe, LagProbeError

    lagdrill.stream_over_tcp(lag_cluster)
    params = {"backend_hostname0": "127.0.0.1", "backend_port0": str(lag_cluster.primary.port)}
    probe = LagProbe(user=lagdrill.MONITOR, password=lambda: lagdrill.MONITOR_PASSWORD)
    reading = probe(params)
    probe.close()
    assert reading.lsn > 0 and [a for a, _ in reading.replay] == ["127.0.0.1"]
    bad = LagProbe(user=lagdrill.MONITOR, password=lambda: "wrong-secret-4711")
    with pytest.raises(LagProbeError) as err:
        bad(params)
    assert f"primary 127.0.0.1:{lag_cluster.primary.port} as {lagdrill.MONITOR}" in str(err.value)
    assert "wrong-secret-4711" not in str(err.value)
    standby = {**params, "backend_port0": str(lag_cluster.replica.port)}
    with pytest.raises(LagProbeError, match="recovery is in progress"):
        probe(standby)


def test_a_rotated_monitoring_password_is_read_from_its_file_on_the_next_connection(
    lag_cluster: PgCluster, tmp_path: Path
) -> None:
    from pgpoolsync.pgpool.lagprobe import LagProbe
    from pgpoolsync.wiring import password_file_reader

    lagdrill.stream_over_tcp(lag_cluster)
    params = {"backend_hostname0": "127.0.0.1", "backend_port0": str(lag_cluster.primary.port)}
    secret = tmp_path / "password"  # as kubelet keeps a mounted Secret's file
    secret.write_text(lagdrill.MONITOR_PASSWORD)
    flag = "--monitor-password-file"
    probe = LagProbe(
        user=lagdrill.MONITOR,
        password=password_file_reader(flag, str(secret), last=lagdrill.MONITOR_PASSWORD),
    )
    try:
        assert probe(params).lsn > 0
        lag_cluster.set_role(lagdrill.MONITOR, "rotated-monitor-pw")
        secret.write_text("rotated-monitor-pw\n")
        probe.close()  # the next probe connects again, as after a dropped connection
        assert probe(params).lsn > 0
    finally:
        probe.close()
        lag_cluster.set_role(lagdrill.MONITOR, lagdrill.MONITOR_PASSWORD)


def test_a_probe_to_a_primary_that_stopped_answering_fails_instead_of_holding_the_loop(
    lag_cluster: PgCluster,
) -> None:
    """A kept connection to a primary whose packets are now dropped (a dead node): the probe
    must give up with an error (the loop that runs it also runs the node commands), not wait for
    the kernel's retransmissions."""
    import threading

    from pgpoolsync.pgpool.lagprobe import LagProbe, LagProbeError

    lagdrill.stream_over_tcp(lag_cluster)
    fwd = Forwarder(lag_cluster.primary.port)
    params = {"backend_hostname0": "127.0.0.1", "backend_port0": str(fwd.port)}
    probe = LagProbe(user=lagdrill.MONITOR, password=lambda: lagdrill.MONITOR_PASSWORD)
    outcome: list[object] = []
    try:
        assert probe(params).lsn > 0  # connected, kept
        with netfault.dropped(fwd.port):

            def again() -> None:
                try:
                    outcome.append(probe(params))
                except LagProbeError as exc:
                    outcome.append(exc)

            t = threading.Thread(target=again, daemon=True)
            t.start()
            t.join(60.0)  # a hang guard, not a speed claim: the kernel would wait ~15 minutes
        assert outcome and isinstance(outcome[0], LagProbeError), outcome
        assert f"primary 127.0.0.1:{fwd.port}" in str(outcome[0])
    finally:
        probe.close()
        fwd.close()
