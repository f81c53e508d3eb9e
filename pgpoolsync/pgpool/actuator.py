"""Bringing the running pgpool to the desired state, and checking that it got there.

The actuator renders and writes the files (only those that changed, atomically), reloads pgpool
over PCP when anything was written or a reload is still owed, and then asks pgpool what it runs
with (PCP pool status; the TLS certificate its client port serves) to tell apart what took
effect, what needs a restart, and what a reload did not apply. The first pass after a start owes
a reload: the files on disk may be newer than what pgpool loaded (a sidecar killed between write
and reload), so nothing is assumed.

When the state carries node targets (the Services' ready endpoints), it then brings pgpool's node
status in step (core/topology.py plans; this module runs the PCP commands and checks each took
effect). A detach is sent with that node's flag at ALLOW_TO_FAILOVER in the files pgpool has
reloaded, and the flag is put back right after, whatever happened. Knows nothing about
Kubernetes.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from pgpoolsync.core import render, tls, topology
from pgpoolsync.core.changes import drift
from pgpoolsync.core.model import DesiredState
from pgpoolsync.core.topology import NodeAction
from pgpoolsync.pgpool import pcp, probe, writer

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
    wait: float | None = None  # seconds until a held-back command is due


class NodeCommandError(Exception):
    pass


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
        settle_seconds: float = 3.0,
        node_interval: float = 1.0,
        node_verify_seconds: float = 5.0,
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
        self._settle = settle_seconds
        self._node_interval = node_interval
        self._node_verify = node_verify_seconds
        self._memory: dict[int, topology.NodeMemory] = {}
        self.node_error: str | None = None
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
        nodes = self._apply_nodes(state)
        return applied if nodes is None else replace(applied, nodes=nodes)

    def _apply_config(self, state: DesiredState, *, blocked: str | None) -> Applied:
        changed = tuple(
            write_state(
                state,
                config_dir=self._config_dir,
                pool_key_file=self._key_file,
                pool_key_seed=self._key_seed,
            )
        )
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

    # -- node status --------------------------------------------------------------------
    def _apply_nodes(self, state: DesiredState) -> NodeOutcome | None:
        """Plan and run the node commands due now; None when pgpool cannot be asked."""
        params = dict(state.params)
        now = self._clock()
        self._memory = topology.observe(self._memory, state.nodes, now=now)
        try:
            status = self._pgpool.node_status(params)
        except (pcp.PcpError, OSError) as exc:
            log.debug("could not ask pgpool for its node status: %s", exc)
            return None
        plan = topology.plan(
            state.nodes,
            status,
            self._memory,
            now=now,
            settle=self._settle,
            min_interval=self._node_interval,
        )
        done: list[NodeAction] = []
        error: str | None = None
        failed: NodeAction | None = None
        if plan.actions:
            for a in plan.actions:
                self._memory[a.node_id] = replace(
                    self._memory.get(a.node_id, topology.NodeMemory()), last_command=now
                )
            try:
                self._run(state, params, plan.actions, done)
            except (pcp.PcpError, OSError, NodeCommandError) as exc:
                error = str(exc)
                failed = next((a for a in plan.actions if a not in done), None)
            try:
                status = self._pgpool.node_status(params)
            except (pcp.PcpError, OSError) as exc:
                error = error or f"cannot read node status after the node commands: {exc}"
        held = [*plan.held, *(a.node_id for a in plan.actions if a not in done)]
        self._memory = topology.in_step(self._memory, state.nodes, status, held)
        self.node_error = error
        wait = plan.wait
        if error is not None:
            wait = self._node_interval if wait is None else min(wait, self._node_interval)
        return NodeOutcome(
            done=tuple(done),
            error=error,
            failed=failed,
            status=tuple(sorted(status.items())),
            wait=wait,
        )

    def _run(
        self,
        state: DesiredState,
        params: Mapping[str, str],
        actions: tuple[NodeAction, ...],
        done: list[NodeAction],
    ) -> None:
        detaching = [a for a in actions if a.action in (topology.DETACH, topology.RECYCLE)]
        for a in actions:
            if a.action == topology.ATTACH:
                self._attach(params, a.node_id)
                done.append(a)
        if not detaching:
            return
        ids = [a.node_id for a in detaching]
        allow = topology.allow_failover(state, ids)
        self._write(allow)
        try:
            self._pgpool.reload(dict(allow.params))  # pgpool reads the files; a fake, these
            self._wait(
                lambda: topology.failover_allowed(self._pgpool.running_params(params), ids),
                self._verify_seconds,
                f"pgpool did not take ALLOW_TO_FAILOVER for node {ids} on reload",
            )
            for a in detaching:
                self._pgpool.detach(params, a.node_id)
                self._wait(
                    self._status_is(params, a.node_id, down=True),
                    self._node_verify,
                    f"node {a.node_id} not down {self._node_verify:.0f}s after the detach",
                )
                if a.action == topology.RECYCLE:
                    self._attach(params, a.node_id)
                done.append(a)
        finally:
            self._write(state)  # DISALLOW_TO_FAILOVER again, whatever happened
            try:
                self._pgpool.reload(params)
                self._wait(
                    lambda: topology.failover_allowed(
                        self._pgpool.running_params(params), ids, allowed=False
                    ),
                    self._verify_seconds,
                    f"pgpool still runs with ALLOW_TO_FAILOVER for node {ids} after the reload",
                )
            except (pcp.PcpError, OSError, NodeCommandError) as exc:
                log.warning("putting DISALLOW_TO_FAILOVER back: %s; retrying", exc)
                self.reload_owed = True

    def _attach(self, params: Mapping[str, str], node_id: int) -> None:
        self._pgpool.attach(params, node_id)
        self._wait(
            self._status_is(params, node_id, down=False),
            self._node_verify,
            f"node {node_id} still down {self._node_verify:.0f}s after the attach",
        )

    def _status_is(
        self, params: Mapping[str, str], node_id: int, *, down: bool
    ) -> Callable[[], bool]:
        def check() -> bool:
            status = self._pgpool.node_status(params).get(node_id, topology.DOWN)
            return (status == topology.DOWN) == down

        return check

    def _write(self, state: DesiredState) -> None:
        write_state(
            state,
            config_dir=self._config_dir,
            pool_key_file=self._key_file,
            pool_key_seed=self._key_seed,
        )

    def _wait(self, check: Callable[[], bool], seconds: float, what: str) -> None:
        deadline = self._clock() + seconds
        while not check():
            if self._clock() >= deadline:
                raise NodeCommandError(what)
            self._sleep(0.05)

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


def signal_restart(pid_file: str | None) -> Restarter:
    """``--restart-policy signal``: SIGINT (fast shutdown: sessions drop) the pid in the pid
    file, by default pgpool.conf's ``pid_file_name``; the container restarts pgpool. Once per
    distinct target: never in a loop when a restart does not bring pgpool to the values."""
    restarted_for: list[tuple[tuple[str, str], ...]] = []

    def restart(
        state: DesiredState, names: tuple[str, ...], *, blocked: str | None
    ) -> RestartOutcome:
        params = dict(state.params)
        target = tuple(sorted((n, params.get(n, "")) for n in names))
        if target in restarted_for[-1:]:
            return RestartOutcome(why="already restarted for these values")
        if blocked is not None:
            return RestartOutcome(why=f"not while the desired state has problems: {blocked}")
        path = pid_file or params.get("pid_file_name") or ""
        try:
            # pgpool ends the pid with a NUL byte, which str.split() keeps.
            pid = int(Path(path).read_text().replace("\0", " ").split()[0])
            os.kill(pid, signal.SIGINT)
        except (OSError, ValueError, IndexError) as exc:
            log.error("restart policy: cannot signal pgpool via %s: %s", path, exc)
            return RestartOutcome(error=f"cannot signal pgpool via {path}: {exc}")
        restarted_for[:] = [target]
        return RestartOutcome(restarted=True)

    return restart
