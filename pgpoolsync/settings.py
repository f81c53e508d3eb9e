"""Command-line flags and environment → frozen Settings. The only reader of the environment.

Every flag ``--some-flag`` has an environment twin ``PGPOOLSYNC_SOME_FLAG`` (the flag wins).
The pgpool2_on_k8s conventions are read here too: ``PGPOOL_PARAMS_<NAME>=<value>`` →
``<name> = '<value>'``; every ``X_USERNAME``/``X_PASSWORD`` pair (X is the text before the
first ``_``) → a pool_passwd user; ``PGPOOL_PCP_USER``/``PGPOOL_PCP_PASSWORD`` → pcp.conf;
``PGPOOL_PASSWORD_ENCRYPTION_METHOD`` (scram-sha-256 | md5) → the auth method and entry format.
Passwords are only ever read from the environment or files, never from argv.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pgpoolsync.core import hba, passwd, pgpoolconf, tls, values, versions
from pgpoolsync.core.model import Credential, Param, Problem, env_origin, flag_origin
from pgpoolsync.core.presets import PRESETS
from pgpoolsync.envflags import (
    ENV_PREFIX,
    UsageError,
    add_top_flags,
    env_name,
    read_password_file,
    truthy,
)
from pgpoolsync.envflags import EnvParser as _EnvParser
from pgpoolsync.envflags import nonneg_int as _nonneg_int
from pgpoolsync.envflags import port as _port
from pgpoolsync.exporter import command as exporter_command
from pgpoolsync.exporter.command import ExporterSettings

__all__ = ["ENV_PREFIX", "ExporterSettings", "UsageError", "env_name", "read_password_file"]

# Defaults written once: the flags, RunSettings and the parts they configure take them from here.
RESYNC_SECONDS = 300  # a full resync, whatever the watches said
NODE_SETTLE_SECONDS = 3  # an endpoint ready this long before its node is attached
MIN_ROLLOUT_INTERVAL = 900  # seconds between two rollouts any replica asks for

PARAMS_PREFIX = "PGPOOL_PARAMS_"
DEFAULT_KEY_NAME = ".pgpoolkey"


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
    env_params: tuple[Param, ...] = ()
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


def add_common_flags(p: _EnvParser) -> None:
    env = p.environ
    legacy = env.get("PGPOOL_PASSWORD_ENCRYPTION_METHOD", "scram-sha-256")
    if legacy not in ("scram-sha-256", "md5"):
        p.errors.append(
            f"PGPOOL_PASSWORD_ENCRYPTION_METHOD={legacy!r}: must be scram-sha-256 (AES entries) "
            "or md5"
        )
    skip = truthy(env.get("PGPOOL_SKIP_PASSWORD_ENCRYPTION", "false"))
    default_format = "verbatim" if skip else "md5" if legacy == "md5" else "aes"
    install_dir = env.get("PGPOOL_INSTALL_DIR")
    p.add(
        "--config-dir",
        help="directory pgpool reads its files from (default: $PGPOOL_INSTALL_DIR/etc when "
        "set, as the pgpool2_on_k8s image, else /etc/pgpool)",
        default=f"{install_dir.rstrip('/')}/etc" if install_dir else "/etc/pgpool",
    )
    p.add(
        "--secrets-dir",
        help="directory with one sub-directory per credential (username or user, password), "
        "laid out like mounted Secret volumes",
    )
    p.add("--primary-host", help="backend 0 (ALWAYS_PRIMARY|DISALLOW_TO_FAILOVER) host")
    p.add("--primary-port", help="backend 0 port", default="5432", type=_port)
    p.add("--replica-host", help="backend 1 (DISALLOW_TO_FAILOVER) host; none: no replica")
    p.add("--replica-port", help="backend 1 port", default="5432", type=_port)
    p.add(
        "--replica-weight",
        help="backend_weight1: share of read load for the replica Service",
        default="1",
        type=_nonneg_int,
    )
    p.add(
        "--password-format",
        help="pool_passwd entries: aes (works with SCRAM and md5 backends), md5 (md5 backends "
        "only), text (clear text), verbatim (the values are md5…/AES…/TEXT… entries and the PCP "
        "password an md5 digest already: written as they are; the default when "
        "PGPOOL_SKIP_PASSWORD_ENCRYPTION=true, as the image)",
        default=default_format,
        choices=passwd.FORMATS,
    )
    p.add(
        "--pgpool-version",
        help="the pgpool that reads the files (a parameter it does not know is reported; "
        "socket_dir is written under both names, logdir as work_dir from 4.7)",
        default=versions.DEFAULT_PGPOOL_VERSION,
        choices=list(versions.PGPOOL_VERSIONS),
    )
    p.add(
        "--auth-method",
        help="client authentication in the default pool_hba.conf",
        default="md5" if legacy == "md5" else "scram-sha-256",
        choices=hba.AUTH_METHODS,
    )
    p.add(
        "--pool-key-file",
        help="AES pool key (pgpool -k); created once (random, 0600) when missing "
        f"(default: $PGPOOLKEYFILE or CONFIG_DIR/{DEFAULT_KEY_NAME})",
    )
    p.add(
        "--pool-key-seed-file",
        help="when the pool key file is missing, create it (0600) from this file's first line, "
        "e.g. a mounted Secret, so the key is stable across pods",
    )
    volume = config_volume(env)
    mounted_hba = volume / "pool_hba.conf"
    p.add(
        "--pool-hba-file",
        help="use this pool_hba.conf (validated) instead of the default (default: "
        "$PGPOOL_CONF_VOLUME/pool_hba.conf when mounted, as the image)",
        default=str(mounted_hba) if mounted_hba.is_file() else None,
    )
    mounted_tls = volume / "tls"
    has_pair = (mounted_tls / "tls.crt").is_file() and (mounted_tls / "tls.key").is_file()
    p.add(
        "--tls",
        help="TLS for clients and backends: auto (a self-signed pair generated once and kept "
        "in CONFIG_DIR), secret (tls.crt/tls.key[/ca.crt] from --tls-dir or --tls-secret), off "
        "(default: secret when $PGPOOL_CONF_VOLUME/tls holds a pair, as the image, else auto)",
        default="secret" if has_pair else "auto",
        choices=tls.MODES,
    )
    p.add(
        "--tls-dir",
        help="directory with tls.crt, tls.key and optionally ca.crt (a mounted "
        "cert-manager Secret)",
        default=str(mounted_tls) if has_pair else None,
    )
    p.add("--tls-names", help="extra DNS names/IPs for the auto certificate (comma-separated)")
    p.add(
        "--tls-required",
        help="pool_hba.conf accepts only TLS connections (hostssl)",
        action="store_true",
    )
    p.add("--pcp-user", help="PCP user for pcp.conf (default: $PGPOOL_PCP_USER)")
    p.add(
        "--pcp-password-file",
        help="file holding the PCP user's password (default: $PGPOOL_PCP_PASSWORD)",
    )


def build_parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pgpoolsync",
        description="Keeps Pgpool-II's configuration and pool_passwd in step with the "
        "credentials and Services of an operator-managed PostgreSQL cluster.",
    )
    top = _EnvParser(parser, environ)
    add_top_flags(top)
    subs = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    render = subs.add_parser(
        "render",
        help="render pgpool.conf, pool_hba.conf, pool_passwd and pcp.conf once",
        description="Render pgpool's four files once into --config-dir; exit 1 on bad input "
        "with no file changed.",
    )
    render_env = _EnvParser(render, environ)
    add_common_flags(render_env)
    render_env.add(
        "--strict",
        help="write nothing when any input is bad, a credential too (default: a bad credential "
        "skips that user, who keeps its entry from the last good pool_passwd, and exit 3)",
        action="store_true",
    )
    render.add_argument(
        "then",
        nargs=argparse.REMAINDER,
        metavar="-- COMMAND",
        help="after a successful render, exec COMMAND in place of pgpoolsync (its PID, so "
        "signals reach it; the drop-in image runs pgpool so) with the credential variables "
        "removed from its environment",
    )
    run = subs.add_parser(
        "run",
        help="keep the files in step with a secrets directory or the Kubernetes API, "
        "reloading pgpool through PCP",
        description="Apply at once (files exist before pgpool starts), then on every change: "
        "render, write what changed atomically, reload pgpool over PCP (retried until it "
        "succeeds). Invalid Secrets are reported and skipped; the rest keeps working.",
    )
    run_env = _EnvParser(run, environ)
    add_common_flags(run_env)
    add_run_flags(run_env)
    exp_env = exporter_command.add_parser(subs, environ)
    parser.set_defaults(
        _env_errors=top.errors + render_env.errors + run_env.errors + exp_env.errors
    )
    return parser


def add_run_flags(p: _EnvParser) -> None:
    p.add(
        "--kube",
        help="watch the Kubernetes API (in-cluster config, else kubeconfig)",
        action="store_true",
    )
    p.add("--kubeconfig", help="kubeconfig file (implies --kube; skips in-cluster config)")
    p.add(
        "--namespace",
        help="namespace of the cluster's Secrets and Services (default: the pod's own)",
    )
    p.add("--preset", help="operator conventions for Secrets and Services", choices=sorted(PRESETS))
    p.add("--cluster", help="the operator's cluster name (with --preset)")
    p.add("--secret-selector", help="label selector for credential Secrets")
    p.add("--secret-names", help="comma-separated credential Secret names")
    p.add("--primary-service", help="primary Service name")
    p.add("--replica-service", help="replica Service name")
    p.add(
        "--service-address",
        help="backend host: the Service DNS name {svc}.{ns}.svc, or its clusterIP",
        default="dns",
        choices=["dns", "cluster-ip"],
    )
    p.add("--pcp-host", help="pgpool's PCP host", default="127.0.0.1")
    p.add("--pcp-port", help="pgpool's PCP port (default: pcp_port of pgpool.conf)", type=_port)
    p.add("--listen", help="address of /metrics, /healthz, /readyz", default=":9720")
    p.add("--once", help="apply once and exit (init container)", action="store_true")
    p.add(
        "--resync-seconds",
        help="full resync period (0: the default)",
        default=str(RESYNC_SECONDS),
        type=_nonneg_int,
    )
    p.add(
        "--watch-timeout-seconds",
        help="server-side watch timeout (client read timeout is 10%% longer)",
        default="60",
        type=_nonneg_int,
    )
    p.add(
        "--restart-policy",
        help="what to do when a change needs a pgpool restart: never (report only), rollout "
        "(with --kube: a rolling restart of the pod's Deployment, pod by pod behind the "
        "Service; one rollout for all replicas) or signal (SIGINT the pid in --pgpool-pid-file: "
        "every session of this pod drops; needs a shared process namespace)",
        default="never",
        choices=["never", "rollout", "signal"],
    )
    p.add(
        "--min-rollout-interval",
        help="seconds between two rollouts requested by any replica (a flapping input must "
        "not restart pods in a loop)",
        default=str(MIN_ROLLOUT_INTERVAL),
        type=_nonneg_int,
    )
    p.add(
        "--deployment",
        help="the Deployment to roll out (default: the owner of this pod's ReplicaSet)",
    )
    p.add(
        "--topology",
        help="with --kube: mirror the Services' ready endpoints into pgpool's node status "
        "(detach a node whose Service has no ready endpoint, attach it when it has one, "
        "recycle the primary's node on a switchover), or off. The directory source has no "
        "endpoints: topology needs --kube",
        default="mirror",
        choices=["mirror", "off"],
    )
    p.add(
        "--node-settle-seconds",
        help="attach a node only once its Service has been ready this long (a flapping "
        "endpoint must not cause a storm of PCP commands)",
        default=str(NODE_SETTLE_SECONDS),
        type=_nonneg_int,
    )
    p.add(
        "--max-replica-lag",
        help="with --kube and topology mirror: hold node 1 (the replica Service) out of "
        "rotation while every ready replica is more than this many seconds behind the "
        "primary, so reads go to the primary; back once under it for --node-settle-seconds. "
        "0 is off. Needs a monitoring login (--monitor-user, --monitor-password-file)",
        default="0",
        type=_nonneg_int,
    )
    p.add(
        "--monitor-user",
        help="role the replica-lag probe logs in to the primary as (in pg_monitor is enough)",
    )
    p.add("--monitor-password-file", help="file holding --monitor-user's password")
    p.add("--pgpool-pid-file", help="pgpool's pid file (default: pid_file_name of pgpool.conf)")
    p.add("--pod-name", help="this pod's name, for Events (default: $POD_NAME)")
    p.add(
        "--tls-secret",
        help="with --tls secret and --kube: the Secret holding tls.crt, "
        "tls.key and optionally ca.crt",
    )


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
    node_settle_seconds: int = NODE_SETTLE_SECONDS
    min_rollout_interval: int = MIN_ROLLOUT_INTERVAL
    deployment: str | None = None
    max_replica_lag: int = 0
    monitor_user: str | None = None
    monitor_password: str | None = field(default=None, repr=False)


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


def _run_settings(ns: argparse.Namespace, environ: Mapping[str, str]) -> RunSettings:
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
        resync_seconds=int(ns.resync_seconds) or RESYNC_SECONDS,
        watch_timeout_seconds=int(ns.watch_timeout_seconds),
        restart_policy=ns.restart_policy,
        pgpool_pid_file=ns.pgpool_pid_file or None,
        pod_name=ns.pod_name or environ.get("POD_NAME") or None,
        tls_secret=ns.tls_secret or None,
        topology=ns.topology == "mirror",
        node_settle_seconds=int(ns.node_settle_seconds),
        min_rollout_interval=int(ns.min_rollout_interval),
        deployment=ns.deployment or None,
        max_replica_lag=int(ns.max_replica_lag),
        monitor_user=monitor_user,
        monitor_password=monitor_password,
    )


_SECRET_ENV = re.compile(r"(PASSWORD|PASS|SECRET|TOKEN|KEY)$|^PGPOOL_PARAMS_.*PASSWORD", re.I)


def scrubbed_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment for a command exec'd after render: no password (``X_PASSWORD``,
    ``PGPOOL_PCP_PASSWORD``, ``DATA_SOURCE_PASS``, ``PGPOOL_PARAMS_*PASSWORD*``, ...)."""
    return {k: v for k, v in environ.items() if not _SECRET_ENV.search(k)}


