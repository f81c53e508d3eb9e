"""Converting raw source objects into model values. Pure: no I/O, no kubernetes types.

Secret data (bytes by key) → a credential or a problem, by the key names a preset gives;
the Kubernetes caches (lists of plain API dicts: Secrets, Services, EndpointSlices) → a
``Snapshot``; TLS material from a Secret's or directory's data. The only reader of raw
Kubernetes objects: the core sees model values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pgpoolsync.core import model, tls, topology
from pgpoolsync.core.model import Snapshot
from pgpoolsync.core.presets import Preset

USER_KEYS = ("username", "user")
PASSWORD_KEYS = ("password",)


@dataclass(frozen=True)
class KeyConfig:
    user_keys: tuple[str, ...] = USER_KEYS
    password_keys: tuple[str, ...] = PASSWORD_KEYS
    fixed_users: tuple[tuple[str, str], ...] = ()

    def credential(
        self, source: model.Origin, data: Mapping[str, bytes | str]
    ) -> model.Credential | model.Problem:
        return credential_from_data(
            source,
            data,
            user_keys=self.user_keys,
            password_keys=self.password_keys,
            fixed_users=dict(self.fixed_users),
        )


def _decode(source: model.Origin, key: str, raw: bytes | str) -> str | model.Problem:
    if isinstance(raw, str):
        return raw
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return model.Problem(source, f"key {key!r} is not valid UTF-8")


def credential_from_data(
    source: model.Origin,
    data: Mapping[str, bytes | str],
    *,
    user_keys: Sequence[str] = USER_KEYS,
    password_keys: Sequence[str] = PASSWORD_KEYS,
    fixed_users: Mapping[str, str] | None = None,
) -> model.Credential | model.Problem:
    """A credential from a Secret's data; the role name comes from the data, not the name.

    ``fixed_users`` maps a password key to a role name for Secrets that hold no user name.
    """
    password_key = next((k for k in password_keys if k in data), None)
    if password_key is None:
        return model.Problem(
            source, f"no password key (expected one of {', '.join(password_keys)})"
        )
    if fixed_users and password_key in fixed_users:
        user: str | model.Problem = fixed_users[password_key]
    else:
        user_key = next((k for k in user_keys if k in data), None)
        if user_key is None:
            return model.Problem(
                source, f"no user name key (expected one of {', '.join(user_keys)})"
            )
        user = _decode(source, user_key, data[user_key])
    if isinstance(user, model.Problem):
        return user
    password = _decode(source, password_key, data[password_key])
    if isinstance(password, model.Problem):
        return password
    return model.Credential(user=user, password=password, source=source)


def keys_for(preset: Preset | None) -> KeyConfig:
    """The Secret key names an operator preset uses (the defaults without one)."""
    if preset is None:
        return KeyConfig()
    return KeyConfig(
        user_keys=preset.user_keys,
        password_keys=preset.password_keys,
        fixed_users=preset.fixed_users,
    )


@dataclass(frozen=True)
class KubeNames:
    namespace: str
    primary_service: str
    replica_service: str | None
    service_address: str  # "dns" | "cluster-ip"
    topology: bool = True  # mirror the Services' ready endpoints into pgpool's node status


def kube_snapshot(
    *,
    names: KubeNames,
    keys: KeyConfig,
    secrets: Callable[[], list[dict[str, Any]]],
    services: Callable[[], list[dict[str, Any]]],
    slices: Callable[[], list[dict[str, Any]]],
    primary_slices: Callable[[], list[dict[str, Any]]] = list,
    secret_data: Callable[[Mapping[str, Any]], dict[str, bytes]],
    static_backends: Sequence[model.Backend] = (),
) -> Callable[[], Snapshot]:
    """A snapshot function over the watchers' caches (each a list of raw API dicts)."""

    # name → (resourceVersion, converted): unchanged Secrets are not decoded again.
    converted: dict[str, tuple[str, model.Credential | model.Problem]] = {}

    def snap() -> Snapshot:
        creds: list[model.Credential | model.Problem] = []
        seen: set[str] = set()
        for obj in secrets():
            meta = obj.get("metadata") or {}
            name = str(meta.get("name"))
            rv = str(meta.get("resourceVersion") or "")
            seen.add(name)
            hit = converted.get(name)
            if hit is not None and rv and hit[0] == rv:
                creds.append(hit[1])
                continue
            source = model.secret_origin(str(meta.get("namespace") or names.namespace), name)
            item = keys.credential(source, secret_data(obj))
            converted[name] = (rv, item)
            creds.append(item)
        for gone in set(converted) - seen:
            del converted[gone]
        problems: list[model.Problem] = []
        backends: list[model.Backend] | None = None
        if static_backends:
            return Snapshot(credentials=tuple(creds))
        by_name = {(o.get("metadata") or {}).get("name"): o for o in services()}
        primary = by_name.get(names.primary_service)
        ns = names.namespace
        if primary is None:
            problems.append(
                model.Problem(
                    model.service_origin(ns, names.primary_service),
                    "primary Service not found; keeping the last files",
                )
            )
        else:
            host = service_host(primary, address=names.service_address)
            if host is None:
                problems.append(
                    model.Problem(
                        model.service_origin(ns, names.primary_service), "has no clusterIP"
                    )
                )
            else:
                origin = model.service_origin(ns, names.primary_service)
                backends = [
                    model.Backend(
                        host,
                        service_port(primary),
                        model.PRIMARY_FLAG,
                        ready=ready_endpoints(primary_slices(), primary)
                        if names.topology
                        else None,
                        source=origin,
                    )
                ]
                replica = by_name.get(names.replica_service) if names.replica_service else None
                rhost = service_host(replica, address=names.service_address) if replica else None
                if replica is not None and rhost is not None:
                    ready = ready_endpoints(slices(), replica)
                    backends.append(
                        model.Backend(
                            rhost,
                            service_port(replica),
                            model.REPLICA_FLAG,
                            weight=len(ready),
                            ready=ready if names.topology else None,
                            source=model.service_origin(ns, names.replica_service or ""),
                        )
                    )
        return Snapshot(
            credentials=tuple(creds),
            backends=tuple(backends) if backends is not None else None,
            problems=tuple(problems),
        )

    return snap


