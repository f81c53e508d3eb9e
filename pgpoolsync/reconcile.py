"""Applying the desired state, once (``render``) or in a level-triggered loop (``run``).

Sources only update their caches and call ``ChangeSignal.notify``; the loop wakes on it (or on
the resync timer), takes whole snapshots, builds and renders the desired state, writes what
changed, and reloads pgpool, retrying the reload with backoff until it succeeds. Bursts of
changes collapse into one write and one reload by construction. Changes pgpool cannot take by
reload are reported as restart-required, never as applied. Knows nothing about kubernetes types.
"""

from __future__ import annotations

import gc
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from pgpoolsync import model, render, writer
from pgpoolsync.metrics import Metrics
from pgpoolsync.settings import Common
from pgpoolsync.tls import CERT_FILE, TlsMaterial

log = logging.getLogger(__name__)

# Parameters pgpool reads only at start (REFERENCE.md, "Reload semantics").
RESTART_PARAMS = frozenset(
    {
        "backend_clustering_mode",
        "listen_addresses",
        "port",
        "pcp_listen_addresses",
        "pcp_port",
        "socket_dir",
        "unix_socket_directories",
        "pcp_socket_dir",
        "num_init_children",
        "max_pool",
        "connection_cache",
        "load_balance_mode",
        "child_life_time",
        "connection_life_time",
        "child_max_connections",
        "reserved_connections",
        "authentication_timeout",
        "pool_passwd",
        "pid_file_name",
        "logdir",
        "wd_ipc_socket_dir",
    }
)
_SENSITIVE = re.compile(r"password|secret|passphrase|key", re.IGNORECASE)


@dataclass(frozen=True)
class ApplyResult:
    outcome: model.Outcome
    changed: tuple[str, ...] = ()
    files: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def written(self) -> bool:
        """True when the files on disk now hold this outcome's state."""
        return bool(self.files)


def inputs_from(
    common: Common,
    *,
    credentials: Sequence[model.Credential | model.Problem],
    hba_text: str | None,
    backends: Sequence[model.Backend] | None = None,
    problems: Sequence[model.Problem] = (),
    tls: TlsMaterial | None = None,
) -> model.Inputs:
    """Model inputs from settings plus a snapshot of the sources."""
    if backends is None:
        backends = static_backends(common)
    return model.Inputs(
        backends=tuple(backends),
        params=common.env_params,
        credentials=(*credentials, *common.env_credentials),
        pcp_users=common.pcp_users,
        password_format=common.password_format,
        auth_method=common.auth_method,
        hba_text=hba_text,
        problems=tuple(problems),
        tls=tls,
        tls_dir=str(common.config_dir.absolute()),
        tls_required=common.tls_required,
    )


def static_backends(common: Common) -> list[model.Backend]:
    out: list[model.Backend] = []
    if common.primary_host:
        out.append(model.Backend(common.primary_host, common.primary_port, model.PRIMARY_FLAG))
        if common.replica_host:
            out.append(
                model.Backend(
                    common.replica_host,
                    common.replica_port,
                    model.REPLICA_FLAG,
                    weight=common.replica_weight,
                )
            )
    return out


def apply_once(common: Common, inputs: model.Inputs, *, strict: bool) -> ApplyResult:
    """Build, render and write.

    Nothing is written when the state cannot be built, nor, with ``strict``, when any input has
    an error (``render``); otherwise bad credentials are left out and the rest applied (``run``).
    """
    outcome = model.build(inputs)
    if outcome.state is None or (strict and outcome.errors):
        return ApplyResult(outcome)
    key = None
    if outcome.state.password_format == "aes":
        key, _ = writer.load_or_create_pool_key(
            common.pool_key_file, seed=common.pool_key_seed_file
        )
    files = render.render(outcome.state, pool_key=key)
    changed = writer.write_files(common.config_dir, files, secret_files=render.SECRET_FILES)
    return ApplyResult(outcome, tuple(changed), files)