def config_volume(environ: Mapping[str, str]) -> Path:
    """The pgpool2_on_k8s image's config volume: ``$PGPOOL_CONF_VOLUME``, default ``/config``."""
    return Path(environ.get("PGPOOL_CONF_VOLUME") or "/config")


def mounted_params(
    environ: Mapping[str, str], params: list[Param]
) -> tuple[list[Param], list[Problem], list[Problem]]:
    """A pgpool.conf in the config volume is used instead of ``PGPOOL_PARAMS_*`` (as the image
    does): (parameters, problems in the file, a warning naming the variables ignored)."""
    path = config_volume(environ) / "pgpool.conf"
    if not path.is_file():
        return params, [], []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: {exc}") from None
    found, problems = pgpoolconf.parse(text, path=str(path))
    warnings = []
    if params:
        names = sorted(str(p.source.name) for p in params)
        warnings.append(
            Problem(
                env_origin(*names),
                f"ignored: the mounted {path} is used instead, as the pgpool2_on_k8s image does",
                fatal=False,
            )
        )
    return found, problems, warnings


def env_params(environ: Mapping[str, str]) -> list[Param]:
    """``PGPOOL_PARAMS_<NAME>=<value>`` → ``<name> = '<value>'`` (environ splits at the first =).
    Two variables naming the same parameter in different case are refused (UsageError)."""
    out: dict[str, Param] = {}
    for key, value in sorted(environ.items()):
        if not key.startswith(PARAMS_PREFIX) or len(key) <= len(PARAMS_PREFIX):
            continue
        name = key[len(PARAMS_PREFIX) :].lower()
        if name in out:
            raise UsageError(
                f"{out[name].source.name} and {key} both set {name}: ambiguous, keep one"
            )
        out[name] = Param(name=name, value=value, source=env_origin(key))
    return list(out.values())


