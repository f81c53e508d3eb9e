"""The watch cache's pure steps, with plain event values."""

from __future__ import annotations

from typing import Any

from pgpoolsync.kube.cache import apply_event, from_list


def obj(name: str, rv: str, **data: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "resourceVersion": rv}, **data}


def test_added_modified_and_deleted_change_a_copy_never_the_input() -> None:
    empty: dict[str, Any] = {}
    step = apply_event(empty, {"type": "ADDED", "object": obj("a", "1", data={"x": "1"})})
    assert step.changed and step.resource_version == "1" and set(step.cache) == {"a"}
    assert empty == {}
    same = apply_event(step.cache, {"type": "MODIFIED", "object": obj("a", "1", data={"x": "1"})})
    assert not same.changed and same.cache is step.cache
    mod = apply_event(step.cache, {"type": "MODIFIED", "object": obj("a", "2", data={"x": "2"})})
    assert mod.changed and mod.cache["a"]["data"] == {"x": "2"}
    gone = apply_event(mod.cache, {"type": "DELETED", "object": obj("a", "3")})
    assert gone.changed and gone.cache == {} and gone.resource_version == "3"
    again = apply_event(gone.cache, {"type": "DELETED", "object": obj("a", "4")})
    assert not again.changed and again.resource_version == "4"


def test_a_bookmark_moves_the_resource_version_only() -> None:
    cache = {"a": obj("a", "1")}
    step = apply_event(
        cache, {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "9"}}}
    )
    assert not step.changed and step.cache is cache and step.resource_version == "9"


def test_error_410_asks_for_a_relist_and_other_errors_are_api_errors() -> None:
    gone = apply_event({}, {"type": "ERROR", "object": {"code": 410, "message": "too old"}})
    assert gone.gone and gone.error == (410, "too old")
    err = apply_event({}, {"type": "ERROR", "object": {"code": 500, "message": "boom"}})
    assert not err.gone and err.error == (500, "boom")


def test_a_relist_replaces_the_cache_so_missed_deletions_are_seen() -> None:
    cache = {"a": obj("a", "1"), "b": obj("b", "1")}
    step = from_list(cache, {"metadata": {"resourceVersion": "7"}, "items": [obj("b", "1")]})
    assert step.changed and set(step.cache) == {"b"} and step.resource_version == "7"
    same = from_list(step.cache, {"metadata": {"resourceVersion": "8"}, "items": [obj("b", "1")]})
    assert not same.changed and same.cache is step.cache
