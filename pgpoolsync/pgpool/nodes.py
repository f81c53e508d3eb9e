"""pgpool's node status brought in step with the Services' ready endpoints (and the replica-lag
gate), each PCP command checked to have taken effect.

core/topology.py plans (detach / attach / recycle, settle time, minimum interval) and core/lag.py
decides the gate; this module runs them: it probes the primary when a probe is due (at most once
a second), reads pgpool's node status, and runs the planned commands. pgpool cancels a detach of
a node flagged DISALLOW_TO_FAILOVER, so a detach is sent with that node's flag at
ALLOW_TO_FAILOVER in the files pgpool has reloaded, and the flag is put back right after,
whatever happened (when that reload fails, the actuator owes one and retries). Knows nothing
about Kubernetes.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Protocol, TypeVar

from pgpoolsync.core import lag, topology
from pgpoolsync.core.model import DesiredState
from pgpoolsync.core.outcomes import NodeOutcome
from pgpoolsync.core.topology import NodeAction
from pgpoolsync.pgpool import pcp

log = logging.getLogger(__name__)
T = TypeVar("T")


class NodePgpool(Protocol):
    """What the node machinery asks of pgpool (actuator.Pgpool has all of it)."""

    def reload(self, params: Mapping[str, str]) -> None: ...

    def running_params(self, params: Mapping[str, str]) -> dict[str, str]: ...

    def node_status(self, params: Mapping[str, str]) -> dict[int, int]: ...

    def detach(self, params: Mapping[str, str], node_id: int) -> None: ...

    def attach(self, params: Mapping[str, str], node_id: int) -> None: ...


class NodeCommandError(Exception):
    pass


class LagProbe(Protocol):
    """Asks the primary (``backend_hostname0``/``backend_port0`` of ``params``) for its WAL
    position and its standbys' replay positions; raises an Exception subclass on failure."""

    def __call__(self, params: Mapping[str, str]) -> lag.Reading: ...


