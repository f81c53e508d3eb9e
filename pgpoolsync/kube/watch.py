"""List+watch threads that keep caches of plain dicts, and every wait the watch timeout implies.

One ``Watcher`` thread per watched collection lists, then watches
from the list's resourceVersion with bookmarks and a server timeout (a longer client read timeout
catches a silently dead socket). Objects stay raw JSON dicts (no model classes: faster, and the
core sees plain data). On 410 Gone (HTTP status or ERROR event) the watcher relists and replaces
its cache, so deletions missed while disconnected are seen; the official client's own 410 retry is
off whenever ``timeout_seconds`` is passed, so it is handled here. Other errors back off (with
Retry-After for 429) and resume from the last resourceVersion. Every change calls ``notify``.
What an event does to the cache is the pure step in kube/cache.py.

Refusals are named, once: 401/403 (credentials, RBAC) marks the watcher ``denied`` with the verb
and resource in one log line, and it keeps retrying with backoff until the server allows it again;
a 404 on a list means the server does not serve that API (EndpointSlices need Kubernetes
``MIN_KUBERNETES``): the watcher ``failed`` and stops.

``WatchTiming`` is the one home of the formulas derived from the server-side watch timeout: the
client read timeout, how long the first list may take, and when a watch counts as stale.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import kubernetes.client
import urllib3
from kubernetes.client.exceptions import ApiException

from pgpoolsync.kube import cache as watchcache
from pgpoolsync.kube.api import GROUPS, Obj, request
from pgpoolsync.kube.errors import MIN_KUBERNETES, Gone

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class WatchTiming:
    """The waits derived from ``--watch-timeout-seconds`` (the server ends each watch then)."""

    timeout_seconds: int

    @property
    def read_timeout(self) -> float:
        """The client's read timeout: longer than the server's, to catch a silently dead socket."""
        return self.timeout_seconds * 1.1 + 1

    @property
    def first_list_within(self) -> float:
        """How long start() waits for each watch's first list (or refusal)."""
        return max(30.0, self.timeout_seconds * 1.1 + 5)

    @property
    def stale_after(self) -> float:
        """Seconds without progress after which a watch is unhealthy (/healthz)."""
        return self.timeout_seconds * 2 + 30


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
        self.read_timeout = WatchTiming(timeout_seconds=timeout_seconds).read_timeout
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
