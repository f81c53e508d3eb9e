"""The replica-lag gate: when node 1 (the replica Service) is held out of rotation. Pure.

pgpool sees one backend for every replica pod behind the replica Service, and its own
streaming-replication check stays off (the operator owns failover), so its ``delay_threshold``
is blind. With ``--max-replica-lag`` a probe (pgpool/lagprobe.py) asks the primary, at most once
per ``PROBE_INTERVAL``, for its current WAL position and each standby's replay position
(``pg_stat_replication``); this module turns the answers into a lag per replica address and a
decision, and core/topology.py's ``plan`` detaches node 1 while the gate is closed (reads then
go to the primary) and attaches it when it opens. The primary never leaves.

Lag is the age of the oldest WAL a standby has not replayed: the time of the first probe at
which the primary's position was past the standby's replay position. A standby that replayed
everything the primary had at the last probe is 0 s behind, however long ago the last write was:
an idle primary is never mistaken for lag (``pg_stat_replication.replay_lag`` keeps its last
value for a while after writes stop). The figure is at most one probe interval low.

The gate closes when every ready replica address is measured and over the threshold (all or
nothing: one node stands for all replica pods), and opens once that has not been so for
``settle`` seconds. A ready replica the primary listed once and no longer lists (its stream
broke; its pod is still Ready) keeps the replay position it was last seen at: it cannot have
replayed WAL it never received, so its lag goes on growing while the primary writes, and a
broken stream never reopens the gate. A failed probe is reported and changes nothing: node 1
is never taken out because the probe failed, and a closed gate stays closed until a probe shows
the lag gone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

PROBE_INTERVAL = 1.0  # seconds between probes, at most one per interval
RETRY_INTERVAL = 5.0  # after a failed probe (a primary that does not answer costs a timeout)
MAX_HISTORY = 3600  # primary positions kept: an hour of a primary written to every second


@dataclass(frozen=True)
class Reading:
    """One probe's answer from the primary."""

    lsn: int  # the primary's current WAL position (bytes)
    replay: tuple[tuple[str, int], ...] = ()  # (standby's client address, replay position)


@dataclass(frozen=True)
class Gate:
    threshold: float  # seconds; 0: the gate is off
    settle: float = 3.0
    closed: bool = False
    since: float | None = None  # when the other state's condition began (close or open)
    last_probe: float | None = None
    failed: bool = False  # the last probe failed
    error: str | None = None  # why, when it failed
    lags: tuple[tuple[str, float], ...] = ()  # seconds behind, per measured ready address
    # The replay position each ready address was last listed with (the lowest of its standbys).
    replayed: tuple[tuple[str, int], ...] = ()
    unmeasured: tuple[str, ...] = ()  # ready addresses with no standby row on the primary
    reason: str = ""  # why the gate is closed (or last closed)
    # (time, position) of the primary at the probes, oldest first; a position kept only while
    # some standby may still be behind it.
    history: tuple[tuple[float, int], ...] = ()

    @property
    def on(self) -> bool:
        return self.threshold > 0

    def due_in(self, *, now: float) -> float:
        """Seconds until the next probe may run (0: now)."""
        if self.last_probe is None:
            return 0.0
        interval = RETRY_INTERVAL if self.failed else PROBE_INTERVAL
        return max(0.0, self.last_probe + interval - now)


def lag_of(history: Sequence[tuple[float, int]], replay: int, *, now: float) -> float:
    """Seconds since the primary first had WAL past ``replay`` (0 when it never had, as far as
    the history goes)."""
    for at, lsn in history:
        if lsn > replay:
            return max(0.0, now - at)
    return 0.0


def failed(gate: Gate, error: str, *, now: float) -> Gate:
    """A probe that failed: reported, nothing else changes."""
    return replace(gate, last_probe=now, failed=True, error=error)


def step(gate: Gate, reading: Reading, *, ready: Sequence[str], now: float) -> Gate:
    """The gate after a probe answered. ``ready``: the replica Service's ready endpoint
    addresses (several pods may share one: the worst lag of that address counts)."""
    history = gate.history
    if not history or history[-1][1] != reading.lsn:
        history = (*history, (now, reading.lsn))
    wanted = sorted(set(ready))
    listed: dict[str, int] = {}
    for address, replay in reading.replay:
        listed[address] = min(replay, listed.get(address, replay))
    # A ready address no longer listed keeps the position it was last listed with.
    replayed = {**{a: r for a, r in gate.replayed if a in wanted}, **listed}
    lags = tuple((a, lag_of(history, replayed[a], now=now)) for a in wanted if a in replayed)
    unmeasured = tuple(a for a in wanted if a not in replayed)
    # Keep the positions some standby has not replayed yet (and the last one).
    oldest = min(replayed.values(), default=reading.lsn)
    keep = [h for h in history[:-1] if h[1] > oldest][-(MAX_HISTORY - 1) :]
    history = (*keep, history[-1])
    lagging = bool(lags) and not unmeasured and all(lag > gate.threshold for _, lag in lags)
    out = replace(
        gate,
        last_probe=now,
        failed=False,
        error=None,
        lags=lags,
        replayed=tuple(sorted((a, r) for a, r in replayed.items() if a in wanted)),
        unmeasured=unmeasured,
        history=history,
    )
    if not out.on:
        return replace(out, closed=False, since=None)
    if not gate.closed:
        if lagging:
            worst = ", ".join(f"{a} {lag:.1f}s" for a, lag in lags)
            why = f"every ready replica lags more than {gate.threshold:g}s ({worst})"
            return replace(out, closed=True, since=None, reason=why)
        return replace(out, since=None)
    if lagging:
        return replace(out, since=None)
    since = gate.since if gate.since is not None else now
    if now - since >= gate.settle:
        return replace(out, closed=False, since=None)
    return replace(out, since=since)
