"""The level-triggered loop: take a snapshot → build the desired state → actuate → report.

Sources only update their caches and call ``ChangeSignal.notify``; the loop wakes on it (or on
the resync timer, or when a retry is due), takes a whole snapshot, builds the desired state,
lets the actuator bring pgpool to it and verify, and hands the outcome to the reporter. Bursts
of changes collapse into one pass by construction. A state that cannot be built, or files that
cannot be written, leave the last good files in place; a reload that failed or did not take is
retried with backoff. Knows nothing about Kubernetes types.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable
from pathlib import Path

from pgpoolsync.core import model
from pgpoolsync.pgpool import writer
from pgpoolsync.pgpool.actuator import Actuator
from pgpoolsync.report.reporter import Reporter
from pgpoolsync.sources import ChangeSignal


class Loop:
    def __init__(
        self,
        *,
        snapshot: Callable[[], model.Snapshot | None],
        build: Callable[[model.Snapshot], model.Outcome],
        actuator: Actuator,
        reporter: Reporter,
        signal: ChangeSignal,
        where: str,
        resync_seconds: float,
        backoff_max: float = 30.0,
        recheck_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._snapshot = snapshot
        self._build = build
        self.actuator = actuator
        self.reporter = reporter
        self.signal = signal
        self._where = where
        self.resync_seconds = resync_seconds
        self._backoff_max = backoff_max
        self._recheck = recheck_seconds
        self._clock = clock
        self.ready = threading.Event()
        self.state: model.DesiredState | None = None
        self._seen_at: float | None = None
        self._backoff = 0.0
        self._frozen = False

    def is_ready(self) -> bool:
        """The files are on disk, and pgpool did not refuse the node state last asked of it."""
        return self.ready.is_set() and self.actuator.node_error is None

    @property
    def pending_reload(self) -> bool:
        return self.actuator.reload_owed

    @property
    def restart_needed(self) -> tuple[str, ...]:
        return self.actuator.restart_needed

    def step(self) -> float:
        """One pass; returns the seconds until the next one is due (unless a change comes)."""
        seen = self.signal.take()
        if seen is not None and self._seen_at is None:
            self._seen_at = seen
        snap = self._snapshot()
        if snap is None:  # the source cannot see everything (it said why): keep the files
            self.ready.clear()
            return self._recheck
        outcome = self._build(snap)
        self.reporter.problems(outcome.problems)
        state = outcome.state
        if state is None:
            self.reporter.no_state()
            return self.resync_seconds
        errors = outcome.errors
        blocked = None
        if errors:  # no restart of pgpool for a state that skipped an input
            blocked = str(errors[0]) + (f" (and {len(errors) - 1} more)" if errors[1:] else "")
        try:
            applied = self.actuator.apply(state, blocked=blocked)
        except OSError as exc:
            self.reporter.write_failed(self._where, writer.write_error(exc, Path(self._where)))
            return self.resync_seconds
        if applied.owes_retry:
            self._backoff = min(self._backoff_max, max(0.2, self._backoff * 2))
        else:
            self._backoff = 0.0
        self.reporter.applied(
            self.state, state, applied, seen_at=self._seen_at, retry_in=self._backoff
        )
        if applied.reloaded:
            self._seen_at = None
        self.state = state
        self.ready.set()
        if not self._frozen:
            # The caches (watched objects, converted credentials, AES entries) are long-lived:
            # keep the cyclic GC from rescanning the first apply's objects on every pass. Once:
            # garbage alive at a later freeze would never be collected.
            gc.collect()
            gc.freeze()
            self._frozen = True
        if applied.owes_retry:
            return self._backoff
        due = self.resync_seconds
        if self.actuator.restart_needed or (not applied.verified and applied.reloaded):
            due = min(self._recheck, due)
        if state.nodes and applied.nodes is None:  # pgpool did not say what its nodes are
            due = min(self._recheck, due)
        if applied.nodes is not None and applied.nodes.wait is not None:
            due = min(applied.nodes.wait, due)
        if applied.restarted is not None and applied.restarted.wait is not None:
            due = min(max(applied.restarted.wait, self._recheck), due)
        return due

    def run(self, stop: threading.Event) -> None:
        """First apply at once, then on every change, resync tick, or retry."""
        while not stop.is_set():
            timeout = self.step()
            deadline = self._clock() + timeout
            while not stop.is_set() and self._clock() < deadline:
                if self.signal.wait(min(0.5, max(0.0, deadline - self._clock()))):
                    break
