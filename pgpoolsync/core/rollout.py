"""Rolling restarts: which part of a desired state needs a pgpool restart, and when to ask the
Deployment for one. Pure.

``restart_hash`` digests what pgpool reads only at start (the restart-only parameters, the SSL
ones, each backend's address and ALWAYS_PRIMARY, the certificate). Every replica of the Deployment
builds the same desired state from the same Secrets and env, so every sidecar computes the same
hash: the pod template annotation it patches is the same value, and N sidecars cause one rollout.
No password or key is digested (sensitive parameter names are left out, the TLS key too).

``decide`` says what to do when this pod's pgpool needs a restart, from what the Deployment and
the pod carry: a template already carrying the hash is a rollout in progress (leave it alone); a
pod created from that template that still needs a restart means a restart does not help (never
roll again for it); otherwise patch, at most once per ``min_interval`` across all replicas (the
time of the last request is an annotation on the Deployment), and never while the desired state
has fatal problems.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from pgpoolsync.core import restart
from pgpoolsync.core.model import DesiredState
from pgpoolsync.core.values import sensitive

# On the pod template (a change to it is what rolls the pods), and so on every pod made from it.
HASH_ANNOTATION = "pgpoolsync.io/restart-hash"
# On the Deployment's own metadata (does not roll anything): when the last rollout was asked for.
REQUESTED_AT_ANNOTATION = "pgpoolsync.io/rollout-requested-at"


PATCH = "patch"  # ask the Deployment for a rollout
PENDING = "pending"  # a rollout carrying the hash is under way; this pod will be replaced
DONE = "done"  # this pod was made for the hash and still needs a restart: rolling cannot help
HOLD = "hold"  # the last rollout was asked for less than min_interval ago
BLOCKED = "blocked"  # the desired state has fatal problems


def restart_part(state: DesiredState) -> tuple[tuple[str, str], ...]:
    """The (name, value) pairs pgpool takes only at start, sorted; no secret among them."""
    out: list[tuple[str, str]] = []
    for name, value in state.params:
        if sensitive(name):
            continue
        if restart.start_only(name):
            out.append((name, value))
        elif restart.is_flag(name):
            out.append((name, restart.flag_part(value)))
    if state.tls is not None:
        out.append(("tls certificate", state.tls.cert_pem.decode("ascii", "replace")))
        out.append(("tls ca", (state.tls.ca_pem or b"").decode("ascii", "replace")))
    return tuple(sorted(out))


def restart_hash(state: DesiredState) -> str:
    """16 hex digits identifying what pgpool must start with."""
    h = hashlib.sha256()
    for name, value in restart_part(state):
        for part in (name, value):
            data = part.encode("utf-8", "surrogateescape")
            h.update(len(data).to_bytes(8, "big") + data)
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class Decision:
    action: str  # PATCH | PENDING | DONE | HOLD | BLOCKED
    why: str
    wait: float | None = None  # HOLD: seconds until a request is allowed


def decide(
    *,
    desired: str,
    template: str | None,
    pod: str | None,
    requested_at: float | None,
    now: float,
    min_interval: float,
    blocked: str | None = None,
) -> Decision:
    """What to do about a restart this pod's pgpool needs. ``template``: the hash on the
    Deployment's pod template; ``pod``: the one on this pod (the template it was made from);
    ``requested_at``: wall-clock time of the last rollout request on the Deployment."""
    if pod == desired:
        return Decision(
            DONE,
            f"this pod was started for restart hash {desired} and pgpool still runs "
            "differently: a restart does not apply it",
        )
    if template == desired:
        return Decision(
            PENDING, f"the Deployment is rolling out restart hash {desired}; this pod waits"
        )
    if blocked is not None:
        return Decision(BLOCKED, f"no rollout while the desired state has problems: {blocked}")
    if requested_at is not None and now - requested_at < min_interval:
        wait = min_interval - (now - requested_at)
        return Decision(
            HOLD,
            f"the last rollout was requested {now - requested_at:.0f}s ago "
            f"(--min-rollout-interval {min_interval:.0f}s)",
            wait=max(wait, 0.0),
        )
    return Decision(PATCH, f"its pod template had {template or 'no restart hash'}")