class Nodes:
    def __init__(
        self,
        *,
        pgpool: NodePgpool,
        write: Callable[[DesiredState], object],
        owe_reload: Callable[[], None],
        verify_seconds: float,
        settle_seconds: float,
        node_interval: float,
        node_verify_seconds: float,
        lag_probe: LagProbe | None,
        max_replica_lag: float,
        sleep: Callable[[float], None],
        clock: Callable[[], float],
    ) -> None:
        """The timings and the lag gate's settings are the actuator's (it owns their defaults).
        ``write``: render and write a state's files (a detach writes ALLOW_TO_FAILOVER for
        its node, then the state again); ``owe_reload``: the flag could not be put back."""
        self._pgpool = pgpool
        self._write = write
        self._owe_reload = owe_reload
        self._verify_seconds = verify_seconds
        self._settle = settle_seconds
        self._node_interval = node_interval
        self._node_verify = node_verify_seconds
        self._memory: dict[int, topology.NodeMemory] = {}
        self.node_error: str | None = None
        self._lag_probe = lag_probe
        self.gate = lag.Gate(threshold=max_replica_lag if lag_probe else 0.0, settle=settle_seconds)
        self._sleep = sleep
        self._clock = clock

    def apply(self, state: DesiredState) -> NodeOutcome | None:
        """Plan and run the node commands due now; None when pgpool cannot be asked."""
        params = dict(state.params)
        now = self._clock()
        self._memory = topology.observe(self._memory, state.nodes, now=now)
        hold = self._probe_lag(state, params, now=now)
        try:
            status = self._pgpool.node_status(params)
        except (pcp.PcpError, OSError) as exc:
            log.debug("could not ask pgpool for its node status: %s", exc)
            return None
        plan = topology.plan(
            state.nodes,
            status,
            self._memory,
            now=now,
            settle=self._settle,
            min_interval=self._node_interval,
            hold=hold,
        )
        done: list[NodeAction] = []
        error: str | None = None
        failed: NodeAction | None = None
        if plan.actions:
            for a in plan.actions:
                self._memory[a.node_id] = replace(
                    self._memory.get(a.node_id, topology.NodeMemory()), last_command=now
                )
            try:
                self._run(state, params, plan.actions, done)
            except (pcp.PcpError, OSError, NodeCommandError) as exc:
                error = str(exc)
                failed = next((a for a in plan.actions if a not in done), None)
            try:
                status = self._through_restart(lambda: self._pgpool.node_status(params))
            except (pcp.PcpError, OSError) as exc:
                error = error or f"cannot read node status after the node commands: {exc}"
        held = [*plan.held, *(a.node_id for a in plan.actions if a not in done)]
        self._memory = topology.in_step(self._memory, state.nodes, status, held, hold)
        self.node_error = error
        waits = [w for w in (plan.wait,) if w is not None]
        if error is not None:
            waits.append(self._node_interval)
        if self.gate.on:
            waits.append(self.gate.due_in(now=self._clock()))
        return NodeOutcome(
            done=tuple(done),
            error=error,
            failed=failed,
            status=tuple(sorted(status.items())),
            wait=min(waits) if waits else None,
            gate=self.gate if self.gate.on else None,
            held_out=tuple(sorted(hold)),
        )

    def _probe_lag(
        self, state: DesiredState, params: Mapping[str, str], *, now: float
    ) -> dict[int, str]:
        """Probe the primary if a probe is due and step the gate; the nodes it holds out."""
        replica = next((t for t in state.nodes if not t.primary), None)
        if not self.gate.on or self._lag_probe is None or replica is None:
            return {}
        if self.gate.due_in(now=now) == 0:
            primary = next((t for t in state.nodes if t.primary), None)
            ready = sorted({topology.address_of(k) for k in replica.ready})
            if primary is not None and not primary.up:
                self.gate = lag.failed(self.gate, "primary Service has no ready endpoint", now=now)
            else:
                try:
                    reading = self._lag_probe(params)
                except Exception as exc:
                    self.gate = lag.failed(self.gate, str(exc), now=now)
                else:
                    self.gate = lag.step(self.gate, reading, ready=ready, now=now)
        return {replica.node_id: self.gate.reason} if self.gate.closed else {}

    def _run(
        self,
        state: DesiredState,
        params: Mapping[str, str],
        actions: tuple[NodeAction, ...],
        done: list[NodeAction],
    ) -> None:
        detaching = [a for a in actions if a.action in (topology.DETACH, topology.RECYCLE)]
        for a in actions:
            if a.action == topology.ATTACH:
                self._attach(params, a.node_id)
                done.append(a)
        if not detaching:
            return
        ids = [a.node_id for a in detaching]
        allow = topology.allow_failover(state, ids)
        self._write(allow)
        try:
            # pgpool reads the files; a fake, these
            self._through_restart(lambda: self._pgpool.reload(dict(allow.params)))
            self._wait(
                lambda: topology.failover_allowed(self._pgpool.running_params(params), ids),
                self._verify_seconds,
                f"pgpool did not take ALLOW_TO_FAILOVER for node {ids} on reload",
            )
            for a in detaching:
                self._command(
                    functools.partial(self._pgpool.detach, params, a.node_id),
                    self._status_is(params, a.node_id, down=True),
                )
                self._wait(
                    self._status_is(params, a.node_id, down=True),
                    self._node_verify,
                    f"node {a.node_id} not down {self._node_verify:.0f}s after the detach",
                )
                if a.action == topology.RECYCLE:
                    self._attach(params, a.node_id)
                done.append(a)
        finally:
            self._write(state)  # DISALLOW_TO_FAILOVER again, whatever happened
            try:
                self._through_restart(lambda: self._pgpool.reload(params))
                self._wait(
                    lambda: topology.failover_allowed(
                        self._pgpool.running_params(params), ids, allowed=False
                    ),
                    self._verify_seconds,
                    f"pgpool still runs with ALLOW_TO_FAILOVER for node {ids} after the reload",
                )
            except (pcp.PcpError, OSError, NodeCommandError) as exc:
                log.warning("putting DISALLOW_TO_FAILOVER back: %s; retrying", exc)
                self._owe_reload()

    def _attach(self, params: Mapping[str, str], node_id: int) -> None:
        self._command(
            lambda: self._pgpool.attach(params, node_id),
            self._status_is(params, node_id, down=False),
        )
        self._wait(
            self._status_is(params, node_id, down=False),
            self._node_verify,
            f"node {node_id} still down {self._node_verify:.0f}s after the attach",
        )

    # pgpool restarts its PCP process about a second after each failover or failback (a detach,
    # an attach: src/main/pgpool_main.c), cutting the connection it had then. What follows one is
    # asked again on the new process, for at most the node verify time.

    def _command(self, send: Callable[[], None], took: Callable[[], bool]) -> None:
        """A detach or attach, sent again after a cut connection unless ``took`` shows it got
        through before the cut (a second one would be a second failover or failback)."""
        deadline = self._clock() + self._node_verify
        while True:
            try:
                send()
                return
            except pcp.PcpConnectionError:
                if self._clock() >= deadline:
                    raise
                self._sleep(0.2)
                try:
                    if took():
                        return
                except pcp.PcpConnectionError:
                    pass

    def _through_restart(self, call: Callable[[], T]) -> T:
        deadline = self._clock() + self._node_verify
        while True:
            try:
                return call()
            except pcp.PcpConnectionError:
                if self._clock() >= deadline:
                    raise
                self._sleep(0.2)

    def _status_is(
        self, params: Mapping[str, str], node_id: int, *, down: bool
    ) -> Callable[[], bool]:
        def check() -> bool:
            status = self._pgpool.node_status(params).get(node_id, topology.DOWN)
            return (status == topology.DOWN) == down

        return check

    def _wait(self, check: Callable[[], bool], seconds: float, what: str) -> None:
        """Until ``check()``; at the deadline, PCP's connection error if it was not answering
        (that, not the state waited for, is what went wrong), else ``what``."""
        deadline = self._clock() + seconds
        while True:
            unanswered: pcp.PcpConnectionError | None = None
            try:
                if check():
                    return
            except pcp.PcpConnectionError as exc:
                unanswered = exc
            if self._clock() >= deadline:
                if unanswered is not None:
                    raise unanswered
                raise NodeCommandError(what)
            self._sleep(0.05)
