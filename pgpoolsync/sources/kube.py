"""The Kubernetes API side: list+watch threads that keep caches of plain dicts, and Events.

The only ``import kubernetes``. One ``Watcher`` thread per watched collection lists, then watches
from the list's resourceVersion with bookmarks and a server timeout (a longer client read timeout
catches a silently dead socket). Objects stay raw JSON dicts (no model classes: faster, and the
core sees plain data). On 410 Gone (HTTP status or ERROR event) the watcher relists and replaces
its cache, so deletions missed while disconnected are seen; the official client's own 410 retry is
off whenever ``timeout_seconds`` is passed, so it is handled here. Other errors back off (with
Retry-After for 429) and resume from the last resourceVersion. Every change calls ``notify``.
What an event does to the cache is the pure step in sources/cache.py.

Refusals are named, once: 401/403 (credentials, RBAC) marks the watcher ``denied`` with the verb
and resource in one log line, and it keeps retrying with backoff until the server allows it again;
a 404 on a list means the server does not serve that API (EndpointSlices need Kubernetes
``MIN_KUBERNETES``): the watcher ``failed`` and stops.
"""

from __future__ import annotations

import base64
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes.client
import kubernetes.config
import urllib3
from kubernetes.client.exceptions import ApiException

from pgpoolsync.core import rollout
from pgpoolsync.sources import SourceUnavailable
from pgpoolsync.sources import cache as watchcache

log = logging.getLogger(__name__)

Obj = dict[str, Any]


class Gone(Exception):
    """The resourceVersion is too old: relist."""


class KubeConfigError(Exception):
    """Neither an in-cluster service account nor a usable kubeconfig."""


class ApiUnavailable(SourceUnavailable):
    """The API server does not serve what is watched, or never answered the first list."""


# discovery.k8s.io/v1 EndpointSlices are served from Kubernetes 1.21 on.
MIN_KUBERNETES = "1.21"


def load_api_client(*, kubeconfig: str | None) -> kubernetes.client.ApiClient:
    """In-cluster config first (unless a kubeconfig is named), then the kubeconfig."""
    if not kubeconfig:
        try:
            kubernetes.config.load_incluster_config()  # type: ignore[no-untyped-call]
            return kubernetes.client.ApiClient()
        except kubernetes.config.ConfigException:
            pass
    cfg = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, client_configuration=cfg
        )
    except (kubernetes.config.ConfigException, OSError, ValueError) as exc:
        # Only the config library's own message: a parser's could quote the file (a token).
        why = str(exc).splitlines()[0] if isinstance(exc, kubernetes.config.ConfigException) else ""
        where = f"--kubeconfig {kubeconfig}" if kubeconfig else "no in-cluster service account"
        raise KubeConfigError(
            f"--kube: cannot reach the Kubernetes API ({where}; kubeconfig: "
            f"{why or type(exc).__name__}). Run inside a Pod with a service account, or pass "
            "--kubeconfig FILE"
        ) from None
    return kubernetes.client.ApiClient(cfg)


GROUPS = {
    "endpointslices": "discovery.k8s.io/v1",
    "replicasets": "apps/v1",
    "deployments": "apps/v1",
}

PATHS = {
    "secrets": "/api/v1/namespaces/{namespace}/secrets",
    "services": "/api/v1/namespaces/{namespace}/services",
    "endpointslices": "/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices",
    "events": "/api/v1/namespaces/{namespace}/events",
    "pods": "/api/v1/namespaces/{namespace}/pods",
    "replicasets": "/apis/apps/v1/namespaces/{namespace}/replicasets",
    "deployments": "/apis/apps/v1/namespaces/{namespace}/deployments",
}


