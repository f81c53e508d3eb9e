"""The topology planner (pure) and the loop running its node commands against a fake pgpool that
refuses a detach for a DISALLOW_TO_FAILOVER node, as pgpool does."""

from __future__ import annotations

import itertools
from pathlib import Path

from devcluster.kubeobjects import endpoint_slice, service
from pgpoolsync.core import model, topology
from pgpoolsync.core.model import NodeTarget
from pgpoolsync.core.topology import ATTACH, DETACH, RECYCLE, NodeMemory
from pgpoolsync.sources.convert import ready_endpoints
from tests.fakes import FakePgpool, make_loop, value
from tests.origins import src

PRIMARY = src("service ns/pg")
REPLICA = src("service ns/pg-repl")


def targets(primary: tuple[str, ...], replica: tuple[str, ...]) -> list[NodeTarget]:
    return [NodeTarget(0, primary, PRIMARY, primary=True), NodeTarget(1, replica, REPLICA)]


def plan_of(
    tg: list[NodeTarget],
    status: dict[int, int],
    memory: dict[int, NodeMemory] | None = None,
    *,
    now: float = 100.0,
) -> topology.Plan:
    return topology.plan(tg, status, memory or {}, now=now, settle=3.0, min_interval=1.0)


def test_a_replica_without_ready_endpoint_is_detached() -> None:
    p = plan_of(targets(("10.0.0.1",), ()), {0: 2, 1: 2})
    assert [(a.node_id, a.action) for a in p.actions] == [(1, DETACH)]
    assert p.actions[0].source == REPLICA


def test_nothing_is_done_when_pgpool_already_matches() -> None:
    memory = {0: NodeMemory(applied=("10.0.0.1",)), 1: NodeMemory(applied=())}
    assert plan_of(targets(("10.0.0.1",), ()), {0: 2, 1: 3}, memory).actions == ()


def test_a_ready_node_is_attached_only_after_settling() -> None:
    tg = targets(("10.0.0.1",), ("10.0.0.2",))
    memory = {1: NodeMemory(ready_since=99.0)}
    early = plan_of(tg, {0: 2, 1: 3}, memory)
    assert early.actions == () and early.wait == 2.0 and early.held == (1,)
    later = plan_of(tg, {0: 2, 1: 3}, memory, now=102.0)
    assert [(a.node_id, a.action) for a in later.actions] == [(1, ATTACH)]


def test_a_moved_primary_endpoint_recycles_node_0() -> None:
    memory = {0: NodeMemory(applied=("10.0.0.1",))}
    p = plan_of(targets(("10.0.0.9",), ("10.0.0.2",)), {0: 2, 1: 2}, memory)
    assert [(a.node_id, a.action) for a in p.actions] == [(0, RECYCLE)]
    assert "10.0.0.1" in p.actions[0].reason and "10.0.0.9" in p.actions[0].reason


def test_a_replica_pod_that_went_away_recycles_node_1_but_one_promoted_does_not() -> None:
    memory = {0: NodeMemory(applied=("p",)), 1: NodeMemory(applied=("r1", "r2"))}
    tg = targets(("p",), ("r1",))
    seen = topology.observe(memory, tg, now=100.0)
    early = plan_of(tg, {0: 2, 1: 2}, seen)
    assert early.actions == () and early.held == (1,)  # the primary Service may follow
    gone = plan_of(tg, {0: 2, 1: 2}, seen, now=103.0)
    assert [(a.node_id, a.action) for a in gone.actions] == [(1, RECYCLE)]
    promoted = plan_of(targets(("r2",), ("r1", "p")), {0: 2, 1: 2}, memory)
    assert [(a.node_id, a.action) for a in promoted.actions] == [(0, RECYCLE)]


def test_the_replica_half_of_a_switchover_seen_first_recycles_only_the_primary() -> None:
    memory = {0: NodeMemory(applied=("p",)), 1: NodeMemory(applied=("r",))}
    half = targets(("p",), ("p",))  # the replica Service's slice arrived first
    memory = topology.observe(memory, half, now=100.0)
    assert plan_of(half, {0: 2, 1: 2}, memory).actions == ()
    whole = targets(("r",), ("p",))
    memory = topology.observe(memory, whole, now=100.5)
    p = plan_of(whole, {0: 2, 1: 2}, memory, now=100.5)
    assert [(a.node_id, a.action) for a in p.actions] == [(0, RECYCLE)]
    assert memory[1].moved_since is None


