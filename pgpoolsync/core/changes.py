"""What differs between two desired states, and between a desired state and what pgpool runs.

``describe_change`` names what a new state changes (users, parameters, rules) for the one log
line per applied change, never showing a password. ``drift`` compares the desired parameters
with the ones pgpool reports it is running with (PCP's pool status, ``pcp_pool_status``), so
that restart-required is measured against the running pgpool, not against a file: after a
sidecar restart, after pgpool restarted on its own, after a reload pgpool refused. pgpool
reports its values formatted its own way (booleans and enums as numbers, flags reordered);
``same_value`` knows those formats and says "cannot tell" rather than guess. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pgpoolsync.core import restart
from pgpoolsync.core.model import DesiredState
from pgpoolsync.core.values import boolean, sensitive

# Reported by pgpool as a number; the names it accepts in pgpool.conf, in enum order.
_ENUMS: dict[str, dict[str, str]] = {
    "backend_clustering_mode": {
        "streaming_replication": "1",
        "native_replication": "2",
        "logical_replication": "3",
        "slony": "4",
        "raw": "5",
        "snapshot_isolation": "6",
    },
}


def _number(value: str) -> float | None:
    try:
        return float(value.strip())
    except ValueError:
        return None


def same_value(name: str, running: str, desired: str) -> bool | None:
    """Whether pgpool runs ``name`` with the desired value; None when its format is unknown."""
    if running == desired:
        return True
    if name in _ENUMS:
        return _ENUMS[name].get(desired.strip().lower()) == running
    if name.startswith("backend_flag"):
        return {t.strip() for t in running.split("|") if t.strip()} == {
            t.strip() for t in desired.split("|") if t.strip()
        }
    want_bool, have_bool = boolean(desired), boolean(running)
    if want_bool is not None and have_bool is not None and running.strip() in ("0", "1"):
        return want_bool == have_bool
    want_num, have_num = _number(desired), _number(running)
    if want_num is not None and have_num is not None:
        return want_num == have_num
    if have_num is not None and running.strip().lstrip("-").isdigit():
        return None  # an enum pgpool reports as its number (log_min_messages = 19, ...)
    if "," in running or "," in desired:
        return [p.strip() for p in running.split(",")] == [p.strip() for p in desired.split(",")]
    return False


def needs_restart(name: str, running: str, desired: str) -> bool:
    """True when pgpool only takes this change at start."""
    if restart.start_only(name):
        return True
    return (
        restart.is_flag(name)
        and bool(restart.flag_part(running))
        and not restart.flag_part(desired)
    )


@dataclass(frozen=True)
class Drift:
    """Desired parameters pgpool is not running with: those that need a restart, and
    reloadable ones a reload did not apply (pgpool refused the value, or the reload is lost)."""

    restart: tuple[str, ...] = ()
    unapplied: tuple[str, ...] = ()


def drift(running: Mapping[str, str], desired: Mapping[str, str]) -> Drift:
    """Compare what pgpool reports (``running``) with the desired parameters.

    A parameter pgpool does not report is not compared (it has nothing to say about it);
    ``backend_weightN`` is not either (pgpool reports it normalised over all backends).
    """
    restart: list[str] = []
    unapplied: list[str] = []
    for name in sorted(desired):
        if name not in running or name.startswith("backend_weight"):
            continue
        same = same_value(name, running[name], desired[name])
        if same is None or same:
            continue
        if needs_restart(name, running[name], desired[name]):
            restart.append(name)
        else:
            unapplied.append(name)
    return Drift(restart=tuple(restart), unapplied=tuple(unapplied))


def describe_change(old: DesiredState | None, new: DesiredState) -> str:
    """One line naming what changed; never a password (sensitive parameter values masked)."""
    parts: list[str] = []
    old_users = {c.user: c.password for c in old.credentials} if old else {}
    new_users = {c.user: c.password for c in new.credentials}
    added = sorted(set(new_users) - set(old_users))
    removed = sorted(set(old_users) - set(new_users))
    rotated = sorted(u for u in set(new_users) & set(old_users) if new_users[u] != old_users[u])
    if added:
        parts.append("users added: " + ", ".join(added))
    if removed:
        parts.append("users removed: " + ", ".join(removed))
    if rotated:
        parts.append("passwords changed: " + ", ".join(rotated))
    old_params = dict(old.params) if old else {}
    for name, value in new.params:
        if old and old_params.get(name) != value:
            shown = "***" if sensitive(name) else repr(value)
            parts.append(f"{name} = {shown}")
    for name in sorted(set(old_params) - set(dict(new.params))):
        parts.append(f"{name} removed")
    if old and old.hba_rules != new.hba_rules:
        parts.append("pool_hba.conf rules changed")
    if old and old.tls != new.tls:
        parts.append("TLS certificate changed")
    if old is None:
        parts.append(f"{len(new.credentials)} users")
    return "; ".join(parts) or "files rewritten"
