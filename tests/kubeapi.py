"""An HTTP double of the Kubernetes API for Secrets, Services, EndpointSlices, Events, and the
Pods, ReplicaSets and Deployments a rollout reads and patches.

It behaves like the real API server where pgpoolsync depends on it: a global, increasing
resourceVersion; list with label and field selectors returning the list's resourceVersion; watch
from a resourceVersion (replaying what happened since, as chunked JSON lines), an object leaving
a selector arriving as DELETED, periodic BOOKMARKs when asked for, ``timeoutSeconds`` ending the
stream cleanly, and 410 Gone (an ERROR event) for a resourceVersion older than the compaction
point. A GET by name returns the object (404 when there is none); a merge patch
(``application/merge-patch+json``) carrying ``metadata.resourceVersion`` fails with 409 Conflict
when the object changed since. Every call is recorded as (verb, API group, resource, name) so
tests can hold the calls against the Role. Faults can be injected: HTTP 500, 429 with
Retry-After, a stream dropped mid-event, a stall. Refusals as the real server answers them: 401
for a bearer token other than ``token``, 403 for a (verb, resource) in ``forbidden`` (RBAC), 404
for a group in ``unserved_groups`` (an older server). tests/test_kube_contract.py runs the same
watcher tests against this double and the real kube-apiserver.

Where it is still kinder than the real server (seen on 1.37): object names are not validated (a
Secret named ``x_y`` is refused there), a stopping server sends no last BOOKMARK, and it never
answers a watch 403 for a moment after a restart.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

Obj = dict[str, Any]

_PATHS = [
    (
        re.compile(r"^/api/v1/namespaces/([^/]+)/(secrets|services|events|pods)(?:/([^/]+))?$"),
        "v1",
    ),
    (
        re.compile(r"^/apis/apps/v1/namespaces/([^/]+)/(replicasets|deployments)(?:/([^/]+))?$"),
        "apps/v1",
    ),
    (
        re.compile(
            r"^/apis/discovery\.k8s\.io/v1/namespaces/([^/]+)/(endpointslices)(?:/([^/]+))?$"
        ),
        "discovery.k8s.io/v1",
    ),
]
_LIST_KIND = {
    "secrets": "SecretList",
    "services": "ServiceList",
    "endpointslices": "EndpointSliceList",
    "events": "EventList",
    "pods": "PodList",
    "replicasets": "ReplicaSetList",
    "deployments": "DeploymentList",
}
_GROUP = {"endpointslices": "discovery.k8s.io", "replicasets": "apps", "deployments": "apps"}
_KIND = {
    "secrets": "Secret",
    "services": "Service",
    "endpointslices": "EndpointSlice",
    "events": "Event",
    "pods": "Pod",
    "replicasets": "ReplicaSet",
    "deployments": "Deployment",
}


def match_labels(selector: str | None, labels: dict[str, str]) -> bool:
    """Equality-based selectors: ``a=b``, ``a==b``, ``a!=b``, ``a`` (exists), ``!a``."""
    if not selector:
        return True
    for raw in selector.split(","):
        term = raw.strip()
        if not term:
            continue
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k.strip()) == v.strip():
                return False
        elif "=" in term:
            k, v = term.replace("==", "=").split("=", 1)
            if labels.get(k.strip()) != v.strip():
                return False
        elif term.startswith("!"):
            if term[1:].strip() in labels:
                return False
        elif term not in labels:
            return False
    return True


def match_fields(selector: str | None, obj: Obj) -> bool:
    if not selector:
        return True
    meta = obj.get("metadata", {})
    for term in selector.split(","):
        negate = "!=" in term
        k, v = term.replace("!=", "=").replace("==", "=").split("=", 1)
        actual = {
            "metadata.name": meta.get("name"),
            "metadata.namespace": meta.get("namespace"),
        }.get(k.strip())
        if (actual == v.strip()) == negate:
            return False
    return True


@dataclass
class Fault:
    """A fault for the next matching request: status (500/429), 'drop' or 'stall'."""

    kind: str | None  # resource plural, None = any
    watch: bool | None  # only watch (True), only list (False), or either (None)
    action: str  # "status" | "drop" | "stall"
    status: int = 500
    retry_after: int | None = None
    after_events: int = 0  # for "drop": send this many whole events first


@dataclass
class Store:
    rv: int = 1000
    objects: dict[tuple[str, str], dict[str, Obj]] = field(default_factory=dict)
    log: list[tuple[int, str, str, str, Obj, Obj | None]] = field(default_factory=list)
    compacted: int = 0
    cond: threading.Condition = field(default_factory=threading.Condition)
    faults: list[Fault] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    timeline: list[tuple[float, str]] = field(default_factory=list)  # (monotonic, what)
    events: list[Obj] = field(default_factory=list)
    calls: list[tuple[str, str, str, str | None]] = field(default_factory=list)
    patches: list[tuple[str, str, Obj]] = field(default_factory=list)  # accepted: kind, name, body


class KubeApiDouble:
    def __init__(self, *, bookmark_interval: float = 1.0, token: str | None = None) -> None:
        self.store = Store()
        self.token = token  # when set, any other bearer token (or none) gets 401
        self.forbidden: set[tuple[str, str]] = set()  # (verb, resource) answered 403, as RBAC
        self.unserved_groups: set[str] = set()  # API groups answered 404, as an older server
        self.bookmark_interval = bookmark_interval
        self._server = _Server(self)
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._stopping = threading.Event()
        self._epoch = 0

    def start(self) -> KubeApiDouble:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        with self.store.cond:
            self.store.cond.notify_all()
        self._server.shutdown()
        self._server.server_close()

    def write_kubeconfig(self, path: Path, *, namespace: str = "default") -> Path:
        path.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "double",
                    "clusters": [{"name": "double", "cluster": {"server": self.url}}],
                    "users": [
                        {"name": "double", "user": {"token": self.token} if self.token else {}}
                    ],
                    "contexts": [
                        {
                            "name": "double",
                            "context": {
                                "cluster": "double",
                                "user": "double",
                                "namespace": namespace,
                            },
                        }
                    ],
                }
            )
        )
        return path

    # -- test-side mutations ---------------------------------------------------------------
    def put(self, kind: str, obj: Obj) -> Obj:
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        ns = meta.setdefault("namespace", "default")
        st = self.store
        with st.cond:
            bucket = st.objects.setdefault((kind, ns), {})
            old = bucket.get(meta["name"])
            st.rv += 1
            meta["resourceVersion"] = str(st.rv)
            meta.setdefault("uid", f"uid-{meta['name']}-{st.rv}")
            group = _GROUP.get(kind)
            obj.setdefault("apiVersion", f"{group}/v1" if group else "v1")
            obj.setdefault("kind", _KIND[kind])
            bucket[meta["name"]] = obj
            st.log.append((st.rv, "MODIFIED" if old else "ADDED", kind, ns, obj, old))
            st.cond.notify_all()
        return obj

    def delete(self, kind: str, name: str, namespace: str = "default") -> None:
        st = self.store
        with st.cond:
            obj = st.objects.get((kind, namespace), {}).pop(name, None)
            if obj is None:
                return
            st.rv += 1
            gone = copy.deepcopy(obj)
            gone["metadata"]["resourceVersion"] = str(st.rv)
            st.log.append((st.rv, "DELETED", kind, namespace, gone, obj))
            st.cond.notify_all()

    def compact(self) -> None:
        """Forget history: watches from any older resourceVersion get 410 Gone."""
        with self.store.cond:
            self.store.compacted = self.store.rv
            self.store.log.clear()
            self.store.cond.notify_all()

    def inject(self, fault: Fault) -> None:
        with self.store.cond:
            self.store.faults.append(fault)

    def drop_watches(self) -> None:
        """Close every open watch stream (like an API server restart)."""
        with self.store.cond:
            self._epoch += 1
            self.store.cond.notify_all()

    # -- HTTP ------------------------------------------------------------------------------
    def _take_fault(self, kind: str, watch: bool) -> Fault | None:
        with self.store.cond:
            for i, f in enumerate(self.store.faults):
                if (f.kind in (None, kind)) and (f.watch is None or f.watch == watch):
                    return self.store.faults.pop(i)
        return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, double: KubeApiDouble) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.double = double

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


class _Handler(BaseHTTPRequestHandler):
    """One request to the double (module level: one class for every double, not one per
    instance); the double is the server's."""

    protocol_version = "HTTP/1.1"
    server: _Server

    @property
    def double(self) -> KubeApiDouble:
        return self.server.double

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _json(self, status: int, body: Obj, headers: dict[str, str] | None = None) -> None:
        self._send_json(status, json.dumps(body).encode(), headers)

    def _send_json(self, status: int, data: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _status(
        self, code: int, reason: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        self._json(
            code,
            {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "message": message,
                "reason": reason,
                "code": code,
            },
            headers,
        )

    def _route(self) -> tuple[str, str, str | None, dict[str, list[str]]] | None:
        url = urlparse(self.path)
        for pattern, _ in _PATHS:
            m = pattern.match(url.path)
            if m:
                return m.group(1), m.group(2), m.group(3), parse_qs(url.query)
        return None

    def _record(self, route: tuple[str, str, str | None, Any] | None) -> bool:
        """Record the call; False when it was refused (401, 403, or 404 for its group)."""
        if route is None:
            return True
        ns, kind, name, q = route
        verb = {"POST": "create", "PATCH": "patch", "PUT": "update"}.get(self.command)
        if verb is None:
            watch = q.get("watch", ["false"])[0] in ("true", "1")
            verb = "watch" if watch else "get" if name else "list"
        group = _GROUP.get(kind, "")
        self.double.store.calls.append((verb, group, kind, name))
        double = self.double
        if group in double.unserved_groups:
            self._status(404, "NotFound", "the server could not find the requested resource")
            return False
        if double.token and self.headers.get("Authorization") != f"Bearer {double.token}":
            self._status(401, "Unauthorized", "Unauthorized")
            return False
        if (verb, kind) in double.forbidden:
            self._status(
                403,
                "Forbidden",
                f'{kind} is forbidden: User "double" cannot {verb} resource "{kind}" in API '
                f'group "{group}" in the namespace "{ns}"',
            )
            return False
        return True

    def do_PATCH(self) -> None:
        route = self._route()
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length) or b"{}")
        self.double.store.requests.append(f"PATCH {self.path}")
        if not self._record(route):
            return
        if not route or not route[2]:
            self._status(404, "NotFound", "not found")
            return
        ns, kind, name = route[0], route[1], route[2]
        if self.headers.get("Content-Type") != "application/merge-patch+json":
            self._status(415, "UnsupportedMediaType", "only merge patches here")
            return
        st = self.double.store
        with st.cond:
            current = st.objects.get((kind, ns), {}).get(name)
            if current is None:
                self._status(404, "NotFound", f'{kind} "{name}" not found')
                return
            want_rv = (body.get("metadata") or {}).get("resourceVersion")
            if want_rv is not None and want_rv != current["metadata"]["resourceVersion"]:
                self._status(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on {kind} "{name}": the object '
                    "has been modified; please apply your changes to the latest version",
                )
                return
            merged = merge_patch(current, body)
            merged["metadata"].pop("resourceVersion", None)
            st.patches.append((kind, name, body))
        obj = self.double.put(kind, merged)
        self._json(200, obj)

    def do_POST(self) -> None:
        route = self._route()
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length) or b"{}")
        self.double.store.requests.append(f"POST {self.path}")
        if not self._record(route):
            return
        if not route or route[1] != "events":
            self._status(404, "NotFound", "not found")
            return
        with self.double.store.cond:
            self.double.store.events.append(body)
        self._json(201, body)

    def do_GET(self) -> None:
        route = self._route()
        self.double.store.requests.append(f"GET {self.path}")
        if not self._record(route):
            return
        if not route:
            self._status(404, "NotFound", f"no route for {self.path}")
            return
        ns, kind, name, q = route
        if name and q.get("watch", ["false"])[0] not in ("true", "1"):
            with self.double.store.cond:
                found = copy.deepcopy(self.double.store.objects.get((kind, ns), {}).get(name))
            if found is None:
                self._status(404, "NotFound", f'{kind} "{name}" not found')
            else:
                self._json(200, found)
            return
        watch = q.get("watch", ["false"])[0] in ("true", "1")
        fault = self.double._take_fault(kind, watch)
        if fault:
            self.double.store.timeline.append((time.monotonic(), f"fault {fault.action}"))
        self.double.store.timeline.append((time.monotonic(), f"GET {kind} watch={watch}"))
        if fault and fault.action == "status":
            headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after else None
            self._status(
                fault.status,
                "InternalError" if fault.status >= 500 else "TooManyRequests",
                "injected fault",
                headers,
            )
            return
        if fault and fault.action == "stall" and not watch:
            time.sleep(60)
            return
        labels = q.get("labelSelector", [None])[0]
        fields = q.get("fieldSelector", [None])[0]
        if name:
            fields = ",".join(x for x in (fields, f"metadata.name={name}") if x)
        if watch:
            self._watch(ns, kind, labels, fields, q, fault)
        else:
            self._list(ns, kind, labels, fields)

    def _matches(self, obj: Obj, labels: str | None, fields: str | None) -> bool:
        meta = obj.get("metadata", {})
        return match_labels(labels, meta.get("labels") or {}) and match_fields(fields, obj)

    def _list(self, ns: str, kind: str, labels: str | None, fields: str | None) -> None:
        st = self.double.store
        with st.cond:  # serialised under the lock: a consistent snapshot, no copies
            items = [
                o
                for _, o in sorted(st.objects.get((kind, ns), {}).items())
                if self._matches(o, labels, fields)
            ]
            data = json.dumps(
                {
                    "kind": _LIST_KIND[kind],
                    "apiVersion": "v1",
                    "metadata": {"resourceVersion": str(st.rv)},
                    "items": items,
                }
            ).encode()
        self._send_json(200, data)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _watch(
        self,
        ns: str,
        kind: str,
        labels: str | None,
        fields: str | None,
        q: dict[str, list[str]],
        fault: Fault | None,
    ) -> None:
        rv_param = q.get("resourceVersion", [""])[0]
        timeout = float(q.get("timeoutSeconds", ["1800"])[0])
        bookmarks = q.get("allowWatchBookmarks", ["false"])[0] == "true"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        sent = 0
        try:
            if fault and fault.action == "stall":
                time.sleep(min(timeout * 2 + 5, 120))
                return
            for event in self._stream(ns, kind, labels, fields, rv_param, timeout, bookmarks):
                line = json.dumps(event).encode() + b"\n"
                if fault and fault.action == "drop" and sent >= fault.after_events:
                    self._chunk(line[: len(line) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self._chunk(line)
                sent += 1
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True

    def _stream(
        self,
        ns: str,
        kind: str,
        labels: str | None,
        fields: str | None,
        rv_param: str,
        timeout: float,
        bookmarks: bool,
    ) -> Iterator[Obj]:
        st = self.double.store
        deadline = time.monotonic() + timeout
        next_bookmark = time.monotonic() + self.double.bookmark_interval
        epoch = self.double._epoch
        with st.cond:
            if rv_param in ("", "0"):
                # Synthetic ADDED for the current state, then changes from now on.
                pos = st.rv
                initial = [
                    copy.deepcopy(o)
                    for o in st.objects.get((kind, ns), {}).values()
                    if self._matches(o, labels, fields)
                ]
            else:
                pos = int(rv_param)
                initial = []
                if pos < st.compacted:
                    yield {
                        "type": "ERROR",
                        "object": {
                            "kind": "Status",
                            "apiVersion": "v1",
                            "status": "Failure",
                            "message": f"too old resource version: {pos} ({st.compacted})",
                            "reason": "Expired",
                            "code": 410,
                        },
                    }
                    return
        for obj in initial:
            yield {"type": "ADDED", "object": obj}
        while not self.double._stopping.is_set():
            with st.cond:
                if self.double._epoch != epoch:
                    return
                pending = [e for e in st.log if e[0] > pos and e[2] == kind and e[3] == ns]
                if not pending:
                    now = time.monotonic()
                    wait = min(deadline, next_bookmark if bookmarks else deadline) - now
                    if wait > 0:
                        st.cond.wait(wait)
                    if self.double._epoch != epoch:
                        return
                    pending = [e for e in st.log if e[0] > pos and e[2] == kind and e[3] == ns]
                rv_now = st.rv
            for rv, etype, _, _, obj, old in pending:
                pos = rv
                now_match = self._matches(obj, labels, fields)
                was_match = old is not None and self._matches(old, labels, fields)
                if etype == "DELETED":
                    if was_match:
                        yield {"type": "DELETED", "object": copy.deepcopy(obj)}
                elif now_match:
                    yield {
                        "type": "MODIFIED" if was_match else "ADDED",
                        "object": copy.deepcopy(obj),
                    }
                elif was_match:
                    gone = copy.deepcopy(obj)
                    yield {"type": "DELETED", "object": gone}
            now = time.monotonic()
            if now >= deadline:
                return
            if bookmarks and now >= next_bookmark:
                next_bookmark = now + self.double.bookmark_interval
                pos = max(pos, rv_now)
                yield {
                    "type": "BOOKMARK",
                    "object": {
                        "kind": _KIND[kind],
                        "apiVersion": "v1",
                        "metadata": {"resourceVersion": str(pos)},
                    },
                }


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (what ``application/merge-patch+json`` does)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def deployment(name: str, *, namespace: str = "default", replicas: int = 2) -> Obj:
    return {
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-deploy-{name}"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": []}},
        },
    }


