"""The replica-lag gate: the pure decision (core/lag.py) with plain values and an injected clock,
the loop holding node 1 out through it against a fake pgpool and a fake probe, and its flags."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import pytest

from pgpoolsync.core import lag
from pgpoolsync.core.lag import Gate, Reading
from pgpoolsync.reconcile import Loop
from pgpoolsync.report.metrics import Metrics
from pgpoolsync.settings import UsageError, parse
from tests.fakes import FakePgpool, make_loop, value
from tests.unit.test_topology import Cluster

REPLICA = "10.0.0.2"


def run(
    gate: Gate, readings: list[tuple[float, Reading]], ready: tuple[str, ...] = (REPLICA,)
) -> Gate:
    for now, reading in readings:
        gate = lag.step(gate, reading, ready=ready, now=now)
    return gate


def test_an_idle_primary_is_never_lag_however_long_since_the_last_write() -> None:
    # One write at t=0, replayed by the next probe; then an hour of nothing.
    probes = [(0.0, Reading(100, ((REPLICA, 50),)))]
    probes += [(float(t), Reading(100, ((REPLICA, 100),))) for t in range(1, 3600)]
    gate = run(Gate(threshold=3), probes)
    assert gate.lags == ((REPLICA, 0.0),) and not gate.closed
    assert len(gate.history) == 1  # positions every standby has replayed are dropped


def test_paused_replay_is_lag_from_the_first_probe_that_saw_unreplayed_wal() -> None:
    # The primary writes every second; the standby stopped at 100.
    probes = [(float(t), Reading(100 + 10 * t, ((REPLICA, 100),))) for t in range(0, 4)]
    gate = run(Gate(threshold=3), probes)
    assert gate.lags == ((REPLICA, 2.0),) and not gate.closed  # first seen past 100 at t=1
    gate = run(gate, [(4.5, Reading(150, ((REPLICA, 100),)))])
    assert gate.lags == ((REPLICA, 3.5),) and gate.closed
    assert "every ready replica lags more than 3s" in gate.reason and REPLICA in gate.reason


def test_the_gate_opens_only_after_lag_stayed_under_the_threshold_for_the_settle_time() -> None:
    gate = Gate(threshold=3, settle=3, closed=True, reason="x")
    caught_up = Reading(500, ((REPLICA, 500),))
    gate = run(gate, [(10.0, caught_up), (12.0, caught_up)])
    assert gate.closed and gate.since == 10.0
    behind = run(
        gate, [(12.5, Reading(600, ((REPLICA, 500),))), (16.0, Reading(600, ((REPLICA, 500),)))]
    )
    assert behind.closed and behind.since is None  # over again: the settle time starts over
    assert not run(gate, [(13.0, caught_up)]).closed


def test_one_replica_caught_up_keeps_node_1_in_all_or_nothing() -> None:
    ready = (REPLICA, "10.0.0.3")
    probes = [
        (float(t), Reading(10 * t + 10, ((REPLICA, 10), ("10.0.0.3", 10 * t + 10))))
        for t in range(10)
    ]
    gate = run(Gate(threshold=3), probes, ready)
    assert dict(gate.lags)[REPLICA] > 3 and dict(gate.lags)["10.0.0.3"] == 0
    assert not gate.closed


def test_a_ready_replica_the_primary_does_not_list_keeps_the_gate_open() -> None:
    probes = [(float(t), Reading(10 * t + 10, ((REPLICA, 10),))) for t in range(10)]
    gate = run(Gate(threshold=3), probes, (REPLICA, "10.0.0.9"))
    assert gate.unmeasured == ("10.0.0.9",) and not gate.closed


def test_a_lagging_replica_whose_stream_broke_keeps_the_gate_closed_while_the_primary_writes() -> (
    None
):
    # Replay stopped at 100 while the primary writes every second: the gate closes at t=5.
    probes = [(float(t), Reading(100 + 10 * t, ((REPLICA, 100),))) for t in range(6)]
    gate = run(Gate(threshold=3, settle=3), probes)
    assert gate.closed
    # Then its stream breaks: the primary no longer lists it, its pod stays Ready.
    gone = [(float(t), Reading(100 + 10 * t)) for t in range(6, 20)]
    gate = run(gate, gone)
    assert gate.closed and gate.unmeasured == ()
    assert gate.lags == ((REPLICA, 18.0),)  # still growing from the WAL it never replayed


def test_a_caught_up_replica_whose_stream_broke_under_an_idle_primary_is_not_lag() -> None:
    gate = run(Gate(threshold=3), [(0.0, Reading(100, ((REPLICA, 100),)))])
    gate = run(gate, [(float(t), Reading(100)) for t in range(1, 30)])
    assert gate.lags == ((REPLICA, 0.0),) and not gate.closed


def test_a_replica_never_listed_is_unmeasured_and_a_replica_no_longer_ready_is_forgotten() -> None:
    gate = run(Gate(threshold=3), [(0.0, Reading(100, ((REPLICA, 100),)))])
    gate = run(gate, [(1.0, Reading(110))], ready=("10.0.0.9",))
    assert gate.unmeasured == ("10.0.0.9",) and gate.replayed == ()


def test_a_failed_probe_changes_nothing_but_says_why() -> None:
    open_gate = Gate(threshold=3, lags=((REPLICA, 1.0),))
    after = lag.failed(open_gate, "primary pg:5432 as monitor: timeout", now=5.0)
    assert not after.closed and after.lags == open_gate.lags and after.error is not None
    closed = lag.failed(Gate(threshold=3, closed=True, since=4.0), "down", now=5.0)
    assert closed.closed and closed.since == 4.0


def test_at_most_one_probe_per_second_and_slower_after_a_failure() -> None:
    gate = lag.step(Gate(threshold=3), Reading(1), ready=(), now=10.0)
    assert gate.due_in(now=10.2) == pytest.approx(0.8) and gate.due_in(now=11.0) == 0
    assert lag.failed(gate, "x", now=11.0).due_in(now=12.0) == pytest.approx(lag.RETRY_INTERVAL - 1)


# -- the loop: node 1 held out through the existing node machinery -----------------------------


class Probe:
    def __init__(self) -> None:
        self.readings: list[Reading | Exception] = []
        self.calls: list[Mapping[str, str]] = []

    def __call__(self, params: Mapping[str, str]) -> Reading:
        self.calls.append(params)
        item = self.readings.pop(0)
        if isinstance(item, Exception):
            raise item
        return item


class Gated(NamedTuple):
    """A loop with the gate on (threshold 3 s) against a fake pgpool and a fake probe."""

    loop: Loop
    m: Metrics
    pgpool: FakePgpool
    probe: Probe
    now: list[float]  # the injected clock: set now[0]
    events: list[tuple[str, str]]  # (reason, message) of every Event


def gated(tmp_path: Path) -> Gated:
    events: list[tuple[str, str]] = []
    now = [0.0]
    cluster, pgpool, probe = Cluster(), FakePgpool(), Probe()
    loop, m = make_loop(
        tmp_path,
        cluster.snapshot,
        pgpool,
        events=lambda p, r: events.append((r, str(p))),
        actuator_args={"clock": lambda: now[0], "lag_probe": probe, "max_replica_lag": 3},
    )
    return Gated(loop, m, pgpool, probe, now, events)


def test_the_loop_detaches_node_1_while_every_replica_lags_and_attaches_it_after(
    tmp_path: Path,
) -> None:
    loop, m, pgpool, probe, now, events = gated(tmp_path)
    for t in range(6):  # replay stopped at 100 while the primary writes
        now[0] = float(t)
        probe.readings.append(Reading(100 + t + 1, ((REPLICA, 100),)))
        due = loop.step()
        assert due <= 1.0
    assert probe.calls[0]["backend_port0"] == "5432"
    assert pgpool.commands == [("detach", 1)]
    assert value(m, "pgpoolsync_replica_lag_gate_closed") == 1
    assert (
        value(m, "pgpoolsync_replica_lag_seconds", {"address": REPLICA}) == 5.0
    )  # unreplayed since t=0
    assert value(m, "pgpoolsync_backend_up", {"node_id": "1"}) == 0  # not "not mirrored"
    assert value(m, "pgpoolsync_backend_up", {"node_id": "0"}) == 1
    assert any(r == "ReplicaLagGateClosed" for r, _ in events)
    assert any(r == "NodeDetached" and "lags more than 3s" in msg for r, msg in events)
    loop.step()  # within the second: no second probe
    assert len(probe.calls) == 6
    for t in range(6, 10):  # caught up
        now[0] = float(t)
        probe.readings.append(Reading(200, ((REPLICA, 200),)))
        loop.step()
    assert pgpool.commands == [("detach", 1), ("attach", 1)]
    assert value(m, "pgpoolsync_replica_lag_gate_closed") == 0
    assert any(r == "ReplicaLagGateOpened" for r, _ in events)


def test_a_failing_probe_never_takes_node_1_out(tmp_path: Path) -> None:
    loop, m, pgpool, probe, now, events = gated(tmp_path)
    for t in range(0, 30, 5):
        now[0] = float(t)
        probe.readings.append(OSError("connection refused"))
        loop.step()
    assert pgpool.commands == [] and len(probe.calls) == 6
    assert value(m, "pgpoolsync_replica_lag_probes_total", {"result": "error"}) == 6
    assert [r for r, _ in events].count("LagProbeFailed") == 1  # once per distinct error


def test_a_failed_probe_drops_the_lag_figures_it_can_no_longer_vouch_for(tmp_path: Path) -> None:
    loop, m, _, probe, now, _ = gated(tmp_path)
    lag_of = {"address": REPLICA}
    probe.readings += [Reading(100, ((REPLICA, 50),)), Reading(110, ((REPLICA, 50),))]
    loop.step()
    now[0] = 2.0
    loop.step()
    assert m.registry.get_sample_value("pgpoolsync_replica_lag_seconds", lag_of) == 2.0
    now[0] = 4.0
    probe.readings.append(OSError("connection refused"))
    loop.step()
    assert m.registry.get_sample_value("pgpoolsync_replica_lag_seconds", lag_of) is None


# -- flags ---------------------------------------------------------------------------------------

BASE = ["run", "--config-dir", "/tmp/x", "--kubeconfig", "/tmp/kc", "--primary-service", "pg"]
ENV = {"PGPOOL_PCP_USER": "u", "PGPOOL_PCP_PASSWORD": "p"}


def test_max_replica_lag_without_a_monitoring_login_is_refused_by_name() -> None:
    with pytest.raises(
        UsageError,
        match=r"--max-replica-lag \(PGPOOLSYNC_MAX_REPLICA_LAG\) needs a monitoring login",
    ):
        parse([*BASE, "--max-replica-lag", "3"], ENV)
    with pytest.raises(UsageError, match="PGPOOLSYNC_MAX_REPLICA_LAG"):
        parse(BASE, {**ENV, "PGPOOLSYNC_MAX_REPLICA_LAG": "3", "PGPOOLSYNC_MONITOR_USER": "m"})
    with pytest.raises(UsageError, match="needs --kube and --topology mirror"):
        parse(
            [
                *BASE,
                "--topology",
                "off",
                "--max-replica-lag",
                "3",
                "--monitor-user",
                "m",
                "--monitor-password-file",
                "/dev/null",
            ],
            ENV,
        )


def test_the_monitoring_login_comes_from_env_twins_and_its_password_never_shows(
    tmp_path: Path,
) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret-lag\n")
    s = parse(
        BASE,
        {
            **ENV,
            "PGPOOLSYNC_MAX_REPLICA_LAG": "10",
            "PGPOOLSYNC_MONITOR_USER": "monitor",
            "PGPOOLSYNC_MONITOR_PASSWORD_FILE": str(secret),
        },
    )
    assert s.run is not None
    assert (s.run.max_replica_lag, s.run.monitor_user, s.run.monitor_password) == (
        10,
        "monitor",
        "s3cret-lag",
    )
    assert "s3cret-lag" not in repr(s)
    empty = tmp_path / "empty"
    empty.write_text("")
    with pytest.raises(UsageError, match=r"--monitor-password-file .*: empty"):
        parse([*BASE, "--monitor-user", "m", "--monitor-password-file", str(empty)], ENV)


def test_the_monitoring_password_is_re_read_and_the_last_good_one_kept_when_the_file_is_not(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from pgpoolsync.wiring import password_file_reader

    secret = tmp_path / "password"
    secret.write_text("first\n")
    read = password_file_reader("--monitor-password-file", str(secret), last="at-start")
    assert read() == "first"
    secret.write_text("rotated")
    assert read() == "rotated"
    secret.write_text("")
    assert read() == "rotated"
    secret.unlink()
    assert read() == "rotated"
    assert "rotated" not in caplog.text and "--monitor-password-file" in caplog.text
