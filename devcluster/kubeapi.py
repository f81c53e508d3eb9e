"""An HTTP double of the Kubernetes API for Secrets, Services, EndpointSlices, Events, and the
Pods, ReplicaSets and Deployments a rollout reads and patches.

It behaves like the real API server where pgpoolsync depends on it: a global, increasing
resourceVersion; list with label and field selectors returning the list's resourceVersion; watch
from a resourceVersion (replaying what happened since, as chunked JSON lines), an object leaving
a selector arriving as DELETED, periodic BOOKMARKs when asked for, ``timeoutSeconds`` ending the
stream cleanly, and 410 Gone (an ERROR event) for a resourceVersion older than the compaction
point. A GET by name returns the object (404 when there is none); a merge patch
(``application/merge-patch+json``) carrying ``metadata.resourceVersion`` fails with 409 Conflict
when the object changed since. An object keeps its uid and creationTimestamp across updates; Pods,
ReplicaSets and Deployments get metadata.generation 1, +1 when their spec changes (a Deployment's
annotations too). A POSTed Event is created as the server creates it (a name from
``generateName``, a uid, the fields it defaults) and can be read back. Every call is recorded as
(verb, API group, resource, name) so tests can hold the calls against the Role. Faults can be
injected: HTTP 500, 429 with Retry-After, a stream dropped mid-event, a stall. Refusals as the
real server answers them, with its Status body: 401 for a bearer token other than ``token``, 403
(RBAC, naming ``user``) for a (verb, resource) in ``forbidden`` or a name outside a Role rule's
``resource_names``, 404 for a group in ``unserved_groups`` (an older server).
tests/kube/test_kube_contract*.py run the same tests of the watcher, the rollout's calls and the
Event recorder against this double and the real kube-apiserver.

Where it is still kinder than the real server (seen on 1.37): object names are not validated (a
Secret named ``x_y`` is refused there), nor are an object's fields (an Event's, say), it keeps no
managedFields and no controllers (a Deployment makes no ReplicaSet: a test puts them), a stopping
server sends no last BOOKMARK, and it never answers a watch 403 for a moment after a restart.

The double's state and its test-side face are here; the HTTP side (routes, refusals, list, watch
streams) is devcluster/kubehttp.py, the objects devcluster/kubeobjects.py.
"""

from __future__ import annotations

import copy
import json
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from devcluster.kubehttp import Server
from devcluster.kubeobjects import EVENT_DEFAULTS, GENERATION, GROUP, KIND, Obj, generation_of


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
        # resource → the only names a Role rule's resourceNames allow (any other is 403)
        self.resource_names: dict[str, set[str]] = {}
        self.user = "double"  # who a 403 says was refused
        self.bookmark_interval = bookmark_interval
        self._server = Server(self)
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
            if old is None:
                meta.setdefault("uid", f"uid-{meta['name']}-{st.rv}")
                meta.setdefault("creationTimestamp", _now())
            else:  # an update keeps what the server set when it was made
                meta["uid"] = old["metadata"]["uid"]
                meta["creationTimestamp"] = old["metadata"]["creationTimestamp"]
            if kind in GENERATION:
                was = old["metadata"]["generation"] if old else 0
                same = old is not None and generation_of(kind, old) == generation_of(kind, obj)
                meta["generation"] = was if same else was + 1
            group = GROUP.get(kind)
            obj.setdefault("apiVersion", f"{group}/v1" if group else "v1")
            obj.setdefault("kind", KIND[kind])
            bucket[meta["name"]] = obj
            st.log.append((st.rv, "MODIFIED" if old else "ADDED", kind, ns, obj, old))
            st.cond.notify_all()
        return obj

    def create(self, kind: str, namespace: str, obj: Obj) -> Obj | None:
        """A POST: the name from ``generateName`` (five of the server's characters), a random
        uid, an Event's defaulted fields; None when the name is taken (409 AlreadyExists)."""
        obj = {**(EVENT_DEFAULTS if kind == "events" else {}), **copy.deepcopy(obj)}
        meta = obj.setdefault("metadata", {})
        meta["namespace"] = namespace
        if not meta.get("name"):
            meta["name"] = meta.get("generateName", "") + "".join(
                random.choices("bcdfghjklmnpqrstvwxz2456789", k=5)  # noqa: S311 - a name
            )
        meta["uid"] = str(uuid.uuid4())
        with self.store.cond:
            if meta["name"] in self.store.objects.get((kind, namespace), {}):
                return None
            return self.put(kind, obj)

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


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
