"""Turning each source's cache into a reconcile.Snapshot of model values.

The secrets directory (read whole on every pass: it is small and kubelet swaps it atomically)
and the Kubernetes watchers (Secrets by selector or name, the primary and replica Services, the
replica Service's EndpointSlices). Settings decide which; presets supply names and keys.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pgpoolsync import model, tls
from pgpoolsync.dirsource import RawSecret, read_secrets_dir
from pgpoolsync.reconcile import Snapshot


@dataclass(frozen=True)
class KeyConfig:
    user_keys: tuple[str, ...] = model.USER_KEYS
    password_keys: tuple[str, ...] = model.PASSWORD_KEYS
    fixed_users: tuple[tuple[str, str], ...] = ()

    def credential(
        self, source: str, data: Mapping[str, bytes | str]
    ) -> model.Credential | model.Problem:
        return model.credential_from_data(
            source,
            data,
            user_keys=self.user_keys,
            password_keys=self.password_keys,
            fixed_users=dict(self.fixed_users),
        )


def credentials_from_dir(
    secrets: Sequence[RawSecret], keys: KeyConfig
) -> list[model.Credential | model.Problem]:
    return [keys.credential(s.source, s.data) for s in secrets]


def dir_snapshot(root: Path | None, keys: KeyConfig) -> Callable[[], Snapshot]:
    def snap() -> Snapshot:
        if root is None:
            return Snapshot(credentials=())
        return Snapshot(credentials=tuple(credentials_from_dir(read_secrets_dir(root), keys)))

    return snap


@dataclass(frozen=True)
class KubeNames:
    namespace: str
    primary_service: str
    replica_service: str | None
    service_address: str  # "dns" | "cluster-ip"


def kube_snapshot(
    *,
    names: KubeNames,
    keys: KeyConfig,
    secrets: Callable[[], list[dict[str, Any]]],
    services: Callable[[], list[dict[str, Any]]],
    slices: Callable[[], list[dict[str, Any]]],
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
            source = f"secret {meta.get('namespace', names.namespace)}/{name}"
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
                    f"service {ns}/{names.primary_service}",
                    "primary Service not found; keeping the last files",
                )
            )
        else:
            host = model.service_host(primary, address=names.service_address)
            if host is None:
                problems.append(
                    model.Problem(f"service {ns}/{names.primary_service}", "has no clusterIP")
                )
            else:
                backends = [model.Backend(host, model.service_port(primary), model.PRIMARY_FLAG)]
                replica = by_name.get(names.replica_service) if names.replica_service else None
                rhost = (
                    model.service_host(replica, address=names.service_address) if replica else None
                )
                if replica is not None and rhost is not None:
                    weight = model.ready_endpoints(slices())
                    backends.append(
                        model.Backend(
                            rhost, model.service_port(replica), model.REPLICA_FLAG, weight=weight
                        )
                    )
        return Snapshot(
            credentials=tuple(creds),
            backends=tuple(backends) if backends is not None else None,
            problems=tuple(problems),
        )

    return snap


TlsResult = tuple[tls.TlsMaterial | None, model.Problem | None]


def _read_pair(directory: Path) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for name in (tls.CERT_FILE, tls.KEY_FILE, tls.CA_FILE):
        try:
            out[name] = (directory / name).read_bytes()
        except FileNotFoundError:
            continue
    return out


def tls_from_data(source: str, data: Mapping[str, bytes]) -> TlsResult:
    if tls.CERT_FILE not in data or tls.KEY_FILE not in data:
        return None, model.Problem(source, "needs tls.crt and tls.key")
    try:
        return tls.validate(data[tls.CERT_FILE], data[tls.KEY_FILE], data.get(tls.CA_FILE)), None
    except tls.TlsError as exc:
        return None, model.Problem(source, str(exc))


def tls_source(
    *,
    mode: str,
    config_dir: Path,
    tls_dir: Path | None,
    names: Sequence[str],
    secret: Callable[[], dict[str, bytes] | None] | None = None,
) -> Callable[[], TlsResult]:
    """What TLS material the next pass should use.

    auto: the pair already in ``config_dir`` (kept across restarts of the sidecar) while it is
    valid for another 30 days, else a new self-signed one, generated once per process.
    secret: from ``tls_dir`` (a mounted Secret) or the watched Secret. off: none.
    """
    generated: list[tls.TlsMaterial] = []

    def auto() -> TlsResult:
        existing = _read_pair(config_dir)
        if tls.CERT_FILE in existing and tls.KEY_FILE in existing:
            soon = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
            try:
                return tls.validate(
                    existing[tls.CERT_FILE],
                    existing[tls.KEY_FILE],
                    existing.get(tls.CA_FILE),
                    now=soon,
                ), None
            except tls.TlsError:
                pass  # expiring, broken or foreign: replace it
        if not generated:
            generated.append(tls.generate_self_signed(list(names)))
        return generated[0], None

    def from_dir() -> TlsResult:
        assert tls_dir is not None
        return tls_from_data(f"--tls-dir {tls_dir}", _read_pair(tls_dir))

    def from_secret() -> TlsResult:
        assert secret is not None
        data = secret()
        if data is None:
            return None, model.Problem("--tls-secret", "the TLS Secret does not exist")
        return tls_from_data("--tls-secret", data)

    if mode == "off":
        return lambda: (None, None)
    if mode == "auto":
        return auto
    if tls_dir is not None:
        return from_dir
    if secret is not None:
        return from_secret
    raise ValueError("--tls secret needs --tls-dir (or --tls-secret with --kube)")


def with_tls(
    snapshot: Callable[[], Snapshot], tls_result: Callable[[], TlsResult]
) -> Callable[[], Snapshot]:
    def snap() -> Snapshot:
        base = snapshot()
        material, problem = tls_result()
        problems = (*base.problems, problem) if problem else base.problems
        return Snapshot(
            credentials=base.credentials, backends=base.backends, problems=problems, tls=material
        )

    return snap
