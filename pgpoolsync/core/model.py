"""The desired state of pgpool's configuration, and building it from raw inputs.

Owns the frozen data (``Credential``, ``Backend``, ``Param``, ``DesiredState``), the defaults
that fit an operator-managed cluster, and every validation rule, each failure reported as a
``Problem`` that names its source (a Secret, a directory, an environment variable). Pure: no I/O,
no kubernetes types; sources hand in plain strings and bytes.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pgpoolsync.core import hba, passwd, values
from pgpoolsync.core.tls import CA_FILE, CERT_FILE, KEY_FILE, TlsMaterial

PRIMARY_FLAG = "ALWAYS_PRIMARY|DISALLOW_TO_FAILOVER"
REPLICA_FLAG = "DISALLOW_TO_FAILOVER"
USER_KEYS = ("username", "user")
PASSWORD_KEYS = ("password",)

_PARAM_NAME = re.compile(r"^[a-z0-9_]+$")
_FORBIDDEN = {"\n": "a newline", "\r": "a carriage return", "\0": "a NUL byte"}

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


# pgpool versions the files are written for (CI runs 4.6 and 4.3; 4.7 was checked once by hand,
# docs/pgpool-facts.md), and the one assumed when none is given: what the images run.
PGPOOL_VERSIONS = ("4.3", "4.4", "4.5", "4.6", "4.7")
DEFAULT_PGPOOL_VERSION = "4.6"
# Renamed parameters: (old name, new name, the version that renamed it, written under both).
# socket_dir: the newer pgpool ignores the old name (an INFO line only) and the older one the new
# name, so both are written. logdir: under the one name the target reads, with the value given
# under either, since 4.7 warns about `logdir`; 4.7 always gets a work_dir (4.7.0 with neither
# writes /pgpool_status, docs/pgpool-facts.md).
RENAMED_PARAMS = (
    ("socket_dir", "unix_socket_directories", "4.4", True),
    ("logdir", "work_dir", "4.7", False),
)
# pgpool's compiled-in pid_file_name (DEFAULT_PID_FILE_NAME, src/include/pool.h): work_dir's
# default for 4.7 is its directory, the run directory pgpool must be able to write anyway.
PGPOOL_PID_FILE = "/var/run/pgpool/pgpool.pid"
# Parameters a pgpool older than the version given does not know (and ignores); read in
# src/config/pool_config_variables.c of each stable branch.
ADDED_PARAMS = {
    "process_management_mode": "4.4",
    "process_management_strategy": "4.4",
    "min_spare_children": "4.4",
    "max_spare_children": "4.4",
    "delay_threshold_by_time": "4.4",
    "trusted_server_command": "4.4",
    "unix_socket_group": "4.4",
    "unix_socket_permissions": "4.4",
    "log_pcp_processes": "4.5",
    "user_redirect_preference_list": "4.5",
    "log_backend_messages": "4.6",
    "recovery_database": "4.7",
    "wd_listen_address": "4.7",
    "wd_listen_port": "4.7",
    "wd_heartbeat_listen_addresses": "4.7",
    "wd_heartbeat_listen_port": "4.7",
}


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in version.split(".")[:2])


@dataclass(frozen=True, order=True)
class Origin:
    """Where an input came from: a Secret, a Service, an env var, a flag, a file, ...

    Structured so that reporting can find the object an Event belongs on without parsing text:
    ``kind`` is one of ``secret``, ``service``, ``env``, ``flag``, ``file``, ``secrets dir``,
    ``default``, ``backend``, ``pgpool``; ``namespace`` only for Kubernetes objects.
    """

    kind: str
    name: str = ""
    namespace: str = ""

    def __str__(self) -> str:
        if self.kind in ("flag", "file"):
            return self.name
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.kind} {where}".strip()


def secret_origin(namespace: str, name: str) -> Origin:
    return Origin("secret", name, namespace)


def service_origin(namespace: str, name: str) -> Origin:
    return Origin("service", name, namespace)


def env_origin(*names: str) -> Origin:
    return Origin("env", "/".join(names))


def flag_origin(text: str) -> Origin:
    return Origin("flag", text)


DEFAULT_ORIGIN = Origin("default")


@dataclass(frozen=True)
class Problem:
    """Something wrong with one input. ``fatal`` problems make ``render`` exit 1."""

    source: Origin
    message: str
    fatal: bool = True

    def __str__(self) -> str:
        return f"{self.source}: {self.message}"


@dataclass(frozen=True)
class Credential:
    user: str
    password: str = field(repr=False)
    source: Origin = DEFAULT_ORIGIN


@dataclass(frozen=True)
class Backend:
    host: str
    port: int
    flag: str
    weight: int = 1
    # The Service's ready endpoints (core/topology.endpoint_key: address, port, pod), sorted;
    # None when not observed (static flags).
    ready: tuple[str, ...] | None = None
    source: Origin | None = None  # the Service


@dataclass(frozen=True)
class NodeTarget:
    """Where a backend node should be: in rotation when its Service has a ready endpoint."""

    node_id: int
    ready: tuple[str, ...]  # the Service's ready endpoints (topology.endpoint_key), sorted
    source: Origin  # the Service
    primary: bool = False  # the ALWAYS_PRIMARY node: only its Service's pods take writes

    @property
    def up(self) -> bool:
        return bool(self.ready)


@dataclass(frozen=True)
class Param:
    """One pgpool.conf setting and where it came from (a flag, a default, an env var)."""

    name: str
    value: str
    source: Origin


@dataclass(frozen=True)
class DesiredState:
    params: tuple[tuple[str, str], ...]
    credentials: tuple[Credential, ...]
    password_format: str
    hba_rules: tuple[str, ...]
    pcp_users: tuple[Credential, ...]
    tls: TlsMaterial | None = None
    nodes: tuple[NodeTarget, ...] = ()  # topology to mirror (empty: backends are static)
    # (user, pool_passwd secret field) kept from the last good files for a user whose new
    # credential is bad: a broken rotation never locks the role out.
    kept_entries: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Snapshot:
    """What a source holds right now, as model values."""

    credentials: tuple[Credential | Problem, ...] = ()
    backends: tuple[Backend, ...] | None = None  # None: the static flags
    problems: tuple[Problem, ...] = ()
    tls: TlsMaterial | None = None


@dataclass(frozen=True)
class Inputs:
    """Everything the desired state is built from, already read by the sources."""

    backends: tuple[Backend, ...] = ()
    params: tuple[Param, ...] = ()
    credentials: tuple[Credential | Problem, ...] = ()
    pcp_users: tuple[Credential, ...] = ()
    password_format: str = "aes"
    auth_method: str = "scram-sha-256"
    hba_text: str | None = None
    # Problems found by a source (e.g. the primary Service is missing); fatal ones block a state.
    problems: tuple[Problem, ...] = ()
    tls: TlsMaterial | None = None
    tls_dir: str = "/etc/pgpool"  # where pgpool finds the TLS files (the config dir)
    tls_required: bool = False
    pgpool_version: str = DEFAULT_PGPOOL_VERSION  # the pgpool that reads the files
    # False: no pool_passwd entries; clients send clear-text passwords, over TLS only, that the
    # backends check (PGPOOL_ENABLE_POOL_PASSWD=false in pgpool2_on_k8s).
    pool_passwd: bool = True
    # user → secret field in the pool_passwd on disk (the last good files), for users whose
    # credential is bad now.
    previous_entries: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    """The built state (None when a fatal config problem prevents it) and every problem seen."""

    state: DesiredState | None
    problems: tuple[Problem, ...]

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.fatal)

    @property
    def warnings(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if not p.fatal)


def _forbidden_char(value: str) -> str | None:
    for char, name in _FORBIDDEN.items():
        if char in value:
            return name
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # os.environ carries undecodable bytes as lone surrogates.
        return "bytes that are not valid UTF-8"
    return None


def _decode(source: Origin, key: str, raw: bytes | str) -> str | Problem:
    if isinstance(raw, str):
        return raw
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return Problem(source, f"key {key!r} is not valid UTF-8")


def credential_from_data(
    source: Origin,
    data: Mapping[str, bytes | str],
    *,
    user_keys: Sequence[str] = USER_KEYS,
    password_keys: Sequence[str] = PASSWORD_KEYS,
    fixed_users: Mapping[str, str] | None = None,
) -> Credential | Problem:
    """A credential from a Secret's data; the role name comes from the data, not the name.

    ``fixed_users`` maps a password key to a role name for Secrets that hold no user name.
    """
    password_key = next((k for k in password_keys if k in data), None)
    if password_key is None:
        return Problem(source, f"no password key (expected one of {', '.join(password_keys)})")
    if fixed_users and password_key in fixed_users:
        user: str | Problem = fixed_users[password_key]
    else:
        user_key = next((k for k in user_keys if k in data), None)
        if user_key is None:
            return Problem(source, f"no user name key (expected one of {', '.join(user_keys)})")
        user = _decode(source, user_key, data[user_key])
    if isinstance(user, Problem):
        return user
    password = _decode(source, password_key, data[password_key])
    if isinstance(password, Problem):
        return password
    return Credential(user=user, password=password, source=source)


SERVICE_PORT_NAMES = ("postgres", "postgresql", "pgport")


def service_port_entry(service: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The Service port pgpool uses: the one named postgres/postgresql/pgport, else the only one."""
    ports = (service.get("spec") or {}).get("ports") or []
    for port in ports:
        if port.get("name") in SERVICE_PORT_NAMES:
            return dict(port)
    if len(ports) == 1:
        return dict(ports[0])
    return None