def env_credentials(environ: Mapping[str, str]) -> tuple[list[Credential | Problem], list[Problem]]:
    """Every ``X_USERNAME``/``X_PASSWORD`` pair, X being the text before the first ``_``."""
    prefixes = sorted(
        {
            key.split("_", 1)[0]
            for key, value in environ.items()
            if key.endswith("_USERNAME") and value and "_" in key
        }
    )
    out: list[Credential | Problem] = []
    warnings: list[Problem] = []
    for prefix in prefixes:
        user_var, pass_var = f"{prefix}_USERNAME", f"{prefix}_PASSWORD"
        if not prefix or user_var not in environ:
            continue
        if pass_var not in environ:
            warnings.append(
                Problem(env_origin(user_var), f"{pass_var} is not set: user skipped", fatal=False)
            )
            continue
        out.append(
            Credential(
                user=environ[user_var],
                password=environ[pass_var],
                source=env_origin(user_var, pass_var),
            )
        )
    return out, warnings


def _pcp_users(ns: argparse.Namespace, environ: Mapping[str, str]) -> list[Credential]:
    user = ns.pcp_user or environ.get("PGPOOL_PCP_USER", "")
    if ns.pcp_password_file:
        password = read_password_file("--pcp-password-file", ns.pcp_password_file)
        source = flag_origin(f"--pcp-password-file {ns.pcp_password_file}")
    else:
        password = environ.get("PGPOOL_PCP_PASSWORD", "")
        source = env_origin("PGPOOL_PCP_USER", "PGPOOL_PCP_PASSWORD")
    if not user and not password:
        return []
    return [Credential(user=user, password=password, source=source)]


