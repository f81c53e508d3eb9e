"""Bringing the running pgpool to the desired state, and checking that it got there.

The actuator renders and writes the files (only those that changed, atomically), reloads pgpool
over PCP when anything was written or a reload is still owed, and then asks pgpool what it runs
with (PCP pool status; the TLS certificate its client port serves) to tell apart what took
effect, what needs a restart, and what a reload did not apply. The first pass after a start owes
a reload: the files on disk may be newer than what pgpool loaded (a sidecar killed between write
and reload), so nothing is assumed.

When the state carries node targets (the Services' ready endpoints), it then brings pgpool's node
status in step (pgpool/nodes.py, with the replica-lag gate). A restart pgpool needs goes to the
``Restarter`` it was given (pgpoolsync/restart/: signal or Deployment rollout). Knows nothing
about Kubernetes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Protocol

from pgpoolsync.core import render, tls
from pgpoolsync.core.changes import drift
from pgpoolsync.core.model import DesiredState
from pgpoolsync.core.outcomes import Applied, RestartOutcome
from pgpoolsync.pgpool import pcp, probe, writer
from pgpoolsync.pgpool.nodes import LagProbe, Nodes

log = logging.getLogger(__name__)

CERT_CHANGE = "ssl certificate"


def write_state(
    state: DesiredState, *, config_dir: Path, pool_key_file: Path, pool_key_seed: Path | None
) -> list[str]:
    """Render the state and write every file that differs; the names written, in order."""
    key = None
    if state.password_format == "aes":
        key, _ = writer.load_or_create_pool_key(pool_key_file, seed=pool_key_seed)
    files = render.render(state, pool_key=key)
    return writer.write_files(config_dir, files, secret_files=render.SECRET_FILES)


class Pgpool(Protocol):
    """The running pgpool as the actuator sees it; ``params`` are the desired parameters (the
    ports to reach it are among them)."""

    def reload(self, params: Mapping[str, str]) -> None: ...

    def running_params(self, params: Mapping[str, str]) -> dict[str, str]: ...

    def served_certificate(self, params: Mapping[str, str]) -> bytes | None: ...

    def node_status(self, params: Mapping[str, str]) -> dict[int, int]: ...

    def detach(self, params: Mapping[str, str], node_id: int) -> None: ...

    def attach(self, params: Mapping[str, str], node_id: int) -> None: ...


class PcpPgpool:
    """pgpool reached over PCP (reload, pool status) and its client port (TLS certificate)."""

    def __init__(
        self,
        *,
        host: str,
        user: str,
        password: str,
        pcp_port: int | None = None,
        timeout: float = 5.0,
    ) -> None:
        self.host = host
        self._user = user
        self._password = password
        self._pcp_port = pcp_port
        self.timeout = timeout

    def _client(self, params: Mapping[str, str]) -> pcp.PcpClient:
        if not self._user:  # run --once without a PCP user: as if PCP were unreachable
            raise pcp.PcpError("no PCP user")
        port = self._pcp_port or int(params.get("pcp_port", "9898"))
        client = pcp.PcpClient(self.host, port, timeout=self.timeout)
        client.login(self._user, self._password)
        return client

    def reload(self, params: Mapping[str, str]) -> None:
        with self._client(params) as client:
            client.reload()

    def running_params(self, params: Mapping[str, str]) -> dict[str, str]:
        with self._client(params) as client:
            return client.pool_status()

    def served_certificate(self, params: Mapping[str, str]) -> bytes | None:
        return probe.served_certificate(
            self.host, int(params.get("port", "9999")), timeout=self.timeout
        )

    def node_status(self, params: Mapping[str, str]) -> dict[int, int]:
        with self._client(params) as client:
            return {i: client.node_info(i).status for i in range(client.node_count())}

    # One connection per node command: a detach of the primary restarts pgpool's PCP process.
    def detach(self, params: Mapping[str, str], node_id: int) -> None:
        with self._client(params) as client:
            client.detach(node_id)

    def attach(self, params: Mapping[str, str], node_id: int) -> None:
        with self._client(params) as client:
            client.attach(node_id)


class Restarter(Protocol):
    """A restart policy: called on every verified pass while pgpool needs a restart."""

    def __call__(
        self, state: DesiredState, names: tuple[str, ...], *, blocked: str | None
    ) -> RestartOutcome: ...


class Actuator:
    def __init__(
        self,
        *,
        config_dir: Path,
        pool_key_file: Path,
        pool_key_seed: Path | None = None,
        pgpool: Pgpool,
        restart: Restarter | None = None,
        verify_seconds: float = 2.0,
        recheck_seconds: float = 60.0,
        settle_seconds: float,
        node_interval: float = 1.0,
        node_verify_seconds: float = 5.0,
        lag_probe: LagProbe | None = None,
        max_replica_lag: float = 0.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config_dir = config_dir
        self._key_file = pool_key_file
        self._key_seed = pool_key_seed
        self._pgpool = pgpool
        self._restart = restart
        self._verify_seconds = verify_seconds
        self._recheck_seconds = recheck_seconds
        self.nodes = Nodes(
            pgpool=pgpool,
            write=self._write,
            owe_reload=self._owe_reload,
            verify_seconds=verify_seconds,
            settle_seconds=settle_seconds,
            node_interval=node_interval,
            node_verify_seconds=node_verify_seconds,
            lag_probe=lag_probe,
            max_replica_lag=max_replica_lag,
            sleep=sleep,
            clock=clock,
        )
        self._sleep = sleep
        self._clock = clock
        self.reload_owed = True  # the first pass assumes nothing about what pgpool loaded
        self._verified_at: float | None = None
        self.restart_needed: tuple[str, ...] = ()

    def apply(self, state: DesiredState, *, blocked: str | None = None) -> Applied:
        """Write, reload if owed, verify; then bring pgpool's node status in step. Raises
        OSError when the files cannot be written. ``blocked``: why the restart policy must not
        act (the desired state has fatal problems)."""
        applied = self._apply_config(state, blocked=blocked)
        if not state.nodes or applied.reload_error is not None:
            return applied
        nodes = self.nodes.apply(state)
        return applied if nodes is None else replace(applied, nodes=nodes)

    @property
    def node_error(self) -> str | None:
        """The last node command pgpool refused or that did not take effect (None: in step)."""
        return self.nodes.node_error

    def _owe_reload(self) -> None:
        self.reload_owed = True

    def _write(self, state: DesiredState) -> tuple[str, ...]:
        """Render the state and write the files that differ; the names written."""
        return tuple(
            write_state(
                state,
                config_dir=self._config_dir,
                pool_key_file=self._key_file,
                pool_key_seed=self._key_seed,
            )
        )

    def _apply_config(self, state: DesiredState, *, blocked: str | None) -> Applied:
        changed = self._write(state)
        params = dict(state.params)
        if changed:
            self.reload_owed = True
        reloaded = False
        if self.reload_owed:
            try:
                self._pgpool.reload(params)
            except (pcp.PcpError, OSError) as exc:
                return Applied(changed=changed, reload_error=str(exc), restart=self.restart_needed)
            self.reload_owed = False
            reloaded = True
        due = (
            self._verified_at is None or self._clock() - self._verified_at >= self._recheck_seconds
        )
        if not (reloaded or due or self.restart_needed):
            return Applied(changed=changed, restart=self.restart_needed)
        try:
            restart, unapplied = self._verify(state, params, wait=reloaded)
        except (pcp.PcpError, probe.ProbeError, OSError) as exc:
            log.debug("could not ask pgpool what it runs with: %s", exc)
            return Applied(changed=changed, reloaded=reloaded, restart=self.restart_needed)
        self._verified_at = self._clock()
        self.restart_needed = restart
        if unapplied:
            self.reload_owed = True  # retried with backoff by the loop
        restarted = self._maybe_restart(state, restart, blocked=blocked)
        return Applied(
            changed=changed,
            reloaded=reloaded,
            verified=True,
            restart=restart,
            unapplied=unapplied,
            restarted=restarted,
        )

    def _verify(
        self, state: DesiredState, params: Mapping[str, str], *, wait: bool
    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(restart-needing names, reloadable names not in effect). Right after a reload pgpool's
        processes take it up one by one: poll for up to ``verify_seconds`` before calling a
        reloadable value unapplied."""
        deadline = self._clock() + (self._verify_seconds if wait else 0.0)
        while True:
            running = self._pgpool.running_params(params)
            found = drift(running, params)
            if not found.unapplied or self._clock() >= deadline:
                break
            self._sleep(0.05)
        restart = list(found.restart)
        if state.tls is not None and running.get("ssl") == "1":
            served = self._pgpool.served_certificate(params)
            if served is not None and served != tls.cert_der(state.tls.cert_pem):
                restart.append(CERT_CHANGE)
        return tuple(restart), found.unapplied

    def _maybe_restart(
        self, state: DesiredState, restart: tuple[str, ...], *, blocked: str | None
    ) -> RestartOutcome | None:
        if not restart or self._restart is None:
            return None
        outcome = self._restart(state, restart, blocked=blocked)
        if outcome.restarted:
            self.reload_owed = True  # verify again once pgpool is back
            self._verified_at = None
            log.info("restarted pgpool to apply %s", ", ".join(restart))
        return outcome