def parse_pgpool_conf(text: str) -> dict[str, str]:
    """``name = 'value'`` lines (as we write them) → dict; later lines win, as in pgpool."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        m = re.match(r"^\s*([a-z0-9_]+)\s*=\s*'?(.*?)'?\s*$", line)
        if m and not line.lstrip().startswith("#"):
            out[m.group(1)] = m.group(2)
    return out


def restart_changes(running: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    """Names of parameters whose change pgpool would ignore until it restarts."""
    names: list[str] = []
    for name in sorted(set(running) | set(new)):
        if running.get(name) == new.get(name):
            continue
        existing_backend = name.startswith(("backend_hostname", "backend_port")) and name in running
        if (name in RESTART_PARAMS or existing_backend or name.startswith("ssl")) or (
            name.startswith("backend_flag")
            and "ALWAYS_PRIMARY" in running.get(name, "")
            and "ALWAYS_PRIMARY" not in new.get(name, "")
        ):
            names.append(name)
    return names


def describe_change(old: model.DesiredState | None, new: model.DesiredState) -> str:
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
            shown = "***" if _SENSITIVE.search(name) else repr(value)
            parts.append(f"{name} = {shown}")
    for name in sorted(set(old_params) - set(dict(new.params))):
        parts.append(f"{name} removed")
    if old and old.hba_rules != new.hba_rules:
        parts.append("pool_hba.conf rules changed")
    if old is None:
        parts.append(f"{len(new.credentials)} users")
    return "; ".join(parts) or "files rewritten"


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


@dataclass(frozen=True)
class Snapshot:
    """What the sources hold right now, as model values."""

    credentials: tuple[model.Credential | model.Problem, ...]
    backends: tuple[model.Backend, ...] | None = None  # None: the static flags
    problems: tuple[model.Problem, ...] = ()
    tls: TlsMaterial | None = None


Reporter = Callable[[model.Problem, str], None]  # (problem, reason) → log/Event


class Loop:
    def __init__(
        self,
        *,
        common: Common,
        snapshot: Callable[[], Snapshot],
        reload: Callable[[], None],
        signal: ChangeSignal,
        metrics: Metrics,
        hba_text: str | None = None,
        report: Reporter | None = None,
        restart: Callable[[], bool] | None = None,
        resync_seconds: float = 300.0,
        backoff_max: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.common = common
        self._snapshot = snapshot
        self._reload = reload
        self.signal = signal
        self.metrics = metrics
        self._hba_text = hba_text
        self._report = report or (lambda problem, reason: None)
        self._restart = restart
        self.resync_seconds = resync_seconds
        self._backoff_max = backoff_max
        self._clock = clock
        self._wall = wall
        self.ready = threading.Event()
        self.state: model.DesiredState | None = None
        self.pending_reload = False
        self._seen_at: float | None = None
        self._backoff = 0.0
        self._reported: set[str] = set()
        self._running_params = self._read_running_params()
        self._running_cert = self._read_running_cert()
        self.restart_needed: tuple[str, ...] = ()

    def _read_running_params(self) -> dict[str, str] | None:
        """pgpool.conf as found at start: what an already running pgpool was started with."""
        path = self.common.config_dir / render.PGPOOL_CONF
        try:
            return parse_pgpool_conf(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            return None

    def _read_running_cert(self) -> bytes | None:
        try:
            return (self.common.config_dir / CERT_FILE).read_bytes()
        except OSError:
            return None

    def _note_problems(self, problems: Sequence[model.Problem]) -> None:
        current = {str(p) for p in problems}
        for problem in problems:
            if str(problem) in self._reported:
                continue
            if problem.fatal:
                log.error("invalid input: %s", problem)
            else:
                log.warning("%s", problem)
            self._report(problem, "InvalidInput")
        self._reported = current
        self.metrics.invalid.set(len(problems))

    def step(self) -> None:
        """One pass: snapshot → build → render → write what changed → reload if needed."""
        seen = self.signal.take()
        if seen is not None and self._seen_at is None:
            self._seen_at = seen
        snap = self._snapshot()
        inputs = inputs_from(
            self.common,
            credentials=snap.credentials,
            hba_text=self._hba_text,
            backends=snap.backends,
            problems=snap.problems,
            tls=snap.tls,
        )
        try:
            result = apply_once(self.common, inputs, strict=False)
        except OSError as exc:
            log.error(
                "writing %s failed: %s; keeping the last good files", self.common.config_dir, exc
            )
            self.metrics.applies.labels("error").inc()
            self._report(
                model.Problem(str(self.common.config_dir), f"write failed: {exc}"), "ApplyFailed"
            )
            return
        self._note_problems(result.outcome.problems)
        state = result.outcome.state
        if state is None:
            self.metrics.applies.labels("error").inc()
            return
        if result.changed:
            log.info(
                "applied %s: %s", ", ".join(result.changed), describe_change(self.state, state)
            )
            self.pending_reload = True
            self.metrics.applies.labels("success").inc()
            self._check_restart(state)
        else:
            self.metrics.applies.labels("unchanged").inc()
        self.state = state
        self.metrics.users.set(len(state.credentials))
        if state.tls is not None:
            self.metrics.tls_expiry.set(state.tls.not_after)
        self.ready.set()
        if self.pending_reload:
            self._try_reload()
        if not self.pending_reload:
            self._seen_at = None
            self.metrics.last_success.set(self._wall())
        # The caches (watched objects, converted credentials, AES entries) are long-lived and
        # acyclic: keep the cyclic GC from rescanning them on every pass (tens of ms at 10,000
        # Secrets). Replaced objects are still freed by reference counting.
        gc.freeze()

    def _check_restart(self, state: model.DesiredState) -> None:
        new = dict(state.params)
        cert = state.tls.cert_pem if state.tls else None
        if self._running_params is None:
            self._running_params = new  # pgpool will start on these files
            self._running_cert = cert
        names = restart_changes(self._running_params, new)
        if cert is not None and self._running_cert is not None and cert != self._running_cert:
            names.append("ssl certificate")
        if names and names != list(self.restart_needed):
            log.warning(
                "pgpool must restart to apply: %s (written, not yet in effect)", ", ".join(names)
            )
            self._report(
                model.Problem("pgpool.conf", "restart required to apply: " + ", ".join(names)),
                "RestartRequired",
            )
        self.restart_needed = tuple(names)
        if names and self._restart is not None and self._restart():
            log.info("restarted pgpool to apply %s", ", ".join(names))
            self._running_params = new
            self._running_cert = cert
            self.restart_needed = ()
        self.metrics.restart_required.set(1 if self.restart_needed else 0)

    def _try_reload(self) -> None:
        try:
            self._reload()
        except Exception as exc:
            self.metrics.reloads.labels("error").inc()
            self._backoff = min(self._backoff_max, max(0.2, self._backoff * 2))
            log.warning("reloading pgpool failed (%s); retrying in %.1fs", exc, self._backoff)
            if self._backoff >= self._backoff_max:
                self._report(model.Problem("pgpool", f"reload failing: {exc}"), "ReloadFailed")
            return
        self.pending_reload = False
        self._backoff = 0.0
        self.metrics.reloads.labels("success").inc()
        if self._seen_at is not None:
            self.metrics.change_to_reload.observe(max(0.0, self._clock() - self._seen_at))
        log.info("reloaded pgpool")

    def run(self, stop: threading.Event) -> None:
        """First apply at once, then on every change, resync tick, or reload retry."""
        while not stop.is_set():
            self.step()
            timeout = self._backoff if self.pending_reload else self.resync_seconds
            deadline = self._clock() + timeout
            while not stop.is_set() and self._clock() < deadline:
                if self.signal.wait(min(0.5, max(0.0, deadline - self._clock()))):
                    break