def service_port(service: Mapping[str, Any]) -> int:
    """The port of ``service_port_entry``, else 5432."""
    entry = service_port_entry(service)
    return int(entry["port"]) if entry is not None else 5432


def service_host(service: Mapping[str, Any], *, address: str) -> str | None:
    """``{svc}.{ns}.svc`` (survives failover and Pod restarts), or ``spec.clusterIP``."""
    meta = service.get("metadata") or {}
    if address == "cluster-ip":
        ip = (service.get("spec") or {}).get("clusterIP")
        return ip if ip and ip != "None" else None
    return f"{meta.get('name')}.{meta.get('namespace')}.svc"


@functools.lru_cache(maxsize=65536)
def check_credential(cred: Credential, *, password_format: str) -> Problem | None:
    """Why this credential cannot go into pool_passwd, or None. Never quotes the password.

    Memoised: an unchanged credential is not validated again on every pass.
    """
    src = cred.source
    if not cred.user:
        return Problem(src, "user name is empty")
    bad = _forbidden_char(cred.user)
    if bad:
        return Problem(src, f"user name contains {bad}")
    if len(cred.user.encode()) > passwd.MAX_USER_BYTES:
        return Problem(src, f"user name {cred.user!r} is longer than {passwd.MAX_USER_BYTES} bytes")
    if not cred.password:
        return Problem(src, f"password of user {cred.user!r} is empty")
    bad = _forbidden_char(cred.password)
    if bad:
        return Problem(src, f"password of user {cred.user!r} contains {bad}")
    if password_format == "verbatim":
        if not passwd.is_entry(cred.password):
            return Problem(
                src,
                f"value of user {cred.user!r} is not a pool_passwd entry (md5 + 32 hex digits, "
                "AES + base64, or TEXT + password), as PGPOOL_SKIP_PASSWORD_ENCRYPTION=true "
                "(--password-format verbatim) needs",
            )
        return None
    if passwd.looks_hashed(cred.password):
        return Problem(
            src,
            f"password of user {cred.user!r} is already a hash (md5/SCRAM), not a password; "
            "pgpool needs the clear password: user skipped",
            fatal=False,
        )
    size = len(cred.password.encode())
    if password_format == "aes" and size > passwd.MAX_AES_PASSWORD_BYTES:
        return Problem(
            src,
            f"password of user {cred.user!r} is {size} bytes; pgpool's AES entries hold at "
            f"most {passwd.MAX_AES_PASSWORD_BYTES}",
        )
    if password_format == "text" and size > passwd.MAX_TEXT_PASSWORD_BYTES:
        return Problem(
            src,
            f"password of user {cred.user!r} is {size} bytes; pgpool's TEXT entries hold at "
            f"most {passwd.MAX_TEXT_PASSWORD_BYTES}",
        )
    return None


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
    bad = _forbidden_char(param.value)
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
    target = _version_key(version)
    for old, new, since, both in RENAMED_PARAMS:
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
        keep = new if target >= _version_key(since) else old
        out = [p for p in out if p.name not in (old, new)]
        if given is not None:
            out.append(Param(keep, given.value, given.source))
        elif keep == "work_dir":
            pid_file = by_name.get("pid_file_name")
            run_dir = (pid_file.value if pid_file else PGPOOL_PID_FILE).rpartition("/")[0]
            out.append(Param(keep, run_dir or "/", DEFAULT_ORIGIN))
    for p in params:
        added = ADDED_PARAMS.get(p.name)
        if added is not None and _version_key(added) > target:
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


