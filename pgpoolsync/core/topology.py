"""Which pgpool backend nodes should be in rotation, and what to do to get there. Pure.

The operator owns failover; pgpool's own failover stays off (every node is flagged
DISALLOW_TO_FAILOVER, health checks and failover on error are off). The Services' ready
endpoints say what pgpool should use: a node whose Service has no ready endpoint goes out of
rotation (PCP detach), back in when it has one again (attach), and a node whose Service's ready
endpoint moved to another pod (a switchover: the primary Service now leads to the new
primary; a replica pod gone) is detached and attached again so that pgpool's children drop the
connections they cached to the old target. An endpoint is its pod (targetRef uid, else name),
its address and the port it serves the Service's port on (``endpoint_key``): a new pod on a
reused address (a pod recreated on the same IP, host-network pods, Services whose endpoints
share an address) is a new endpoint.

pgpool cancels a detach for a node flagged DISALLOW_TO_FAILOVER, whoever sends it, and
``backend_flag`` is reloadable: a detach is done with that node's flag switched to
ALLOW_TO_FAILOVER for the moment of the command (``allow_failover``), then switched back.

``plan`` turns targets, pgpool's node status and what was last applied into actions, holding
back an attach until the endpoint has been ready for ``settle`` seconds (and a replica's
recycle until its move has lasted that long: the two Services' EndpointSlices of one switchover
arrive one after the other), and any command on a node until ``min_interval`` has passed since
the last one (a flapping endpoint never causes a storm of PCP commands). The primary's recycle
and every detach are never held back beyond that.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from pgpoolsync.core.model import DesiredState, NodeTarget, Origin

DOWN = 3  # pgpool's node status: 0 initialising, 1 up (no connection yet), 2 up, 3 down
DETACH = "detach"
ATTACH = "attach"
RECYCLE = "recycle"  # detach, then attach: drop what pgpool cached to the old target


def endpoint_key(address: str, *, port: int | None = None, pod: str = "", uid: str = "") -> str:
    """An endpoint's identity, readable in a log line: ``10.1.0.7 port 5432 pod pg-1 uid 6f…``
    (the parts that are known). The address comes first and has no space (``address_of``)."""
    parts = [address]
    if port is not None:
        parts.append(f"port {port}")
    if pod:
        parts.append(f"pod {pod}")
    if uid:
        parts.append(f"uid {uid}")
    return " ".join(parts)


def address_of(key: str) -> str:
    """The address of an ``endpoint_key``."""
    return key.split(" ", 1)[0]


@dataclass(frozen=True)
class NodeMemory:
    """What the actuator knows of a node from earlier passes."""

    applied: tuple[str, ...] | None = None  # ready endpoints pgpool was last in step with
    ready_since: float | None = None  # when the Service was first seen ready, this spell
    moved_since: float | None = None  # when an applied endpoint was first seen gone, this spell
    last_command: float | None = None


@dataclass(frozen=True)
class NodeAction:
    node_id: int
    action: str  # DETACH | ATTACH | RECYCLE
    reason: str
    source: Origin


@dataclass(frozen=True)
class Plan:
    actions: tuple[NodeAction, ...] = ()
    wait: float | None = None  # seconds until a held-back action is due
    held: tuple[int, ...] = ()  # nodes with an action held back


def observe(
    memory: Mapping[int, NodeMemory], targets: Sequence[NodeTarget], *, now: float
) -> dict[int, NodeMemory]:
    """Memory updated with this pass's view of the Services: when each became ready, and when
    an endpoint pgpool may hold connections to was first seen gone."""
    out = dict(memory)
    alive = {a for t in targets for a in t.ready}
    for t in targets:
        m = out.get(t.node_id, NodeMemory())
        if t.up != (m.ready_since is not None):
            m = replace(m, ready_since=now if t.up else None)
        moved = bool(_gone(t, m.applied, alive))
        if moved != (m.moved_since is not None):
            m = replace(m, moved_since=now if moved else None)
        out[t.node_id] = m
    return out


def _gone(target: NodeTarget, applied: tuple[str, ...] | None, alive: set[str]) -> list[str]:
    """Endpoints pgpool may hold connections to through this node that are no longer valid:
    for the primary's node, any endpoint that left its Service (those pods take no writes now);
    for another node, one that is ready in no Service at all (a pod that went away — a pod that
    moved to the primary Service in a switchover still serves reads). New endpoints alone
    invalidate nothing: a replica added behind the Service changes no cached connection."""
    if not applied:
        return []
    left = set(applied) - set(target.ready)
    return sorted(left if target.primary else left - alive)


def plan(
    targets: Sequence[NodeTarget],
    status: Mapping[int, int],
    memory: Mapping[int, NodeMemory],
    *,
    now: float,
    settle: float,
    min_interval: float,
    hold: Mapping[int, str] | None = None,
) -> Plan:
    """The node commands due now. ``status``: pgpool's node status by node id (a node pgpool
    does not have is left alone). ``hold``: nodes to keep out of rotation although their
    Service is ready, with the reason (the replica-lag gate, core/lag.py)."""
    hold = hold or {}
    actions: list[NodeAction] = []
    waits: list[float] = []
    held: list[int] = []
    alive = {a for t in targets for a in t.ready}
    for t in targets:
        if t.node_id not in status:
            continue
        m = memory.get(t.node_id, NodeMemory())
        down = status[t.node_id] == DOWN
        action: NodeAction | None = None
        due = now
        if not t.up or t.node_id in hold:
            if not down:
                why = hold.get(t.node_id) or "Service has no ready endpoint"
                action = NodeAction(t.node_id, DETACH, why, t.source)
        elif down:
            action = NodeAction(
                t.node_id, ATTACH, f"Service has a ready endpoint ({', '.join(t.ready)})", t.source
            )
            due = (m.ready_since if m.ready_since is not None else now) + settle
        elif gone := _gone(t, m.applied, alive):
            action = NodeAction(
                t.node_id,
                RECYCLE,
                f"Service's ready endpoint moved from {', '.join(gone)} to {', '.join(t.ready)}",
                t.source,
            )
            if not t.primary:
                # Not urgent (the Service has a ready endpoint) and often half of a switchover
                # whose other half (the old pod now ready in the primary Service, alive)
                # is still on its way: wait for it to settle.
                due = (m.moved_since if m.moved_since is not None else now) + settle
        if action is None:
            continue
        if m.last_command is not None:
            due = max(due, m.last_command + min_interval)
        if due <= now:
            actions.append(action)
        else:
            waits.append(due - now)
            held.append(t.node_id)
    return Plan(tuple(actions), min(waits) if waits else None, tuple(held))


def in_step(
    memory: Mapping[int, NodeMemory],
    targets: Sequence[NodeTarget],
    status: Mapping[int, int],
    held: Sequence[int],
    hold: Mapping[int, str] | None = None,
) -> dict[int, NodeMemory]:
    """Record the ready endpoints of every node pgpool is in step with (not held back)."""
    out = dict(memory)
    for t in targets:
        if t.node_id in held or t.node_id not in status:
            continue
        wanted = t.up and t.node_id not in (hold or {})
        if (status[t.node_id] == DOWN) != wanted:  # down when it should be, up when it should be
            out[t.node_id] = replace(out.get(t.node_id, NodeMemory()), applied=t.ready)
    return out


def allow_failover(state: DesiredState, node_ids: Sequence[int]) -> DesiredState:
    """The state with ``backend_flagN`` of these nodes saying ALLOW_TO_FAILOVER (pgpool then
    accepts a detach for them); every other value unchanged."""
    names = {f"backend_flag{i}" for i in node_ids}
    params = []
    for name, value in state.params:
        if name in names:
            flags = [f for f in value.split("|") if f and f != "DISALLOW_TO_FAILOVER"]
            params.append((name, "|".join([*flags, "ALLOW_TO_FAILOVER"])))
        else:
            params.append((name, value))
    return replace(state, params=tuple(params))


def failover_allowed(
    running: Mapping[str, str], node_ids: Sequence[int], *, allowed: bool = True
) -> bool:
    """pgpool (its PCP pool status) runs with ALLOW_TO_FAILOVER (or, ``allowed=False``, with
    DISALLOW_TO_FAILOVER) for every one of these nodes."""
    want = "ALLOW_TO_FAILOVER" if allowed else "DISALLOW_TO_FAILOVER"
    return all(want in running.get(f"backend_flag{i}", "").split("|") for i in node_ids)
