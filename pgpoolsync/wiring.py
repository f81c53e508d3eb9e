"""Building the parts of ``render`` and ``run`` from Settings: the desired-state builder (settings
plus a source's snapshot → model inputs), the secrets-directory and TLS sources, the restart
policy and the actuator. The loop (reconcile.py) and the parts take plain values and callables;
only this module and cli.py read Settings.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

from pgpoolsync.core import build, model, tls
from pgpoolsync.core.presets import PRESETS, Preset
from pgpoolsync.envflags import UsageError, read_password_file
from pgpoolsync.pgpool import nodes, writer
from pgpoolsync.pgpool.actuator import Actuator, PcpPgpool, Restarter
from pgpoolsync.restart.rollout import DeploymentApi, Rollout
from pgpoolsync.restart.signal import SignalRestart
from pgpoolsync.settings import Common, RunSettings
from pgpoolsync.sources.convert import TlsResult, keys_for
from pgpoolsync.sources.dirsource import DirSource
from pgpoolsync.sources.tlssource import tls_source

log = logging.getLogger(__name__)


def static_backends(common: Common) -> list[model.Backend]:
    """The backends --primary-host/--replica-host name (none: the source's Services give them)."""
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


def inputs_from(common: Common, snap: model.Snapshot, *, hba_text: str | None) -> model.Inputs:
    """Model inputs from the settings plus a snapshot of the source."""
    backends = snap.backends if snap.backends is not None else static_backends(common)
    return model.Inputs(
        backends=tuple(backends),
        params=common.env_params,
        credentials=(*snap.credentials, *common.env_credentials),
        pcp_users=common.pcp_users,
        password_format=common.password_format,
        auth_method=common.auth_method,
        hba_text=hba_text,
        problems=(*common.config_problems, *snap.problems),
        tls=snap.tls,
        tls_dir=str(common.config_dir.absolute()),
        tls_required=common.tls_required,
        pgpool_version=common.pgpool_version,
        pool_passwd=common.pool_passwd,
    )


def builder(common: Common, *, hba_text: str | None) -> Callable[[model.Snapshot], model.Outcome]:
    """Build the desired state; when a credential is bad, again with the entries of the
    pool_passwd on disk (the last good files), so that its user keeps the entry it had."""

    def build_state(snap: model.Snapshot) -> model.Outcome:
        inputs = inputs_from(common, snap, hba_text=hba_text)
        outcome = build.build(inputs)
        # Users given (one per user: the same credential from two sources is no problem).
        given = {c.user for c in inputs.credentials if isinstance(c, model.Credential)}
        if outcome.state is None or len(outcome.state.credentials) == len(given):
            return outcome
        previous = writer.read_pool_passwd(common.config_dir)
        if not previous:
            return outcome
        return build.build(replace(inputs, previous_entries=previous))

    return build_state


def read_hba(common: Common) -> str | None:
    if common.pool_hba_file is None:
        return None
    try:
        return common.pool_hba_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--pool-hba-file {common.pool_hba_file}: {exc}") from None


def tls_reader(
    common: Common, secret: Callable[[], dict[str, bytes] | None] | None = None
) -> Callable[[], TlsResult]:
    try:
        return tls_source(
            mode=common.tls,
            config_dir=common.config_dir,
            tls_dir=common.tls_dir,
            names=[*common.tls_names, *tls.default_names(None, None)],
            secret=secret,
        )
    except ValueError as exc:  # --tls secret without a place to read it from
        raise UsageError(str(exc)) from None


def dir_source(common: Common, preset: Preset | None, *, watch: bool) -> DirSource:
    watched = (common.secrets_dir, common.tls_dir) if watch else ()
    return DirSource(
        secrets_dir=common.secrets_dir,
        keys=keys_for(preset),
        tls=tls_reader(common),
        watch=tuple(d for d in watched if d is not None),
    )


def preset(run: RunSettings) -> Preset | None:
    if run.preset is None:
        return None
    return PRESETS[run.preset].fill(run.cluster or "")


def lag_probe(run: RunSettings) -> nodes.LagProbe | None:
    if not run.max_replica_lag or not run.monitor_user or not run.monitor_password:
        return None
    from pgpoolsync.pgpool.lagprobe import LagProbe  # noqa: PLC0415 - psycopg only with the gate

    return LagProbe(
        user=run.monitor_user,
        password=password_file_reader(
            "--monitor-password-file", run.monitor_password_file, last=run.monitor_password
        ),
    )


def password_file_reader(flag: str, path: str | None, *, last: str) -> Callable[[], str]:
    """The password in ``path`` each time it is called (a mounted Secret changes in place); the
    last good one while the file is unreadable or empty, with a warning naming the file."""
    good = [last]

    def read() -> str:
        if path is None:
            return good[0]
        try:
            text = read_password_file(flag, path)
        except UsageError as exc:
            log.warning("%s; using the last password read", exc)
            return good[0]
        if text:
            good[0] = text
        else:
            log.warning("%s %s: empty; using the last password read", flag, path)
        return good[0]

    return read


def restart_policy(run: RunSettings, *, rollout_api: DeploymentApi | None) -> Restarter | None:
    """--restart-policy: signal, rollout (with --kube: the source's Deployment calls) or none."""
    if run.restart_policy == "signal":
        return SignalRestart(pid_file=run.pgpool_pid_file)
    if run.restart_policy == "rollout" and rollout_api is not None:
        return Rollout(
            rollout_api,
            pod_name=run.pod_name,
            deployment=run.deployment,
            min_interval=run.min_rollout_interval,
        )
    return None


def actuator(common: Common, run: RunSettings, *, rollout_api: DeploymentApi | None) -> Actuator:
    """The actuator for ``run``: pgpool over PCP as the first PCP user, the restart policy, the
    node settle time and the replica-lag gate."""
    # run --once without a PCP user: no user, and PcpPgpool acts as if PCP were unreachable
    pcp_user = common.pcp_users[0] if common.pcp_users else model.Credential("", "")
    return Actuator(
        config_dir=common.config_dir,
        pool_key_file=common.pool_key_file,
        pool_key_seed=common.pool_key_seed_file,
        pgpool=PcpPgpool(
            host=run.pcp_host,
            user=pcp_user.user,
            password=pcp_user.password,
            pcp_port=run.pcp_port,
        ),
        restart=restart_policy(run, rollout_api=rollout_api),
        settle_seconds=run.node_settle_seconds,
        lag_probe=lag_probe(run),
        max_replica_lag=run.max_replica_lag,
    )
