"""Turning the loop's outcomes into log lines, metrics and Kubernetes Events.

Log lines and metrics are cheap and written at once; Events are HTTP calls to the API server
(seconds when it is slow), so they are queued and posted by a thread of their own: reporting
never sits between writing a file and reloading pgpool. One informative line per applied
change; a problem or a restart-required is reported once, not on every pass.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence

from pgpoolsync.core import lag, rollout, topology
from pgpoolsync.core.changes import describe_change
from pgpoolsync.core.model import DesiredState, Origin, Problem
from pgpoolsync.core.outcomes import Applied, NodeOutcome, RestartOutcome
from pgpoolsync.report.metrics import Metrics

log = logging.getLogger(__name__)

EventSink = Callable[[Problem, str], None]  # (problem, reason) → an Event; may block


class AsyncEvents:
    """Posts Events from its own thread; callers only enqueue (dropped, with a log line, when
    the queue is full: the API server is down and the same Events would pile up)."""

    def __init__(self, post: EventSink, *, maxsize: int = 256) -> None:
        self._post = post
        self._queue: queue.Queue[tuple[Problem, str] | None] = queue.Queue(maxsize)
        self._thread = threading.Thread(target=self._run, name="events", daemon=True)
        self._thread.start()

    def __call__(self, problem: Problem, reason: str) -> None:
        try:
            self._queue.put_nowait((problem, reason))
        except queue.Full:
            log.warning("Event queue full: not posting %s for %s", reason, problem.source)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            try:
                self._post(*item)
            except Exception:  # a reporting failure must never end reporting
                log.exception("posting an Event failed")

    def close(self, timeout: float = 5.0) -> None:
        """Post what is queued (for up to ``timeout``), then stop."""
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)


_PGPOOL = Origin("pgpool")
_DONE = {
    topology.DETACH: "detached",
    topology.ATTACH: "attached",
    topology.RECYCLE: "recycled (detached and attached)",
}
_REASONS = {
    topology.DETACH: "NodeDetached",
    topology.ATTACH: "NodeAttached",
    topology.RECYCLE: "NodeRecycled",
}
_PGPOOL_CONF = Origin("file", "pgpool.conf")


class Reporter:
    def __init__(
        self,
        *,
        metrics: Metrics,
        events: EventSink | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.metrics = metrics
        self._events = events or (lambda problem, reason: None)
        self._clock = clock
        self._wall = wall
        self._reported: set[Problem] = set()
        self._restart: tuple[str, ...] = ()
        self._unapplied: tuple[str, ...] = ()
        self._node_error: str | None = None
        self._gate_probe: float | None = None
        self._gate_error: str | None = None
        self._gate_closed = False
        self._unmeasured: tuple[str, ...] = ()
        self._rollout: tuple[str | None, str | None, str | None] = (None, None, None)

    def event(self, problem: Problem, reason: str) -> None:
        self._events(problem, reason)

    def problems(self, problems: Sequence[Problem]) -> None:
        """Log and post each problem once, while it lasts."""
        for problem in problems:
            if problem in self._reported:
                continue
            if problem.fatal:
                log.error("invalid input: %s", problem)
            else:
                log.warning("%s", problem)
            self._events(problem, "InvalidInput")
        self._reported = set(problems)
        self.metrics.invalid.set(len(problems))

    def write_failed(self, where: str, said: str) -> None:
        """``said``: what the failed write says (pgpool.writer.write_error); the log line and
        the Event say the same."""
        log.error("%s; keeping the last good files", said)
        self.metrics.applies.labels("error").inc()
        self._events(Problem(Origin("file", where), said), "ApplyFailed")

    def no_state(self) -> None:
        self.metrics.applies.labels("error").inc()

    def applied(
        self,
        old: DesiredState | None,
        new: DesiredState,
        applied: Applied,
        *,
        seen_at: float | None,
        retry_in: float,
    ) -> None:
        m = self.metrics
        if applied.changed:
            log.info("applied %s: %s", ", ".join(applied.changed), describe_change(old, new))
            m.applies.labels("success").inc()
        else:
            m.applies.labels("unchanged").inc()
        m.users.set(len(new.credentials))
        if new.tls is not None:
            m.tls_expiry.set(new.tls.not_after)
        if applied.reload_error is not None:
            m.reloads.labels("error").inc()
            log.warning(
                "reloading pgpool failed (%s); retrying in %.1fs", applied.reload_error, retry_in
            )
            if retry_in >= 30:
                self._events(
                    Problem(_PGPOOL, f"reload failing: {applied.reload_error}"), "ReloadFailed"
                )
        if applied.reloaded:
            m.reloads.labels("success").inc()
            if seen_at is not None:
                m.change_to_reload.observe(max(0.0, self._clock() - seen_at))
            log.info("reloaded pgpool")
        if applied.verified:
            self._drift(applied)
            self._restart_policy(applied.restarted if applied.restart else None)
        if not applied.owes_reload:
            m.last_success.set(self._wall())
        held = applied.nodes.held_out if applied.nodes is not None else ()
        for node in new.nodes:
            m.backend_up.labels(str(node.node_id)).set(
                1 if node.up and node.node_id not in held else 0
            )
        if applied.nodes is not None:
            self._gate(applied.nodes.gate, new)
            self._nodes(applied.nodes, retry_in=retry_in)

    def _gate(self, gate: lag.Gate | None, state: DesiredState) -> None:
        """The replica-lag gate: its metrics on every probe; a line and an Event when it closes
        or opens, and once per distinct probe error."""
        if gate is None or gate.last_probe is None or gate.last_probe == self._gate_probe:
            return
        self._gate_probe = gate.last_probe
        m = self.metrics
        m.lag_probes.labels("error" if gate.failed else "success").inc()
        replica = next((n for n in state.nodes if not n.primary), None)
        where = replica.source if replica is not None else _PGPOOL
        if gate.failed:
            m.replica_lag.clear()  # no measurement: no figure (the last one would go stale)
            if gate.error != self._gate_error:
                log.warning("replica-lag probe failed: %s; node 1 left as it is", gate.error)
                self._events(
                    Problem(where, f"replica-lag probe failed: {gate.error}"), "LagProbeFailed"
                )
            self._gate_error = gate.error
            return
        self._gate_error = None
        if gate.unmeasured and gate.unmeasured != self._unmeasured:
            log.warning(
                "replica-lag probe: %s ready behind the replica Service but not streaming from "
                "the primary by that address; node 1 stays in rotation",
                ", ".join(gate.unmeasured),
            )
        self._unmeasured = gate.unmeasured
        m.replica_lag.clear()
        for address, seconds in gate.lags:
            m.replica_lag.labels(address).set(seconds)
        m.lag_gate_closed.set(1 if gate.closed else 0)
        if gate.closed == self._gate_closed:
            return
        self._gate_closed = gate.closed
        if gate.closed:
            log.warning(
                "replica-lag gate closed: %s; node 1 out of rotation, reads go to the primary",
                gate.reason,
            )
            self._events(
                Problem(where, f"replica-lag gate closed: {gate.reason}"), "ReplicaLagGateClosed"
            )
        else:
            lags = ", ".join(f"{a} {s:.1f}s" for a, s in gate.lags) or "no ready replica"
            why = f"lag under {gate.threshold:g}s for {gate.settle:g}s ({lags})"
            log.info("replica-lag gate opened: %s; node 1 back in rotation", why)
            self._events(Problem(where, f"replica-lag gate opened: {why}"), "ReplicaLagGateOpened")

    def _nodes(self, outcome: NodeOutcome, *, retry_in: float) -> None:
        m = self.metrics
        for node_id, status in outcome.status:
            m.pgpool_node_up.labels(str(node_id)).set(0 if status == topology.DOWN else 1)
        for action in outcome.done:
            m.node_commands.labels(str(action.node_id), action.action, "success").inc()
            log.info(
                "%s node %d: %s (%s)",
                _DONE[action.action],
                action.node_id,
                action.reason,
                action.source,
            )
            self._events(
                Problem(
                    action.source,
                    f"pgpool node {action.node_id} {_DONE[action.action]}: {action.reason}",
                ),
                _REASONS[action.action],
            )
        if outcome.error is not None:
            failed = outcome.failed
            if failed is not None:
                m.node_commands.labels(str(failed.node_id), failed.action, "error").inc()
            what = f"{failed.action} of node {failed.node_id}" if failed else "node command"
            log.warning("%s failed: %s; retrying in %.1fs", what, outcome.error, retry_in)
            if outcome.error != self._node_error:
                self._events(
                    Problem(
                        failed.source if failed else _PGPOOL, f"{what} failed: {outcome.error}"
                    ),
                    "NodeCommandFailed",
                )
        self._node_error = outcome.error

    def _restart_policy(self, outcome: RestartOutcome | None) -> None:
        """One line (and Event) per distinct thing the restart policy did or found."""
        m = self.metrics
        if outcome is None:
            m.rollout_pending.set(0)
            self._rollout = (None, None, None)
            return
        if outcome.requested_at is not None:
            m.rollout_requested.set(outcome.requested_at)
        m.rollout_pending.set(1 if outcome.decision in (rollout.PATCH, rollout.PENDING) else 0)
        key = (outcome.decision, outcome.restart_hash, outcome.error)
        if key == self._rollout and outcome.decision != rollout.PATCH:
            return
        self._rollout = key
        where = Origin("deployment", outcome.deployment) if outcome.deployment else _PGPOOL
        target = f"deployment {outcome.deployment}" if outcome.deployment else "the Deployment"
        if outcome.error is not None:
            log.warning("restart policy: %s; retrying", outcome.error)
            self._events(Problem(_PGPOOL, f"restart policy: {outcome.error}"), "RolloutFailed")
        elif outcome.decision == rollout.PATCH:
            m.rollouts_requested.inc()
            log.info(
                "requested a rollout of %s for restart hash %s (%s)",
                target,
                outcome.restart_hash,
                outcome.why,
            )
            self._events(
                Problem(where, f"rolling restart requested: restart hash {outcome.restart_hash}"),
                "RolloutRequested",
            )
        elif outcome.decision == rollout.DONE:
            log.warning("restart policy: %s", outcome.why)
            self._events(Problem(_PGPOOL, outcome.why), "RestartDidNotApply")
        elif outcome.decision is not None or outcome.why:
            log.info("restart policy: %s", outcome.why)

    def _drift(self, applied: Applied) -> None:
        if applied.restart and applied.restart != self._restart:
            names = ", ".join(applied.restart)
            log.warning("pgpool must restart to apply: %s (written, not yet in effect)", names)
            self._events(
                Problem(_PGPOOL_CONF, f"restart required to apply: {names}"), "RestartRequired"
            )
        elif self._restart and not applied.restart:
            log.info("pgpool runs with every restart-only value now")
        self._restart = applied.restart
        if applied.unapplied and applied.unapplied != self._unapplied:
            names = ", ".join(applied.unapplied)
            log.warning(
                "pgpool reloaded but does not run with: %s (refused value? see pgpool's log); "
                "retrying",
                names,
            )
            self._events(
                Problem(_PGPOOL_CONF, f"reload did not apply: {names}"), "ReloadNotApplied"
            )
        self._unapplied = applied.unapplied
        self.metrics.restart_required.set(1 if applied.restart else 0)
        self.metrics.unapplied.set(len(applied.unapplied))