def request(
    api: kubernetes.client.ApiClient,
    method: str,
    kind: str,
    namespace: str,
    *,
    query: list[tuple[str, str]] | None = None,
    body: Obj | None = None,
    timeout: tuple[float, float] | None = None,
    name: str | None = None,
    content_type: str = "application/json",
) -> urllib3.BaseHTTPResponse:
    """One API call through the client's configuration, auth and REST layer; the raw response.

    The generated ``CoreV1Api`` is not used: importing it builds hundreds of pydantic models,
    which took 1 s of a 2 s start, and the answers are read as plain JSON anyway. Non-2xx
    raises ``ApiException`` as the generated methods do.
    """
    headers = {"Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = content_type
    path, params = PATHS[kind], {"namespace": namespace}
    if name is not None:
        path, params["name"] = path + "/{name}", name
    method, url, headers, payload, post = api.param_serialize(
        method=method,
        resource_path=path,
        path_params=params,
        query_params=query or [],
        header_params=headers,
        body=body,
        auth_settings=["BearerToken"],
    )
    resp = api.call_api(
        method, url, header_params=headers, body=payload, post_params=post, _request_timeout=timeout
    )
    if not 200 <= resp.status <= 299:
        resp.read()  # type: ignore[no-untyped-call]
        raise ApiException.from_response(http_resp=resp, body=None, data=None)
    raw: urllib3.BaseHTTPResponse = resp.response
    return raw


def in_cluster_namespace() -> str | None:
    path = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


@dataclass(frozen=True)
class Collection:
    """What one watcher follows: a kind in a namespace, optionally narrowed by selectors."""

    kind: str  # "secrets" | "services" | "endpointslices"
    namespace: str
    label_selector: str | None = None
    field_selector: str | None = None

    def describe(self) -> str:
        sel = ",".join(s for s in (self.label_selector, self.field_selector) if s)
        return f"{self.kind} in {self.namespace}" + (f" ({sel})" if sel else "")


class Watcher:
    """Keeps ``cache`` (name → object) of one Collection in step, in its own thread."""

    def __init__(
        self,
        api: kubernetes.client.ApiClient,
        collection: Collection,
        *,
        notify: Callable[[], None],
        on_restart: Callable[[str, str], None] = lambda kind, reason: None,
        timeout_seconds: int = 60,
        backoff_max: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.collection = collection
        self._api = api
        self._notify = notify
        self._on_restart = on_restart
        self.timeout_seconds = timeout_seconds
        self.read_timeout = timeout_seconds * 1.1 + 1
        self._backoff_max = backoff_max
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: watchcache.Cache = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"watch-{collection.kind}", daemon=True
        )
        self.synced = threading.Event()
        self.settled = threading.Event()  # synced, denied or failed: start() can go on
        self.denied: str | None = None  # the refused call, while the server refuses it
        self.failed: str | None = None  # the server does not serve this API: stopped
        self._verb = "list"
        self.last_progress = clock()
        self.resource_version: str | None = None

    # -- public -------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def snapshot(self) -> list[Obj]:
        with self._lock:
            return [self._cache[k] for k in sorted(self._cache)]

    def stale_for(self) -> float:
        """Seconds since the watch last made progress (list, event, bookmark, clean timeout)."""
        return self._clock() - self.last_progress

    # -- the loop ------------------------------------------------------------------------
    def _call(self, *params: tuple[str, str]) -> urllib3.BaseHTTPResponse:
        c = self.collection
        query = list(params)
        if c.label_selector:
            query.append(("labelSelector", c.label_selector))
        if c.field_selector:
            query.append(("fieldSelector", c.field_selector))
        return request(
            self._api, "GET", c.kind, c.namespace, query=query, timeout=(5, self.read_timeout)
        )

    def _progress(self) -> None:
        self.last_progress = self._clock()

    def _relist(self) -> str:
        self._verb = "list"
        resp = self._call()
        try:
            body = json.loads(resp.data)
        finally:
            resp.release_conn()
        with self._lock:
            step = watchcache.from_list(self._cache, body)
            self._cache = step.cache
        rv = step.resource_version or ""
        self.resource_version = rv
        self._progress()
        self.synced.set()
        self.settled.set()
        if step.changed:
            self._notify()
        self._allowed()
        return rv

    def _allowed(self) -> None:
        if self.denied is not None:
            log.info("%s: allowed again", self.collection.describe())
            self.denied = None
            self._notify()

    def _events(self, rv: str) -> Iterator[Obj]:
        self._verb = "watch"
        resp = self._call(
            ("watch", "true"),
            ("resourceVersion", rv),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(self.timeout_seconds)),
        )
        self._allowed()
        try:
            buf = b""
            for chunk in resp.stream(65536, decode_content=False):
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if line.strip():
                        yield json.loads(line)
            if buf.strip():
                # A stream cut mid-event: drop the fragment, resume from the last whole event.
                raise urllib3.exceptions.ProtocolError("watch stream ended inside an event")
        finally:
            resp.release_conn()

    def _watch(self, rv: str) -> str:
        for event in self._events(rv):
            with self._lock:
                step = watchcache.apply_event(self._cache, event)
                self._cache = step.cache
            if step.gone:
                raise Gone(step.error[1] if step.error else "resourceVersion too old")
            if step.error is not None:
                raise ApiException(status=step.error[0], reason=step.error[1])
            if step.resource_version:
                rv = step.resource_version
                self.resource_version = rv
            self._progress()
            if step.changed:
                self._notify()
        self._progress()  # a clean end at the server timeout is progress too
        return rv

    def _run(self) -> None:
        rv: str | None = None
        delay = 0.0
        while not self._stop.is_set():
            try:
                if rv is None:
                    rv = self._relist()
                rv = self._watch(rv)
                delay = 0.0
                continue
            except Gone:
                log.info(
                    "watch %s: resourceVersion too old (410), relisting", self.collection.describe()
                )
                self._on_restart(self.collection.kind, "gone")
                rv = None
                continue
            except ApiException as exc:
                if exc.status == 404 and self._verb == "list":
                    self._fail()
                    return
                if exc.status in (401, 403):
                    # Resumed from rv once allowed: a 410 then relists if history moved on.
                    self._deny(int(exc.status))
                    reason, wait = f"http_{exc.status}", None
                else:
                    reason, wait = self._api_error(exc)
                if exc.status == 410:
                    rv = None
            except (urllib3.exceptions.HTTPError, OSError, json.JSONDecodeError) as exc:
                reason, wait = "stream", None
                log.info("watch %s: %s; resuming", self.collection.describe(), type(exc).__name__)
            self._on_restart(self.collection.kind, reason)
            delay = min(self._backoff_max, max(0.2, delay * 2))
            pause = wait if wait is not None else delay * (0.5 + random.random() / 2)  # noqa: S311
            self._stop.wait(pause)

    def _resource(self) -> str:
        """As RBAC names it: ``secrets``, ``endpointslices.discovery.k8s.io``."""
        api = GROUPS.get(self.collection.kind)
        return (
            self.collection.kind if api is None else f"{self.collection.kind}.{api.split('/')[0]}"
        )

    def _deny(self, status: int) -> None:
        if self.denied is not None:  # said once, until allowed again
            return
        what = f"{self._verb} {self._resource()} in namespace {self.collection.namespace}"
        self.denied = what
        why = (
            "401 Unauthorized: the credentials were refused"
            if status == 401
            else "403 Forbidden: the service account's Role does not allow it"
        )
        log.error(
            "the API server refused to %s (%s); not ready, the last good files stay; retrying",
            what,
            why,
        )
        self.settled.set()
        self._notify()

    def _fail(self) -> None:
        c = self.collection
        api = GROUPS.get(c.kind, "v1")
        self.failed = (
            f"--kube: the API server does not serve {api} {c.kind} (404 on list in namespace "
            f"{c.namespace}): pgpoolsync needs Kubernetes {MIN_KUBERNETES} or newer"
        )
        self.settled.set()  # start() raises it: the one line the user sees

    def _api_error(self, exc: ApiException) -> tuple[str, float | None]:
        status = int(exc.status or 0)
        wait: float | None = None
        if status == 429:
            headers = exc.headers or {}
            try:
                wait = min(self._backoff_max, float(headers.get("Retry-After", "1")))
            except ValueError:
                wait = 1.0
        log.warning("watch %s: API error %s; retrying", self.collection.describe(), status)
        return (f"http_{status}" if status else "error"), wait