def test_an_added_endpoint_invalidates_nothing() -> None:
    memory = {1: NodeMemory(applied=("10.0.0.2",))}
    assert plan_of(targets((), ("10.0.0.2", "10.0.0.3")), {1: 2}, memory).actions == ()


def test_the_first_pass_records_endpoints_without_recycling() -> None:
    tg = targets(("10.0.0.1",), ("10.0.0.2",))
    assert plan_of(tg, {0: 2, 1: 2}).actions == ()
    memory = topology.in_step({}, tg, {0: 2, 1: 2}, held=())
    assert memory[0].applied == ("10.0.0.1",)


def test_commands_on_a_node_are_spaced_by_the_minimum_interval() -> None:
    memory = {1: NodeMemory(last_command=99.5)}
    p = plan_of(targets(("10.0.0.1",), ()), {0: 2, 1: 2}, memory)
    assert p.actions == () and p.wait == 0.5


def test_a_node_pgpool_does_not_have_is_left_alone() -> None:
    assert plan_of(targets(("a",), ()), {0: 2}).actions == ()


def test_allow_failover_changes_only_the_named_flags() -> None:
    state = model.DesiredState(
        params=(
            ("backend_flag0", model.PRIMARY_FLAG),
            ("backend_flag1", model.REPLICA_FLAG),
            ("port", "9999"),
        ),
        credentials=(),
        password_format="aes",
        hba_rules=(),
        pcp_users=(),
    )
    out = dict(topology.allow_failover(state, [0]).params)
    assert out == {
        "backend_flag0": "ALWAYS_PRIMARY|ALLOW_TO_FAILOVER",
        "backend_flag1": "DISALLOW_TO_FAILOVER",
        "port": "9999",
    }
    assert topology.failover_allowed(out, [0]) and not topology.failover_allowed(out, [1])
    assert topology.failover_allowed(out, [1], allowed=False)


# -- the loop against a fake pgpool -------------------------------------------------------------


class Cluster:
    """Services' ready endpoints, as a Kubernetes source would hand them in."""

    def __init__(self) -> None:
        self.primary: tuple[str, ...] = ("10.0.0.1",)
        self.replica: tuple[str, ...] = ("10.0.0.2",)

    def snapshot(self) -> model.Snapshot:
        return model.Snapshot(
            backends=(
                model.Backend("pg", 5432, model.PRIMARY_FLAG, ready=self.primary, source=PRIMARY),
                model.Backend(
                    "pg-repl",
                    5432,
                    model.REPLICA_FLAG,
                    weight=len(self.replica),
                    ready=self.replica,
                    source=REPLICA,
                ),
            )
        )


def test_replica_lost_and_back_detaches_then_attaches_with_disallow_restored(
    tmp_path: Path,
) -> None:
    events: list[tuple[str, str]] = []
    cluster, pgpool = Cluster(), FakePgpool()
    now = [0.0]
    loop, m = make_loop(
        tmp_path,
        cluster.snapshot,
        pgpool,
        events=lambda p, r: events.append((r, str(p))),
        actuator_args={"clock": lambda: now[0]},
    )
    loop.step()
    assert pgpool.commands == []
    cluster.replica = ()
    loop.step()
    assert pgpool.commands == [("detach", 1)] and pgpool.status[1] == 3
    conf = (tmp_path / "pgpool.conf").read_text()
    assert "backend_flag1 = 'DISALLOW_TO_FAILOVER'" in conf  # put back after the detach
    assert pgpool.running is not None and pgpool.running["backend_flag1"] == "DISALLOW_TO_FAILOVER"
    assert value(m, "pgpoolsync_backend_up", {"node_id": "1"}) == 0
    assert value(m, "pgpoolsync_pgpool_node_up", {"node_id": "1"}) == 0
    assert (
        "NodeDetached",
        "service ns/pg-repl: pgpool node 1 detached: Service has no ready endpoint",
    ) in events
    loop.step()  # nothing more to do
    assert pgpool.commands == [("detach", 1)]
    cluster.replica = ("10.0.0.7",)
    now[0] = 1.0
    loop.step()  # ready, but not for the settle time yet
    assert pgpool.commands == [("detach", 1)]
    now[0] = 4.0
    loop.step()
    assert pgpool.commands == [("detach", 1), ("attach", 1)] and pgpool.status[1] == 1
    assert value(m, "pgpoolsync_pgpool_node_up", {"node_id": "1"}) == 1
    assert (
        value(
            m,
            "pgpoolsync_node_commands_total",
            {"node_id": "1", "command": "attach", "result": "success"},
        )
        == 1
    )