def ready_endpoints(
    slices: Iterable[Mapping[str, Any]], service: Mapping[str, Any] | None = None
) -> tuple[str, ...]:
    """The ready endpoints across a Service's EndpointSlices as ``topology.endpoint_key``s,
    sorted, each once: the address, the port the slice gives for the Service's port (matched by
    name, as the API does) and the pod (``targetRef``). A pod recreated on the same address, or
    two pods sharing one, are different endpoints. An endpoint without a ``ready`` condition
    counts as ready (the API's documented default)."""
    entry = service_port_entry(service) if service is not None else None
    port_name = str(entry.get("name") or "") if entry is not None else None
    seen: set[str] = set()
    for s in slices:
        port = None
        for p in s.get("ports") or []:
            if port_name is not None and str(p.get("name") or "") == port_name and p.get("port"):
                port = int(p["port"])
        for ep in s.get("endpoints") or []:
            ready = (ep.get("conditions") or {}).get("ready")
            if not (ready is None or ready):
                continue
            ref = ep.get("targetRef") or {}
            pod = str(ref.get("name") or "")
            uid = str(ref.get("uid") or "")
            for a in ep.get("addresses") or []:
                seen.add(topology.endpoint_key(str(a), port=port, pod=pod, uid=uid))
    return tuple(sorted(seen))


TlsResult = tuple[tls.TlsMaterial | None, model.Problem | None]
TLS_SECRET_ORIGIN = model.flag_origin("--tls-secret")


def tls_from_data(source: model.Origin, data: Mapping[str, bytes]) -> TlsResult:
    if tls.CERT_FILE not in data or tls.KEY_FILE not in data:
        return None, model.Problem(source, "needs tls.crt and tls.key")
    try:
        return tls.validate(data[tls.CERT_FILE], data[tls.KEY_FILE], data.get(tls.CA_FILE)), None
    except tls.TlsError as exc:
        return None, model.Problem(source, str(exc))


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
