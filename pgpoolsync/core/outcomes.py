"""What the actuator and its restart policies hand the loop and the reporter: one pass's
outcome as plain values (``Applied``, with its ``NodeOutcome`` and ``RestartOutcome``).

Here, not beside the actuator, so that the reporter and the rollout policy read outcomes without
importing the side that talks to pgpool.
"""

from __future__ import annotations

from dataclasses import dataclass

from pgpoolsync.core import lag
from pgpoolsync.core.topology import NodeAction


@dataclass(frozen=True)
class RestartOutcome:
    """What the restart policy did about a restart pgpool needs."""

    restarted: bool = False  # pgpool was restarted in this pass (signal)
    decision: str | None = None  # rollout: one of core.rollout's PATCH, PENDING, DONE, HOLD, ...
    restart_hash: str | None = None
    deployment: str | None = None
    why: str = ""
    requested_at: float | None = None  # wall clock: the Deployment's last rollout request
    wait: float | None = None  # seconds until the policy may act again
    error: str | None = None


@dataclass(frozen=True)
class Applied:
    """What one pass did to pgpool and what pgpool then reported."""

    changed: tuple[str, ...] = ()  # files written
    reloaded: bool = False  # a reload was sent and accepted in this pass
    reload_error: str | None = None
    verified: bool = False  # pgpool was asked what it runs with, in this pass
    restart: tuple[str, ...] = ()  # what pgpool runs differently until it restarts
    unapplied: tuple[str, ...] = ()  # reloadable values pgpool is not running with
    restarted: RestartOutcome | None = None  # what the restart policy did in this pass
    nodes: NodeOutcome | None = None  # None: no node targets, or pgpool not reachable

    @property
    def owes_reload(self) -> bool:
        return self.reload_error is not None or bool(self.unapplied)

    @property
    def owes_retry(self) -> bool:
        return self.owes_reload or (self.nodes is not None and self.nodes.error is not None)


@dataclass(frozen=True)
class NodeOutcome:
    """What one pass did to pgpool's node status."""

    done: tuple[NodeAction, ...] = ()  # commands that took effect
    error: str | None = None  # a command pgpool refused or that did not take effect
    failed: NodeAction | None = None
    status: tuple[tuple[int, int], ...] = ()  # pgpool's node status after the pass
    wait: float | None = None  # seconds until a held-back command (or a lag probe) is due
    gate: lag.Gate | None = None  # the replica-lag gate after this pass (None: off)
    held_out: tuple[int, ...] = ()  # nodes the gate holds out of rotation