def secret_data(secret: Mapping[str, Any]) -> dict[str, bytes]:
    """A Secret's data, base64-decoded (stringData is folded into data by the API server)."""
    out: dict[str, bytes] = {}
    for key, value in (secret.get("data") or {}).items():
        try:
            out[key] = base64.b64decode(value or "", validate=True)
        except ValueError:
            out[key] = b"\xff"  # not decodable: reported by the model as invalid UTF-8
    return out


class EventRecorder:
    """Posts core/v1 Events about a Pod (or the offending Secret); repeats are rate-limited."""

    def __init__(
        self,
        api: kubernetes.client.ApiClient,
        *,
        namespace: str,
        pod_name: str | None,
        component: str = "pgpoolsync",
        clock: Callable[[], float] = time.monotonic,
        quiet_seconds: float = 600,
    ) -> None:
        self._api = api
        self.namespace = namespace
        self.pod_name = pod_name
        self.component = component
        self._clock = clock
        self._quiet = quiet_seconds
        self._sent: dict[tuple[str, str, str], float] = {}

    def event(
        self,
        *,
        reason: str,
        message: str,
        kind: str = "Pod",
        name: str | None = None,
        warning: bool = True,
    ) -> None:
        name = name or self.pod_name
        if not name:
            return
        key = (kind, name, reason + message)
        now = self._clock()
        if now - self._sent.get(key, -1e18) < self._quiet:
            return
        self._sent[key] = now
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        body: Any = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{name}.", "namespace": self.namespace},
            "involvedObject": {
                "apiVersion": "apps/v1" if kind == "Deployment" else "v1",
                "kind": kind,
                "name": name,
                "namespace": self.namespace,
            },
            "reason": reason,
            "message": message[:1024],
            "type": "Warning" if warning else "Normal",
            "source": {"component": self.component},
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        try:
            request(
                self._api, "POST", "events", self.namespace, body=body, timeout=(5, 10)
            ).drain_conn()
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            log.warning(
                "could not post Event %s on %s/%s: %s",
                reason,
                kind,
                name,
                getattr(exc, "status", type(exc).__name__),
            )