def dedupe_credentials(creds: Iterable[Credential]) -> tuple[list[Credential], list[Problem]]:
    """One entry per user; the same user with two different passwords is refused."""
    by_user: dict[str, list[Credential]] = {}
    for cred in creds:
        by_user.setdefault(cred.user, []).append(cred)
    kept: list[Credential] = []
    problems: list[Problem] = []
    for user in sorted(by_user):
        group = by_user[user]
        if len({c.password for c in group}) > 1:
            sources = ", ".join(str(c.source) for c in group)
            problems.extend(
                Problem(c.source, f"user {user!r} has different passwords in {sources}: skipped")
                for c in group
            )
            continue
        kept.append(group[0])
    return kept, problems


def build(inputs: Inputs) -> Outcome:
    """Validate everything and build the desired state.

    Credential problems drop that credential only; parameter, pool_hba or PCP problems prevent a
    state (``state`` is None) so that the last good files stay in place.
    """
    problems: list[Problem] = list(inputs.problems)
    if inputs.password_format not in passwd.FORMATS:
        problems.append(
            Problem(flag_origin("--password-format"), f"unknown format {inputs.password_format!r}")
        )
    if not inputs.pool_passwd and inputs.tls is None:
        problems.append(
            Problem(
                env_origin("PGPOOL_ENABLE_POOL_PASSWD"),
                "false sends clients' passwords in clear text: it needs TLS (--tls auto or "
                "secret, not off)",
            )
        )
    if inputs.pool_passwd and inputs.auth_method not in hba.AUTH_METHODS:
        problems.append(
            Problem(flag_origin("--auth-method"), f"unknown method {inputs.auth_method!r}")
        )
    if any(p.fatal for p in problems):
        return Outcome(None, tuple(problems))

    defaults = [Param(n, v, DEFAULT_ORIGIN) for n, v in DEFAULT_PARAMS]
    params, param_problems = merge_params(
        [defaults, backend_params(inputs.backends), tls_params(inputs), inputs.params]
    )
    problems += param_problems
    if inputs.pgpool_version not in PGPOOL_VERSIONS:
        problems.append(
            Problem(
                flag_origin("--pgpool-version"),
                f"unsupported version {inputs.pgpool_version!r} "
                f"(supported: {', '.join(PGPOOL_VERSIONS)})",
            )
        )
        return Outcome(None, tuple(problems))
    params, version_problems = version_params(params, version=inputs.pgpool_version)
    problems += version_problems
    params += backend_defaults(params)
    if not any(p.name == "backend_hostname0" for p in params):
        problems.append(
            Problem(
                flag_origin("--primary-host"),
                "no primary backend (backend_hostname0) is configured",
            )
        )
    ssl = any(p.name == "ssl" and values.boolean(p.value) for p in params)

    if inputs.hba_text is None:
        rules = hba.default_rules(
            auth_method=inputs.auth_method if inputs.pool_passwd else hba.PASSWORD_OVER_TLS,
            tls=ssl,
            tls_required=inputs.tls_required,
        )
    else:
        problems += [
            Problem(Origin("file", "pool_hba.conf"), e)
            for e in hba.validate(inputs.hba_text, ssl=ssl)
        ]
        rules = hba.rules_from_text(inputs.hba_text)
        if not inputs.pool_passwd and not any(r.split()[:1] == ["hostssl"] for r in rules):
            problems.append(
                Problem(
                    Origin("file", "pool_hba.conf"),
                    "with PGPOOL_ENABLE_POOL_PASSWD=false clients send clear-text passwords: "
                    "add hostssl lines to secure all connections",
                )
            )

    pcp_users: list[Credential] = []
    for pcp in inputs.pcp_users:
        problem = _check_pcp_user(pcp)
        verbatim = inputs.password_format == "verbatim"
        if problem is None and verbatim and not passwd.is_md5_hex(pcp.password):
            problem = Problem(
                pcp.source,
                "PCP password is not an md5 hex digest (32 hex digits), as "
                "PGPOOL_SKIP_PASSWORD_ENCRYPTION=true needs",
            )
        if problem:
            problems.append(problem)
        else:
            pcp_users.append(pcp)

    valid: list[Credential] = []
    for item in inputs.credentials if inputs.pool_passwd else ():
        if isinstance(item, Problem):
            problems.append(item)
            continue
        problem = check_credential(item, password_format=inputs.password_format)
        if problem:
            problems.append(problem)
        else:
            valid.append(item)
    creds, dup_problems = dedupe_credentials(valid)
    problems += dup_problems
    written = {c.user for c in creds}  # once: this runs on every pass, for every Secret
    bad_users = {
        item.user
        for item in inputs.credentials
        if isinstance(item, Credential) and item.user not in written
    }
    kept = tuple(
        (user, inputs.previous_entries[user])
        for user in sorted(bad_users)
        if user in inputs.previous_entries
    )
    problems += [
        Problem(
            Origin("file", "pool_passwd"),
            f"user {user!r} keeps its entry from the last good pool_passwd",
            fatal=False,
        )
        for user, _ in kept
    ]

    problems += check_monitoring_users(params, (c.user for c in creds))
    credential_sources = {c.source for c in inputs.credentials}
    config_broken = any(p.fatal and p.source not in credential_sources for p in problems)
    if config_broken:
        return Outcome(None, tuple(problems))
    state = DesiredState(
        params=tuple((p.name, p.value) for p in params),
        credentials=tuple(creds),
        password_format=inputs.password_format,
        hba_rules=tuple(rules),
        pcp_users=tuple(pcp_users),
        tls=inputs.tls,
        kept_entries=kept,
        nodes=tuple(
            NodeTarget(
                i, b.ready, b.source or Origin("backend", str(i)), "ALWAYS_PRIMARY" in b.flag
            )
            for i, b in enumerate(inputs.backends)
            if b.ready is not None
        ),
    )
    return Outcome(state, tuple(problems))


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


def _check_pcp_user(cred: Credential) -> Problem | None:
    if not cred.user or not cred.password:
        return Problem(cred.source, "PCP user name and password must both be set")
    for value, what in ((cred.user, "PCP user name"), (cred.password, "PCP password")):
        bad = _forbidden_char(value)
        if bad:
            return Problem(cred.source, f"{what} contains {bad}")
    if ":" in cred.user:
        return Problem(cred.source, "PCP user name contains ':'")
    if cred.user.startswith("#") or cred.user != cred.user.strip():
        # pcp.conf treats a line starting with '#' as a comment: the user would vanish.
        return Problem(cred.source, "PCP user name starts with '#' or has surrounding spaces")
    return None
