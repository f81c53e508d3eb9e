"""The Kubernetes source: the operator's Secrets, Services and EndpointSlices through the API.

Owns its watchers (one per collection), resolving a preset into selectors, key names and Service
names (explicit flags win), converting the caches into a ``Snapshot`` (sources/convert.py), the
health of its watches, and where Events go: on the offending Secret or Service when there is
one, and always on this pod.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pgpoolsync.core import model
from pgpoolsync.core.presets import Preset
from pgpoolsync.kube import api, errors
from pgpoolsync.kube.deployments import Deployments
from pgpoolsync.kube.events import EventRecorder
from pgpoolsync.kube.watch import Collection, Watcher, WatchTiming
from pgpoolsync.sources import WatchMetrics
from pgpoolsync.sources.convert import KeyConfig, KubeNames, TlsResult, kube_snapshot

log = logging.getLogger(__name__)

_EVENT_KINDS = {"secret": "Secret", "service": "Service", "deployment": "Deployment"}
# Events about things going as they should are Normal; every other reason is a Warning.
_NORMAL_REASONS = frozenset({"NodeAttached", "NodeRecycled", "RolloutRequested"})


@dataclass(frozen=True)
class KubeConfig:
    """What to watch, after the preset is resolved."""

    namespace: str
    secret_selector: str | None
    secret_names: tuple[str, ...]
    primary_service: str | None
    replica_service: str | None
    service_address: str
    tls_secret: str | None
    watch_timeout_seconds: int
    pod_name: str | None
    topology: bool = True


def resolve(
    *,
    preset: Preset | None,
    namespace: str | None,
    secret_selector: str | None,
    secret_names: tuple[str, ...],
    primary_service: str | None,
    replica_service: str | None,
    service_address: str,
    tls_secret: str | None,
    watch_timeout_seconds: int,
    pod_name: str | None,
    topology: bool = True,
) -> KubeConfig:
    """Explicit flags over the preset's conventions; the namespace defaults to the pod's."""
    return KubeConfig(
        namespace=namespace or api.in_cluster_namespace() or "default",
        secret_selector=secret_selector or (preset.secret_selector if preset else None),
        secret_names=secret_names or (preset.secret_names if preset else ()),
        primary_service=primary_service or (preset.primary_service if preset else None),
        replica_service=replica_service or (preset.replica_service if preset else None),
        service_address=service_address,
        tls_secret=tls_secret,
        watch_timeout_seconds=watch_timeout_seconds,
        pod_name=pod_name,
        topology=topology,
    )


class KubeSource:
    def __init__(
        self,
        config: KubeConfig,
        *,
        kubeconfig: str | None,
        keys: KeyConfig,
        static_backends: tuple[model.Backend, ...],
        tls: Callable[[Callable[[], dict[str, bytes] | None] | None], Callable[[], TlsResult]],
        metrics: WatchMetrics,
    ) -> None:
        """``tls`` makes the TLS result function, given where the watched TLS Secret's data
        comes from (None without --tls-secret). Raises errors.KubeConfigError."""
        self.config = config
        self._timing = WatchTiming(timeout_seconds=config.watch_timeout_seconds)
        self._api = api.load_api_client(kubeconfig=kubeconfig)
        self._metrics = metrics
        self._notify: Callable[[], None] = lambda: None
        ns = config.namespace
        if not config.secret_selector and not config.secret_names:
            log.warning("no --secret-selector or --secret-names: only env users are synced")
        self._secret_watchers: list[Watcher] = []
        if config.secret_selector:
            self._secret_watchers.append(
                self._watcher(Collection("secrets", ns, config.secret_selector))
            )
        for name in config.secret_names:
            self._secret_watchers.append(
                self._watcher(Collection("secrets", ns, field_selector=f"metadata.name={name}"))
            )
        self.watchers = list(self._secret_watchers)
        services = slices = primary_slices = None
        if not static_backends:
            services = self._watcher(Collection("services", ns))
            self.watchers.append(services)
            if config.replica_service:
                slices = self._slices(config.replica_service)
                self.watchers.append(slices)
            if config.topology and config.primary_service:
                primary_slices = self._slices(config.primary_service)
                self.watchers.append(primary_slices)
        self._tls_watcher: Watcher | None = None
        if config.tls_secret:
            self._tls_watcher = self._watcher(
                Collection("secrets", ns, field_selector=f"metadata.name={config.tls_secret}")
            )
            self.watchers.append(self._tls_watcher)
        self._tls = tls(self._tls_data if self._tls_watcher else None)
        self._recorder = EventRecorder(self._api, namespace=ns, pod_name=config.pod_name)
        self._credentials = kube_snapshot(
            names=KubeNames(
                ns,
                config.primary_service or "",
                config.replica_service,
                config.service_address,
                topology=config.topology,
            ),
            keys=keys,
            secrets=self._all_secrets,
            services=services.snapshot if services else list,
            slices=slices.snapshot if slices else list,
            primary_slices=primary_slices.snapshot if primary_slices else list,
            secret_data=api.secret_data,
            static_backends=static_backends,
        )
        for kind in {w.collection.kind for w in self.watchers}:
            metrics.watch_staleness.labels(kind).set_function(self._staleness(kind))
            for reason in ("gone", "stream"):
                metrics.watch_restarts.labels(kind, reason)  # present from the start, at 0

    def _watcher(self, collection: Collection) -> Watcher:
        return Watcher(
            self._api,
            collection,
            notify=lambda: self._notify(),  # noqa: PLW0108 - bound at start()
            on_restart=lambda kind, reason: self._metrics.watch_restarts.labels(kind, reason).inc(),
            timeout_seconds=self.config.watch_timeout_seconds,
        )

    def _slices(self, service: str) -> Watcher:
        return self._watcher(
            Collection(
                "endpointslices",
                self.config.namespace,
                label_selector=f"kubernetes.io/service-name={service}",
            )
        )

    def _all_secrets(self) -> list[dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for w in self._secret_watchers:
            for obj in w.snapshot():
                out[str((obj.get("metadata") or {}).get("name"))] = obj
        return [out[k] for k in sorted(out)]

    def _tls_data(self) -> dict[str, bytes] | None:
        assert self._tls_watcher is not None
        objs = self._tls_watcher.snapshot()
        return api.secret_data(objs[0]) if objs else None

    def _staleness(self, kind: str) -> Callable[[], float]:
        same = [w for w in self.watchers if w.collection.kind == kind]
        return lambda: max(w.stale_for() for w in same)

    # -- Source -------------------------------------------------------------------------
    def start(self, notify: Callable[[], None]) -> None:
        """Start every watch and wait until each has listed once or been refused (then the
        snapshot is None until it is allowed). Raises errors.ApiUnavailable when the server does
        not serve a watched API, or never answers."""
        self._notify = notify
        sync_timeout = self._timing.first_list_within
        for w in self.watchers:
            w.start()
        for w in self.watchers:
            settled = w.settled.wait(sync_timeout)
            if w.failed:
                raise errors.ApiUnavailable(w.failed)
            if not settled:
                raise errors.ApiUnavailable(
                    f"--kube: could not list {w.collection.describe()} within "
                    f"{sync_timeout:.0f}s: is the API server reachable?"
                )

    def snapshot(self) -> model.Snapshot | None:
        """None while a watch is refused or has not listed yet: its cache is not the truth,
        so the loop keeps the last good files and is not ready."""
        if any(w.denied or not w.synced.is_set() for w in self.watchers):
            return None
        base = self._credentials()
        material, problem = self._tls()
        return model.Snapshot(
            credentials=base.credentials,
            backends=base.backends,
            problems=(*base.problems, problem) if problem else base.problems,
            tls=material,
        )

    def healthy(self) -> tuple[bool, str]:
        limit = self._timing.stale_after
        for w in self.watchers:
            if w.failed:
                return False, w.failed
        for w in self.watchers:
            if w.stale_for() > limit:
                return False, f"watch {w.collection.describe()} stale for {w.stale_for():.0f}s"
        return True, "ok"

    def post_event(self, problem: model.Problem, reason: str) -> None:
        kind = _EVENT_KINDS.get(problem.source.kind)
        warning = reason not in _NORMAL_REASONS
        if kind is not None and problem.source.name:
            self._recorder.event(
                reason=reason,
                message=str(problem),
                kind=kind,
                name=problem.source.name,
                warning=warning,
            )
        self._recorder.event(reason=reason, message=str(problem), warning=warning)

    def deployments(self) -> Deployments:
        """The API calls of ``--restart-policy rollout``, on this source's client."""
        return Deployments(self._api, namespace=self.config.namespace)

    def stop(self) -> None:
        for w in self.watchers:
            w.stop()
