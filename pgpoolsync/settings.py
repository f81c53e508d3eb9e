"""Parsed flags and the image's environment conventions → frozen Settings.

The flags are declared in flags.py, the pgpool2_on_k8s conventions read in sources/env.py; here
they are combined and checked (a bad combination is a UsageError naming the flags and variables).
Passwords are only ever read from the environment or files, never from argv.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pgpoolsync import flags
from pgpoolsync.core import values, versions
from pgpoolsync.core.model import Credential, Param, Problem, env_origin, flag_origin
from pgpoolsync.envflags import ENV_PREFIX, UsageError, env_name, read_password_file
from pgpoolsync.exporter import command as exporter_command
from pgpoolsync.exporter.command import ExporterSettings
from pgpoolsync.sources import env
from pgpoolsync.sources.env import ImageEnv

__all__ = ["ENV_PREFIX", "ExporterSettings", "UsageError", "env_name", "read_password_file"]


@dataclass(frozen=True)
class Common:
    """Settings shared by ``render`` and ``run``."""

    config_dir: Path
    secrets_dir: Path | None
    primary_host: str | None
    primary_port: int
    replica_host: str | None
    replica_port: int
    replica_weight: int
    password_format: str
    auth_method: str
    pool_key_file: Path
    pool_hba_file: Path | None
    pool_key_seed_file: Path | None = None
    tls: str = "off"
    tls_dir: Path | None = None
    tls_names: tuple[str, ...] = ()
    tls_required: bool = False
    pgpool_version: str = versions.DEFAULT_PGPOOL_VERSION
    pool_passwd: bool = True
    env_params: tuple[Param, ...] = field(default=(), repr=False)  # some hold passwords
    config_problems: tuple[Problem, ...] = ()  # in a mounted pgpool.conf: no state is built
    env_credentials: tuple[Credential | Problem, ...] = field(default=(), repr=False)
    pcp_users: tuple[Credential, ...] = field(default=(), repr=False)
    env_warnings: tuple[Problem, ...] = ()


@dataclass(frozen=True)
class Settings:
    command: str
    log_level: str
    log_format: str
    common: Common | None = None
    run: RunSettings | None = None
    exporter: ExporterSettings | None = None
    then: tuple[str, ...] = ()  # render: the command to exec afterwards
    strict: bool = False  # render: all or nothing


def _comma_list(value: str | None) -> tuple[str, ...]:
    return tuple(n.strip() for n in (value or "").split(",") if n.strip())


@dataclass(frozen=True)
class RunSettings:
    kube: bool
    kubeconfig: str | None
    namespace: str | None
    preset: str | None
    cluster: str | None
    secret_selector: str | None
    secret_names: tuple[str, ...]
    primary_service: str | None
    replica_service: str | None
    service_address: str
    pcp_host: str
    pcp_port: int | None
    listen: str
    once: bool
    resync_seconds: int
    watch_timeout_seconds: int
    restart_policy: str
    pgpool_pid_file: str | None
    pod_name: str | None
    tls_secret: str | None = None
    topology: bool = True
    node_settle_seconds: int = flags.NODE_SETTLE_SECONDS
    min_rollout_interval: int = flags.MIN_ROLLOUT_INTERVAL
    deployment: str | None = None
    max_replica_lag: int = 0
    monitor_user: str | None = None
    monitor_password: str | None = field(default=None, repr=False)  # as read at start
    monitor_password_file: str | None = None  # re-read by the lag probe on each new connection


def _monitor_login(ns: argparse.Namespace, *, kube: bool) -> tuple[str | None, str | None]:
    """(user, password) of the monitoring login; UsageError for a half or unusable one."""
    lag = int(ns.max_replica_lag)
    user, path = ns.monitor_user or None, ns.monitor_password_file or None
    if lag and not (user and path):
        raise UsageError(
            "--max-replica-lag (PGPOOLSYNC_MAX_REPLICA_LAG) needs a monitoring login to measure "
            "lag: --monitor-user (PGPOOLSYNC_MONITOR_USER) and --monitor-password-file "
            "(PGPOOLSYNC_MONITOR_PASSWORD_FILE)"
        )
    if bool(user) != bool(path):
        raise UsageError(
            "--monitor-user (PGPOOLSYNC_MONITOR_USER) and --monitor-password-file "
            "(PGPOOLSYNC_MONITOR_PASSWORD_FILE) go together"
        )
    if lag and (not kube or ns.topology != "mirror"):
        raise UsageError(
            "--max-replica-lag (PGPOOLSYNC_MAX_REPLICA_LAG) needs --kube and --topology mirror: "
            "it holds node 1 out through the node status mirrored from the replica Service"
        )
    if path is None:
        return None, None
    password = read_password_file("--monitor-password-file", path)
    if not password:
        raise UsageError(f"--monitor-password-file {path}: empty")
    return user, password


def _run_settings(ns: argparse.Namespace, image: ImageEnv) -> RunSettings:
    kube = bool(ns.kube or ns.kubeconfig)
    if ns.preset and not ns.cluster and ns.preset != "pgset":
        raise UsageError(f"--preset {ns.preset} needs --cluster")
    if kube and ns.secrets_dir:
        raise UsageError("choose one source: --kube or --secrets-dir")
    if ns.restart_policy == "rollout" and not kube:
        raise UsageError(
            "--restart-policy rollout patches the pod's Deployment and needs --kube "
            "(without a Deployment: --restart-policy signal, which drops sessions)"
        )
    monitor_user, monitor_password = _monitor_login(ns, kube=kube)
    return RunSettings(
        kube=kube,
        kubeconfig=ns.kubeconfig or None,
        namespace=ns.namespace or None,
        preset=ns.preset or None,
        cluster=ns.cluster or None,
        secret_selector=ns.secret_selector or None,
        secret_names=_comma_list(ns.secret_names),
        primary_service=ns.primary_service or None,
        replica_service=ns.replica_service or None,
        service_address=ns.service_address,
        pcp_host=ns.pcp_host,
        pcp_port=int(ns.pcp_port) if ns.pcp_port else None,
        listen=ns.listen,
        once=bool(ns.once),
        resync_seconds=int(ns.resync_seconds) or flags.RESYNC_SECONDS,
        watch_timeout_seconds=int(ns.watch_timeout_seconds),
        restart_policy=ns.restart_policy,
        pgpool_pid_file=ns.pgpool_pid_file or None,
        pod_name=ns.pod_name or image.pod_name,
        tls_secret=ns.tls_secret or None,
        topology=ns.topology == "mirror",
        node_settle_seconds=int(ns.node_settle_seconds),
        min_rollout_interval=int(ns.min_rollout_interval),
        deployment=ns.deployment or None,
        max_replica_lag=int(ns.max_replica_lag),
        monitor_user=monitor_user,
        monitor_password=monitor_password,
        monitor_password_file=ns.monitor_password_file or None,
    )


def _pcp_users(ns: argparse.Namespace, image: ImageEnv) -> list[Credential]:
    user = ns.pcp_user or image.pcp_user
    if ns.pcp_password_file:
        password = read_password_file("--pcp-password-file", ns.pcp_password_file)
        source = flag_origin(f"--pcp-password-file {ns.pcp_password_file}")
    else:
        password = image.pcp_password
        source = env_origin("PGPOOL_PCP_USER", "PGPOOL_PCP_PASSWORD")
    if not user and not password:
        return []
    return [Credential(user=user, password=password, source=source)]


def _common(ns: argparse.Namespace, image: ImageEnv) -> Common:
    if image.param_errors:
        raise UsageError(image.param_errors[0])
    config_dir = Path(ns.config_dir)
    key_file = ns.pool_key_file or image.key_file or config_dir / flags.DEFAULT_KEY_NAME
    ssl_asked = any(p.name == "ssl" and values.boolean(p.value) for p in image.params)
    if ssl_asked and ns.tls == "off":
        raise UsageError(
            "PGPOOL_PARAMS_SSL=on with --tls off: pgpool would run with ssl = on and no "
            "certificate; use --tls auto (a self-signed pair, as the image makes) or --tls secret"
        )
    return Common(
        config_dir=config_dir,
        secrets_dir=Path(ns.secrets_dir) if ns.secrets_dir else None,
        primary_host=ns.primary_host or None,
        primary_port=ns.primary_port,
        replica_host=ns.replica_host or None,
        replica_port=ns.replica_port,
        replica_weight=ns.replica_weight,
        password_format=ns.password_format,
        auth_method=ns.auth_method,
        pool_key_file=Path(key_file),
        pool_hba_file=Path(ns.pool_hba_file) if ns.pool_hba_file else None,
        pool_key_seed_file=Path(ns.pool_key_seed_file) if ns.pool_key_seed_file else None,
        tls=ns.tls,
        tls_dir=Path(ns.tls_dir) if ns.tls_dir else None,
        tls_names=_comma_list(ns.tls_names),
        # PGPOOL_PARAMS_SSL=on asks for TLS: the image's pool_hba then has only hostssl lines.
        tls_required=bool(ns.tls_required) or ssl_asked or not image.pool_passwd,
        pgpool_version=ns.pgpool_version,
        pool_passwd=image.pool_passwd,
        env_params=image.params,
        config_problems=image.params_problems,
        env_credentials=image.credentials,
        pcp_users=tuple(_pcp_users(ns, image)),
        env_warnings=image.warnings,
    )


def parse(argv: Sequence[str], environ: Mapping[str, str]) -> Settings:
    """Parse argv + environ. argparse exits 2 on usage errors; UsageError for the rest."""
    image = env.read(environ)
    parser = flags.build_parser(environ, image=image)
    ns = parser.parse_args(list(argv))
    if ns._env_errors:
        parser.error("; ".join(ns._env_errors))
    common = _common(ns, image) if ns.command in ("render", "run") else None
    run = _run_settings(ns, image) if ns.command == "run" else None
    exporter = exporter_command.settings(ns, environ) if ns.command == "exporter" else None
    return Settings(
        command=ns.command,
        log_level=ns.log_level,
        log_format=ns.log_format,
        common=common,
        run=run,
        strict=bool(getattr(ns, "strict", False)),
        then=tuple(a for i, a in enumerate(getattr(ns, "then", None) or []) if i or a != "--"),
        exporter=exporter,
    )