def replica_set(name: str, deployment_name: str, *, namespace: str = "default") -> Obj:
    return {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": deployment_name,
                    "uid": f"uid-deploy-{deployment_name}",
                    "controller": True,
                }
            ],
        }
    }


def pod(
    name: str,
    replica_set_name: str,
    *,
    namespace: str = "default",
    annotations: dict[str, str] | None = None,
) -> Obj:
    return {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "annotations": dict(annotations or {}),
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": replica_set_name,
                    "uid": f"uid-rs-{replica_set_name}",
                    "controller": True,
                }
            ],
        }
    }


def secret(
    name: str,
    data: dict[str, str],
    *,
    labels: dict[str, str] | None = None,
    namespace: str = "default",
) -> Obj:
    import base64

    return {
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def service(
    name: str,
    *,
    port: int = 5432,
    cluster_ip: str = "10.0.0.1",
    port_name: str = "postgres",
    namespace: str = "default",
) -> Obj:
    return {
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "clusterIP": cluster_ip,
            "ports": [{"name": port_name, "port": port, "protocol": "TCP"}],
        },
    }


def endpoint_slice(
    name: str,
    service_name: str,
    addresses: list[tuple[str, bool]],
    namespace: str = "default",
    *,
    pods: list[tuple[str, str]] | None = None,
    ports: list[tuple[str, int]] | None = None,
) -> Obj:
    """``pods``: a (name, uid) targetRef per address, in order; ``ports``: (name, port)."""
    endpoints: list[Obj] = [{"addresses": [a], "conditions": {"ready": r}} for a, r in addresses]
    for ep, (pod_name, uid) in zip(endpoints, pods or [], strict=False):
        ep["targetRef"] = {"kind": "Pod", "name": pod_name, "namespace": namespace, "uid": uid}
    out: Obj = {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"kubernetes.io/service-name": service_name},
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
    }
    if ports is not None:
        out["ports"] = [{"name": n, "port": p, "protocol": "TCP"} for n, p in ports]
    return out
