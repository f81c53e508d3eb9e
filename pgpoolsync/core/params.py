"""pgpool.conf's parameters: the defaults that fit an operator-managed cluster, the rules a name
and a value must pass, the parameters derived from backends and TLS, and what the target pgpool
version reads (the facts are in ``versions.py``). Each refusal is a ``Problem`` naming its source.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from pgpoolsync.core import values, versions
from pgpoolsync.core.model import (
    DEFAULT_ORIGIN,
    PRIMARY_FLAG,
    REPLICA_FLAG,
    Backend,
    Inputs,
    Origin,
    Param,
    Problem,
    flag_origin,
)
from pgpoolsync.core.tls import CA_FILE, CERT_FILE, KEY_FILE

_PARAM_NAME = re.compile(r"^[a-z0-9_]+$")

# Defaults for pgpool in front of an operator that owns failover (docs/DESIGN.md).
DEFAULT_PARAMS: tuple[tuple[str, str], ...] = (
    ("backend_clustering_mode", "streaming_replication"),
    ("listen_addresses", "*"),
    ("port", "9999"),
    # PCP on loopback, as pgpool's own default and the pgpool2_on_k8s image: the sidecar reaches
    # it on 127.0.0.1, nothing outside the Pod needs it.
    ("pcp_listen_addresses", "localhost"),
    ("pcp_port", "9898"),
    ("num_init_children", "32"),
    ("max_pool", "4"),
    ("connection_cache", "on"),
    ("load_balance_mode", "on"),
    ("failover_on_backend_error", "off"),
    # pgpool's own failover stays off: the operator decides, pgpoolsync mirrors (topology.py).
    # connect_timeout bounds only pgpool's non-retrying connects (health and streaming checks);
    # a session's connect to a backend whose packets are dropped retries until the kernel
    # gives up (~2 min): detaching the node is what bounds that (docs/pgpool-facts.md).
    ("connect_timeout", "3000"),
    ("sr_check_period", "0"),
    ("health_check_period", "0"),
    ("enable_pool_hba", "on"),
    ("pool_passwd", "pool_passwd"),
    ("ssl", "off"),
)


# Parameters pgpool reads as integers, with the smallest value it accepts; a bad value is
# refused here with the variable's name instead of being found by pgpool (or by pgpoolsync
# itself: it reads pcp_port to reach PCP).
INT_PARAMS: dict[str, int] = {
    "port": 1,
    "pcp_port": 1,
    "num_init_children": 1,
    "max_pool": 1,
    "reserved_connections": 0,
    "child_life_time": 0,
    "child_max_connections": 0,
    "connection_life_time": 0,
    "client_idle_limit": 0,
    "authentication_timeout": 0,
    "connect_timeout": 0,
    "listen_backlog_multiplier": 1,
    "sr_check_period": 0,
    "health_check_period": 0,
    "health_check_timeout": 0,
    "health_check_max_retries": 0,
    "health_check_retry_delay": 0,
    "delay_threshold": 0,
    "search_primary_node_timeout": 0,
}
_PORT_PARAMS = frozenset({"port", "pcp_port"})
_BACKEND_INT = re.compile(r"^backend_(port|weight)\d+$")


def _int_problem(param: Param) -> Problem | None:
    low = INT_PARAMS.get(param.name)
    if low is None and _BACKEND_INT.match(param.name):
        low = 0
    if low is None:
        return None
    try:
        number = int(param.value.strip())
    except ValueError:
        return Problem(param.source, f"{param.name} must be a whole number, not {param.value!r}")
    high = 65535 if param.name in _PORT_PARAMS or param.name.startswith("backend_port") else None
    if number < low or (high is not None and number > high):
        bounds = f"{low}-{high}" if high is not None else f"at least {low}"
        return Problem(param.source, f"{param.name} must be {bounds}, not {number}")
    return None


def check_param(param: Param) -> Problem | None:
    if not _PARAM_NAME.match(param.name):
        return Problem(param.source, f"parameter name {param.name!r} is not [a-z0-9_]+")
    bad = values.forbidden_char(param.value)
    if bad:
        return Problem(param.source, f"value of {param.name} contains {bad}")
    if "'" in param.value:
        return Problem(
            param.source, f"value of {param.name} contains a single quote (pgpool cannot escape it)"
        )
    return _int_problem(param)


def version_params(params: list[Param], *, version: str) -> tuple[list[Param], list[Problem]]:
    """Renamed parameters under both names (each pgpool reads the one it knows) or under the one
    the target version reads; a warning for each parameter the target version does not know."""
    by_name = {p.name: p for p in params}
    out = list(params)
    problems: list[Problem] = []
    target = versions.version_key(version)
    for old, new, since, both in versions.RENAMED_PARAMS:
        a, b = by_name.get(old), by_name.get(new)
        if a is not None and b is not None and a.value != b.value:
            problems.append(
                Problem(
                    b.source,
                    f"{old} and {new} (its name from pgpool {since}) have different values: "
                    "set one of them",
                )
            )
            continue
        given = b or a
        if both:
            out += [
                Param(n, given.value, given.source)
                for n in (old, new)
                if given and n not in by_name
            ]
            continue
        keep = new if target >= versions.version_key(since) else old
        out = [p for p in out if p.name not in (old, new)]
        if given is not None:
            out.append(Param(keep, given.value, given.source))
        elif keep == "work_dir":
            # Beside the pid file when its path is absolute (a relative one is pgpool.conf's
            # directory's, which the core does not know): pgpool's own run directory otherwise.
            pid_file = by_name.get("pid_file_name")
            pid_path = pid_file.value if pid_file else ""
            if not pid_path.startswith("/"):
                pid_path = versions.PGPOOL_PID_FILE
            out.append(Param(keep, pid_path.rpartition("/")[0] or "/", DEFAULT_ORIGIN))
    for p in params:
        added = versions.ADDED_PARAMS.get(p.name)
        if added is not None and versions.version_key(added) > target:
            problems.append(
                Problem(
                    p.source,
                    f"{p.name} exists from pgpool {added}: pgpool {version} ignores it "
                    "(--pgpool-version says which pgpool reads the files)",
                    fatal=False,
                )
            )
    return out, problems


def backend_params(backends: Sequence[Backend]) -> list[Param]:
    out: list[Param] = []
    for i, b in enumerate(backends):
        src = Origin("backend", str(i))
        out += [
            Param(f"backend_hostname{i}", b.host, src),
            Param(f"backend_port{i}", str(b.port), src),
            Param(f"backend_weight{i}", str(b.weight), src),
            Param(f"backend_flag{i}", b.flag, src),
        ]
    return out


_BACKEND_HOSTNAME = re.compile(r"^backend_hostname(\d+)$")


def backend_defaults(params: Sequence[Param]) -> list[Param]:
    """Port, weight and flag for a backend given only its hostname (``PGPOOL_PARAMS_BACKEND_
    HOSTNAME0`` alone, as pgpool2_on_k8s's minimal Deployment): pgpool's compiled-in
    ``backend_port`` is 0, which marks the slot unused, so pgpool would start with no backend."""
    names = {p.name for p in params}
    out: list[Param] = []
    for p in params:
        m = _BACKEND_HOSTNAME.match(p.name)
        if not m or not p.value:
            continue
        i = m.group(1)
        src = Origin("default", f"for {p.source}")
        for name, value in (
            (f"backend_port{i}", "5432"),
            (f"backend_weight{i}", "1"),
            (f"backend_flag{i}", PRIMARY_FLAG if i == "0" else REPLICA_FLAG),
        ):
            if name not in names:
                out.append(Param(name, value, src))
    return out


_PERIOD_CHECKS = (("sr_check_period", "sr_check"), ("health_check_period", "health_check"))


def check_monitoring_users(params: Sequence[Param], users: Iterable[str]) -> list[Problem]:
    """pgpool's streaming-replication and health checks log in as ``*_check_user``: with a
    period above 0 that user must be set and have a password (``*_check_password`` or an entry
    in pool_passwd), as the pgpool2_on_k8s image checks before it starts pgpool."""
    by_name = {p.name: p for p in params}
    known = set(users)
    out: list[Problem] = []
    for period_name, prefix in _PERIOD_CHECKS:
        period = by_name.get(period_name)
        try:
            active = period is not None and int(period.value.strip() or "0") > 0
        except ValueError:
            continue  # reported by check_param
        if not active or period is None:
            continue
        user = by_name.get(f"{prefix}_user")
        password = by_name.get(f"{prefix}_password")
        if user is None or not user.value:
            out.append(Problem(period.source, f"{period_name} > 0 needs {prefix}_user"))
        elif (password is None or not password.value) and user.value not in known:
            out.append(
                Problem(
                    user.source,
                    f"{prefix}_user {user.value!r} has no password: set {prefix}_password or "
                    "give the user a credential (pool_passwd)",
                )
            )
    return out


def merge_params(layers: Iterable[Iterable[Param]]) -> tuple[list[Param], list[Problem]]:
    """Later layers override earlier ones; order of first appearance is kept."""
    merged: dict[str, Param] = {}
    problems: list[Problem] = []
    for layer in layers:
        for param in layer:
            problem = check_param(param)
            if problem:
                problems.append(problem)
                continue
            merged[param.name] = param
    return list(merged.values()), problems


_TLS_ORIGIN = flag_origin("--tls")


def tls_params(inputs: Inputs) -> list[Param]:
    """ssl = on and the file paths when TLS material is present (pgpool reads them at start)."""
    if inputs.tls is None:
        return []
    d = inputs.tls_dir.rstrip("/")
    out = [
        Param("ssl", "on", _TLS_ORIGIN),
        Param("ssl_cert", f"{d}/{CERT_FILE}", _TLS_ORIGIN),
        Param("ssl_key", f"{d}/{KEY_FILE}", _TLS_ORIGIN),
    ]
    if inputs.tls.ca_pem:
        out.append(Param("ssl_ca_cert", f"{d}/{CA_FILE}", _TLS_ORIGIN))
    return out