def _common(ns: argparse.Namespace, environ: Mapping[str, str]) -> Common:
    config_dir = Path(ns.config_dir)
    key_file = ns.pool_key_file or environ.get("PGPOOLKEYFILE") or config_dir / DEFAULT_KEY_NAME
    creds, warnings = env_credentials(environ)
    params, file_problems, ignored = mounted_params(environ, env_params(environ))
    warnings = [*warnings, *ignored]
    ssl_asked = any(p.name == "ssl" and values.boolean(p.value) for p in params)
    pool_passwd = truthy(environ.get("PGPOOL_ENABLE_POOL_PASSWD", "true"))
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
        tls_required=bool(ns.tls_required) or ssl_asked or not pool_passwd,
        pgpool_version=ns.pgpool_version,
        pool_passwd=pool_passwd,
        env_params=tuple(params),
        config_problems=tuple(file_problems),
        env_credentials=tuple(creds),
        pcp_users=tuple(_pcp_users(ns, environ)),
        env_warnings=tuple(warnings),
    )


def parse(argv: Sequence[str], environ: Mapping[str, str]) -> Settings:
    """Parse argv + environ. argparse exits 2 on usage errors; UsageError for the rest."""
    parser = build_parser(environ)
    ns = parser.parse_args(list(argv))
    if ns._env_errors:
        parser.error("; ".join(ns._env_errors))
    common = _common(ns, environ) if ns.command in ("render", "run") else None
    run = _run_settings(ns, environ) if ns.command == "run" else None
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
