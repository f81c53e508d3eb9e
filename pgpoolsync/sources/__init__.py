"""Sources: where the desired state's inputs come from.

Each source owns its watching, caching, conversion of raw objects into model values, the health
of its watches, and where Events about its objects go. The loop sees only the ``Source``
protocol: ``start(notify)``, ``snapshot()``, ``healthy()``, ``post_event()``, ``stop()``.
A source never renders or writes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from pgpoolsync.core.model import Problem, Snapshot


class SourceUnavailable(Exception):
    """The source cannot start (its API is not served, or never answered): one line for the
    user, exit 2."""


class Source(Protocol):
    def start(self, notify: Callable[[], None]) -> None:
        """Begin watching; call ``notify`` on every change (from any thread). Returns once the
        first snapshot can be taken."""

    def snapshot(self) -> Snapshot | None:
        """Everything the source holds now, as model values; None when the source cannot see
        all of it (a refused watch): the last good files stay."""

    def healthy(self) -> tuple[bool, str]:
        """False (and why) when the source can no longer see changes."""

    def post_event(self, problem: Problem, reason: str) -> None:
        """Tell the cluster about a problem (a Kubernetes Event); may block: the loop calls it
        from the reporter's thread only."""

    def stop(self) -> None: ...


class _Labelled(Protocol):
    def labels(self, *values: str) -> Any: ...


class WatchMetrics(Protocol):
    """The metrics a watching source keeps (report.metrics.Metrics has them): seconds since
    each watch made progress, and its restarts by kind and reason."""

    @property
    def watch_staleness(self) -> _Labelled: ...

    @property
    def watch_restarts(self) -> _Labelled: ...


class ChangeSignal:
    """Set by sources; remembers when the earliest change not yet applied was seen."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._event = threading.Event()
        self._first: float | None = None

    def notify(self) -> None:
        with self._lock:
            if self._first is None:
                self._first = self._clock()
            self._event.set()

    def take(self) -> float | None:
        with self._lock:
            first, self._first = self._first, None
            self._event.clear()
            return first

    def wait(self, timeout: float) -> bool:
        return self._event.wait(timeout)