class Deployments:
    """The calls a rollout makes, and no others (the Role in manifests/base allows exactly
    these): get this pod and its ReplicaSet, get and merge-patch the owning Deployment."""

    def __init__(self, api: kubernetes.client.ApiClient, *, namespace: str) -> None:
        self._api = api
        self.namespace = namespace

    def _call(self, method: str, kind: str, name: str, body: Obj | None = None) -> Obj:
        try:
            resp = request(
                self._api,
                method,
                kind,
                self.namespace,
                name=name,
                body=body,
                timeout=(5, 10),
                content_type="application/merge-patch+json",
            )
            try:
                out: Obj = json.loads(resp.data)
            finally:
                resp.release_conn()
        except ApiException as exc:
            reason = exc.reason or ""
            raise rollout.ApiError(
                int(exc.status or 0), f"{method} {kind}/{name}: {exc.status} {reason}".strip()
            ) from None
        except (urllib3.exceptions.HTTPError, OSError, json.JSONDecodeError) as exc:
            raise rollout.ApiError(0, f"{method} {kind}/{name}: {type(exc).__name__}") from None
        return out

    def get(self, kind: str, name: str) -> Obj:
        return self._call("GET", kind, name)

    def patch_deployment(self, name: str, body: Obj) -> Obj:
        return self._call("PATCH", "deployments", name, body)
