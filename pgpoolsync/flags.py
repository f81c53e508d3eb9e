"""The command line's flags: argparse only. Every flag ``--some-flag`` has an environment twin
``PGPOOLSYNC_SOME_FLAG`` (envflags.py; the flag wins). Defaults are written once, here or in the
image's conventions (sources/env.py ``ImageEnv``, read before the parser is built); settings.py
turns the parsed flags into Settings.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping

from pgpoolsync.core import hba, passwd, tls, versions
from pgpoolsync.core.presets import PRESETS
from pgpoolsync.envflags import EnvParser, add_top_flags, nonneg_int, port
from pgpoolsync.exporter import command as exporter_command
from pgpoolsync.sources.env import ImageEnv

# Defaults written once: the flags, RunSettings and the parts they configure take them from here.
RESYNC_SECONDS = 300  # a full resync, whatever the watches said
NODE_SETTLE_SECONDS = 3  # an endpoint ready this long before its node is attached
MIN_ROLLOUT_INTERVAL = 900  # seconds between two rollouts any replica asks for
DEFAULT_KEY_NAME = ".pgpoolkey"


def add_common_flags(p: EnvParser, image: ImageEnv) -> None:
    p.errors.extend(image.flag_errors)
    p.add(
        "--config-dir",
        help="directory pgpool reads its files from (default: $PGPOOL_INSTALL_DIR/etc when "
        "set, as the pgpool2_on_k8s image, else /etc/pgpool)",
        default=image.default_config_dir,
    )
    p.add(
        "--secrets-dir",
        help="directory with one sub-directory per credential (username or user, password), "
        "laid out like mounted Secret volumes",
    )
    p.add("--primary-host", help="backend 0 (ALWAYS_PRIMARY|DISALLOW_TO_FAILOVER) host")
    p.add("--primary-port", help="backend 0 port", default="5432", type=port)
    p.add("--replica-host", help="backend 1 (DISALLOW_TO_FAILOVER) host; none: no replica")
    p.add("--replica-port", help="backend 1 port", default="5432", type=port)
    p.add(
        "--replica-weight",
        help="backend_weight1: share of read load for the replica Service",
        default="1",
        type=nonneg_int,
    )
    p.add(
        "--password-format",
        help="pool_passwd entries: aes (works with SCRAM and md5 backends), md5 (md5 backends "
        "only), text (clear text), verbatim (the values are md5…/AES…/TEXT… entries and the PCP "
        "password an md5 digest already: written as they are; the default when "
        "PGPOOL_SKIP_PASSWORD_ENCRYPTION=true, as the image)",
        default=image.default_format,
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
        default=image.default_auth_method,
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
    p.add(
        "--pool-hba-file",
        help="use this pool_hba.conf (validated) instead of the default (default: "
        "$PGPOOL_CONF_VOLUME/pool_hba.conf when mounted, as the image)",
        default=str(image.mounted_hba) if image.mounted_hba else None,
    )
    p.add(
        "--tls",
        help="TLS for clients and backends: auto (a self-signed pair generated once and kept "
        "in CONFIG_DIR), secret (tls.crt/tls.key[/ca.crt] from --tls-dir or --tls-secret), off "
        "(default: secret when $PGPOOL_CONF_VOLUME/tls holds a pair, as the image, else auto)",
        default="secret" if image.mounted_tls else "auto",
        choices=tls.MODES,
    )
    p.add(
        "--tls-dir",
        help="directory with tls.crt, tls.key and optionally ca.crt (a mounted "
        "cert-manager Secret)",
        default=str(image.mounted_tls) if image.mounted_tls else None,
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


def build_parser(environ: Mapping[str, str], *, image: ImageEnv) -> argparse.ArgumentParser:
    """Every command's flags with their env twins; the image's conventions (read beforehand,
    sources/env.py) give the defaults, so building the parser reads no file."""
    parser = argparse.ArgumentParser(
        prog="pgpoolsync",
        description="Keeps Pgpool-II's configuration and pool_passwd in step with the "
        "credentials and Services of an operator-managed PostgreSQL cluster.",
    )
    top = EnvParser(parser, environ)
    add_top_flags(top)
    subs = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    render = subs.add_parser(
        "render",
        help="render pgpool.conf, pool_hba.conf, pool_passwd and pcp.conf once",
        description="Render pgpool's four files once into --config-dir; exit 1 on bad input "
        "with no file changed.",
    )
    render_env = EnvParser(render, environ)
    add_common_flags(render_env, image)
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
    run_env = EnvParser(run, environ)
    add_common_flags(run_env, image)
    add_run_flags(run_env)
    exp_env = exporter_command.add_parser(subs, environ)
    parser.set_defaults(
        _env_errors=top.errors + render_env.errors + run_env.errors + exp_env.errors
    )
    return parser


def add_run_flags(p: EnvParser) -> None:
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
    p.add("--pcp-port", help="pgpool's PCP port (default: pcp_port of pgpool.conf)", type=port)
    p.add("--listen", help="address of /metrics, /healthz, /readyz", default=":9720")
    p.add("--once", help="apply once and exit (init container)", action="store_true")
    p.add(
        "--resync-seconds",
        help="full resync period (0: the default)",
        default=str(RESYNC_SECONDS),
        type=nonneg_int,
    )
    p.add(
        "--watch-timeout-seconds",
        help="server-side watch timeout (client read timeout is 10%% longer)",
        default="60",
        type=nonneg_int,
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
        type=nonneg_int,
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
        type=nonneg_int,
    )
    p.add(
        "--max-replica-lag",
        help="with --kube and topology mirror: hold node 1 (the replica Service) out of "
        "rotation while every ready replica is more than this many seconds behind the "
        "primary, so reads go to the primary; back once under it for --node-settle-seconds. "
        "0 is off. Needs a monitoring login (--monitor-user, --monitor-password-file)",
        default="0",
        type=nonneg_int,
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
