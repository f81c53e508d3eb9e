"""A watch cache as pure steps: list results and watch events in, the next cache out.

``Watcher`` (kube/watch.py) does the HTTP; what a list or an event means for the cache is
decided here, on plain dicts, so it is tested with plain values: ADDED/MODIFIED put, DELETED
pops, BOOKMARK only moves the resourceVersion, ERROR 410 means relist, other ERRORs are API
errors. resourceVersions are opaque: compared for equality only, never ordered.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]
Cache = Mapping[str, Obj]


def name_of(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def resource_version(obj: Mapping[str, Any]) -> str | None:
    rv = (obj.get("metadata") or {}).get("resourceVersion")
    return str(rv) if rv else None


@dataclass(frozen=True)
class Step:
    cache: Cache
    changed: bool = False
    resource_version: str | None = None  # the watch resumes from here (None: unchanged)
    gone: bool = False  # 410: the resourceVersion is too old, relist
    error: tuple[int, str] | None = None  # another ERROR event: (HTTP code, message)


def apply_event(cache: Cache, event: Mapping[str, Any]) -> Step:
    """The cache after one watch event. The input cache is never modified."""
    kind = event.get("type")
    obj = event.get("object") or {}
    if kind == "ERROR":
        code = int(obj.get("code") or 500)
        message = str(obj.get("message") or "watch error")
        if code == 410:
            return Step(cache, gone=True, error=(code, message))
        return Step(cache, error=(code, message))
    rv = resource_version(obj)
    if kind == "BOOKMARK":
        return Step(cache, resource_version=rv)
    name = name_of(obj)
    if kind == "DELETED":
        if name not in cache:
            return Step(cache, resource_version=rv)
        new = dict(cache)
        del new[name]
        return Step(new, changed=True, resource_version=rv)
    if kind in ("ADDED", "MODIFIED"):
        if cache.get(name) == obj:
            return Step(cache, resource_version=rv)
        new = dict(cache)
        new[name] = obj
        return Step(new, changed=True, resource_version=rv)
    return Step(cache, resource_version=rv)  # an event type this client does not know


def from_list(cache: Cache, body: Mapping[str, Any]) -> Step:
    """The cache after a (re)list: exactly the listed items, so deletions missed while the
    watch was disconnected are seen."""
    items = {name_of(o): o for o in body.get("items") or []}
    rv = str((body.get("metadata") or {}).get("resourceVersion") or "")
    changed = items != dict(cache)
    return Step(items if changed else cache, changed=changed, resource_version=rv)
