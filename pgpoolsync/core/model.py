"""The value types of the desired state: where an input came from (``Origin``), what is wrong
with one (``Problem``), what the sources hand in (``Credential``, ``Backend``, ``Param``,
``Snapshot``, ``Inputs``) and what ``core/build.py`` makes of them (``DesiredState``, ``Outcome``).

Frozen data only: the defaults and parameter rules live in ``params.py``, the credential rules in
``credentials.py``, the pgpool versions in ``versions.py``, building in ``build.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from pgpoolsync.core.tls import TlsMaterial
from pgpoolsync.core.versions import DEFAULT_PGPOOL_VERSION

# The values of Backend.flag: the primary pgpool never fails over from, a replica it never
# fails over to (the operator decides, pgpoolsync mirrors).
PRIMARY_FLAG = "ALWAYS_PRIMARY|DISALLOW_TO_FAILOVER"
REPLICA_FLAG = "DISALLOW_TO_FAILOVER"


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