def test_a_switchover_recycles_the_primary_node(tmp_path: Path) -> None:
    cluster, pgpool = Cluster(), FakePgpool()
    loop, _ = make_loop(tmp_path, cluster.snapshot, pgpool)
    loop.step()
    cluster.primary = ("10.0.0.2",)
    cluster.replica = ("10.0.0.1",)
    loop.step()
    # The replica Service moved too, to the old primary: that pod still serves reads, so node
    # 1 keeps its connections (no second round of child restarts).
    assert pgpool.commands == [("detach", 0), ("attach", 0)]
    assert pgpool.running is not None
    assert set(pgpool.running["backend_flag0"].split("|")) == {
        "ALWAYS_PRIMARY",
        "DISALLOW_TO_FAILOVER",
    }
    loop.step()
    assert len(pgpool.commands) == 2  # done once


def test_a_recycle_whose_attach_meets_pgpools_pcp_restart_asks_again_and_completes(
    tmp_path: Path,
) -> None:
    """pgpool restarts its PCP process a second after the detach: the connections it had are
    cut. The attach is asked again on the new process, and the recycle completes in that pass."""
    _switchover_meeting_pcp_cuts(tmp_path, cuts=2)  # the status check, then the attach


def test_an_attach_cut_after_pgpool_did_it_is_not_sent_twice(tmp_path: Path) -> None:
    """The status shows the attach got through before the cut: not asked again (pgpool would
    log the second as an invalid failback request)."""
    _switchover_meeting_pcp_cuts(tmp_path, cuts=1, after_reply=True)


def _switchover_meeting_pcp_cuts(tmp_path: Path, *, cuts: int, after_reply: bool = False) -> None:
    """A switchover whose recycle meets ``cuts`` cut PCP connections after the detach: one
    detach, one attach, node 0 up and the recycle counted a success, in that one pass."""
    cluster, pgpool = Cluster(), FakePgpool()
    loop, m = make_loop(tmp_path, cluster.snapshot, pgpool)
    loop.step()
    pgpool.cuts_after_detach, pgpool.cut_after_reply = cuts, after_reply
    cluster.primary = ("10.0.0.2",)
    cluster.replica = ("10.0.0.1",)
    loop.step()
    assert pgpool.commands == [("detach", 0), ("attach", 0)] and pgpool.status[0] == 1
    labels = {"node_id": "0", "command": "recycle", "result": "success"}
    assert value(m, "pgpoolsync_node_commands_total", labels) == 1


def test_pgpool_gone_in_the_middle_of_a_recycle_is_reported_as_pcp_not_answering(
    tmp_path: Path,
) -> None:
    """After the detach PCP never answers again: the recycle fails with PCP's own error once
    the node verify time is up, not with a "not down" that was never seen."""
    events: list[str] = []
    ticks = itertools.count(0.0, 0.05)  # each look at the clock is 50 ms later
    cluster, pgpool = Cluster(), FakePgpool()
    loop, _ = make_loop(
        tmp_path,
        cluster.snapshot,
        pgpool,
        events=lambda p, r: events.append(str(p)),
        actuator_args={"clock": lambda: next(ticks)},
    )
    loop.step()
    pgpool.cuts_after_detach = 10**6
    cluster.primary = ("10.0.0.2",)
    cluster.replica = ("10.0.0.1",)
    loop.step()
    assert pgpool.commands == [("detach", 0)]
    failed = [e for e in events if "recycle of node 0 failed" in e]
    assert failed and "Connection reset by peer" in failed[0], events
    assert not any("not down" in e for e in events), events


def test_without_the_transient_allow_flag_pgpool_refuses_the_detach(tmp_path: Path) -> None:
    """The fake refuses like pgpool: sending the detach with the flag left at DISALLOW fails,
    which is why the actuator switches the flag for the moment of the command."""
    pgpool = FakePgpool()
    pgpool.running = {"backend_flag1": model.REPLICA_FLAG}
    try:
        pgpool.detach({}, 1)
    except Exception as exc:
        assert "failover is disallowed" in str(exc)
    else:
        raise AssertionError("detach of a DISALLOW_TO_FAILOVER node was accepted")


