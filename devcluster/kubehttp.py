"""The API double's HTTP side: routing a path to (namespace, resource, name), the refusals (401,
403, 404 for an unserved group), GET/PATCH/POST, lists, and watch streams with BOOKMARKs, 410
Gone and injected faults. One handler class for every double; the double is the server's."""

from __future__ import annotations

import copy
import json
import re
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlparse

from devcluster.kubeobjects import (
    GROUP,
    KIND,
    LIST_KIND,
    Obj,
    match_fields,
    match_labels,
    merge_patch,
    qualified,
    status,
)

if TYPE_CHECKING:
    from devcluster.kubeapi import Fault, KubeApiDouble

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


class Server(ThreadingHTTPServer):
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
    server: Server

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
        self,
        code: int,
        reason: str,
        message: str,
        headers: dict[str, str] | None = None,
        *,
        kind: str = "",
        name: str | None = None,
    ) -> None:
        self._json(code, status(code, reason, message, kind=kind, name=name), headers)

    def _not_found(self, kind: str, name: str) -> None:
        self._status(404, "NotFound", f'{qualified(kind)} "{name}" not found', kind=kind, name=name)

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
        group = GROUP.get(kind, "")
        self.double.store.calls.append((verb, group, kind, name))
        double = self.double
        if group in double.unserved_groups:
            self._status(404, "NotFound", "the server could not find the requested resource")
            return False
        if double.token and self.headers.get("Authorization") != f"Bearer {double.token}":
            self._status(401, "Unauthorized", "Unauthorized")
            return False
        allowed = double.resource_names.get(kind)
        if (verb, kind) in double.forbidden or (allowed is not None and name not in allowed):
            what = f'{qualified(kind)} "{name}"' if name else qualified(kind)
            self._status(
                403,
                "Forbidden",
                f'{what} is forbidden: User "{double.user}" cannot {verb} resource "{kind}" in '
                f'API group "{group}" in the namespace "{ns}"',
                kind=kind,
                name=name,
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
                self._not_found(kind, name)
                return
            want_rv = (body.get("metadata") or {}).get("resourceVersion")
            if want_rv is not None and want_rv != current["metadata"]["resourceVersion"]:
                self._status(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on {qualified(kind)} "{name}": the object has '
                    "been modified; please apply your changes to the latest version and try again",
                    kind=kind,
                    name=name,
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
        ns, kind = route[0], route[1]
        with self.double.store.cond:
            created = self.double.create(kind, ns, body)
            if created is not None:
                self.double.store.events.append(created)
        if created is None:
            name = body["metadata"]["name"]
            msg = f'{qualified(kind)} "{name}" already exists'
            self._status(409, "AlreadyExists", msg, kind=kind, name=name)
        else:
            self._json(201, created)

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
                self._not_found(kind, name)
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
            self._watch(ns=ns, kind=kind, labels=labels, fields=fields, q=q, fault=fault)
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
                    "kind": LIST_KIND[kind],
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
        *,
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
            for event in self._stream(
                ns=ns,
                kind=kind,
                labels=labels,
                fields=fields,
                rv_param=rv_param,
                timeout=timeout,
                bookmarks=bookmarks,
            ):
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
        *,
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
                        "kind": KIND[kind],
                        "apiVersion": "v1",
                        "metadata": {"resourceVersion": str(pos)},
                    },
                }
