"""``--restart-policy signal``: a restart pgpool needs becomes a SIGINT to its pid.

A ``Restarter`` (pgpool/actuator.py) for a pod whose container restarts pgpool when it exits.
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

from pgpoolsync.core.model import DesiredState
from pgpoolsync.core.outcomes import RestartOutcome

log = logging.getLogger(__name__)


class SignalRestart:
    """SIGINT (fast shutdown: sessions drop) the pid in the pid file, by default pgpool.conf's
    ``pid_file_name``; the container restarts pgpool. Once per distinct target: never in a loop
    when a restart does not bring pgpool to the values."""

    def __init__(self, *, pid_file: str | None) -> None:
        self._pid_file = pid_file
        self._restarted_for: tuple[tuple[str, str], ...] | None = None

    def __call__(
        self, state: DesiredState, names: tuple[str, ...], *, blocked: str | None
    ) -> RestartOutcome:
        params = dict(state.params)
        target = tuple(sorted((n, params.get(n, "")) for n in names))
        if target == self._restarted_for:
            return RestartOutcome(why="already restarted for these values")
        if blocked is not None:
            return RestartOutcome(why=f"not while the desired state has problems: {blocked}")
        path = self._pid_file or params.get("pid_file_name") or ""
        try:
            # pgpool ends the pid with a NUL byte, which str.split() keeps.
            pid = int(Path(path).read_text().replace("\0", " ").split()[0])
            os.kill(pid, signal.SIGINT)
        except (OSError, ValueError, IndexError) as exc:
            log.error("restart policy: cannot signal pgpool via %s: %s", path, exc)
            return RestartOutcome(error=f"cannot signal pgpool via {path}: {exc}")
        self._restarted_for = target
        return RestartOutcome(restarted=True)