def test_a_refused_node_command_is_retried_reported_and_unready(tmp_path: Path) -> None:
    events: list[str] = []
    now = [0.0]
    cluster, pgpool = Cluster(), FakePgpool()
    loop, m = make_loop(
        tmp_path,
        cluster.snapshot,
        pgpool,
        events=lambda p, r: events.append(r),
        actuator_args={"clock": lambda: now[0]},
    )
    loop.step()
    cluster.replica = ()
    pgpool.refuse_commands = 1
    due = loop.step()
    assert pgpool.status[1] == 2 and not loop.is_ready() and due <= 1.0
    assert "NodeCommandFailed" in events
    assert (
        value(
            m,
            "pgpoolsync_node_commands_total",
            {"node_id": "1", "command": "detach", "result": "error"},
        )
        == 1
    )
    now[0] = 1.0  # the minimum interval has passed
    loop.step()
    assert pgpool.status[1] == 3 and loop.is_ready()
    assert (tmp_path / "pgpool.conf").read_text().count("ALLOW_TO_FAILOVER'") == 2  # DISALLOW


def test_a_flapping_replica_endpoint_does_not_storm_pgpool(tmp_path: Path) -> None:
    now = [0.0]
    cluster, pgpool = Cluster(), FakePgpool()
    loop, _ = make_loop(tmp_path, cluster.snapshot, pgpool, actuator_args={"clock": lambda: now[0]})
    for second in range(30):  # ready one second, not ready the next, each seen by a pass
        now[0] = float(second)
        cluster.replica = ("10.0.0.2",) if second % 2 else ()
        loop.step()
    assert pgpool.commands == [("detach", 1)]  # never ready for the 3 s an attach needs


def test_never_attach_a_node_whose_service_has_no_ready_endpoint(tmp_path: Path) -> None:
    cluster, pgpool = Cluster(), FakePgpool()
    cluster.replica = ()
    pgpool.status[1] = 3  # e.g. a detach pgpool kept in its pgpool_status file
    loop, _ = make_loop(tmp_path, cluster.snapshot, pgpool)
    for _ in range(3):
        loop.step()
    assert pgpool.commands == []


def test_static_backends_have_no_node_targets(tmp_path: Path) -> None:
    pgpool = FakePgpool()
    pgpool.status[1] = 3
    loop, _ = make_loop(
        tmp_path,
        model.Snapshot,
        pgpool,
        args=["--primary-host", "a", "--replica-host", "b"],
    )
    loop.step()
    assert loop.state is not None and loop.state.nodes == ()
    assert pgpool.commands == []


# -- endpoints are pods ------------------------------------------------------------------------


def test_an_endpoint_is_its_address_port_and_pod_so_two_pods_on_one_address_are_two() -> None:
    svc = service("pg", port=5432)
    slices = [
        endpoint_slice(
            "pg-a",
            "pg",
            [("10.0.0.1", True), ("10.0.0.1", True), ("10.0.0.9", False)],
            pods=[("pg-0", "u0"), ("pg-1", "u1"), ("pg-2", "u2")],
            ports=[("metrics", 9187), ("postgres", 6432)],
        )
    ]
    assert ready_endpoints(slices, svc) == (
        "10.0.0.1 port 6432 pod pg-0 uid u0",
        "10.0.0.1 port 6432 pod pg-1 uid u1",
    )
    assert [topology.address_of(k) for k in ready_endpoints(slices, svc)] == ["10.0.0.1"] * 2
    bare = [endpoint_slice("pg-b", "pg", [("10.0.0.3", True)])]  # no targetRef, no ports
    assert ready_endpoints(bare) == ("10.0.0.3",)


def test_the_primary_endpoint_moving_to_another_pod_on_the_same_address_recycles_node_0() -> None:
    old = topology.endpoint_key("10.0.0.1", port=5432, pod="pg-0", uid="u0")
    new = topology.endpoint_key("10.0.0.1", port=5432, pod="pg-0", uid="u7")  # recreated pod
    memory = {0: NodeMemory(applied=(old,)), 1: NodeMemory(applied=("10.0.0.2",))}
    p = plan_of(targets((new,), ("10.0.0.2",)), {0: 2, 1: 2}, memory)
    assert [(a.node_id, a.action) for a in p.actions] == [(0, RECYCLE)]
    assert "uid u0" in p.actions[0].reason and "uid u7" in p.actions[0].reason
