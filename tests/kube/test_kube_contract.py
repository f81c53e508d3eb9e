"""The contract: the watcher's behaviour against devcluster/kubeapi.py (the API double) and against
the real kube-apiserver of `.ci/kube` is the same, so the double stays honest. Each test runs on
both (the real one only with the `kube` marker's cluster). The servers are in contract.py; the
rollout's calls and the Event recorder are held in test_kube_contract_{deployments,events}.py."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devcluster.kubeobjects import secret
from devcluster.ports import wait_until
from pgpoolsync.kube.watch import Collection, Watcher
from tests.kube.contract import Server, client, servers


@pytest.fixture(params=["double", pytest.param("real", marks=pytest.mark.kube)])
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    yield from servers(request)


def _watcher(server: Server, tmp_path: Path, collection: Collection) -> Watcher:
    w = Watcher(
        client(server, tmp_path),
        collection,
        notify=threading.Event().set,
        timeout_seconds=5,
        backoff_max=0.5,
    )
    w.start()
    assert w.settled.wait(30)
    return w


def _users(w: Watcher) -> dict[str, str]:
    return {
        o["metadata"]["name"]: base64.b64decode(o["data"]["password"]).decode()
        for o in w.snapshot()
    }


def _secret(server: Server, name: str, password: str, app: str = "db") -> dict[str, Any]:
    return secret(name, {"password": password}, labels={"app": app}, namespace=server.ns)


def test_list_then_watch_sees_adds_changes_and_deletes(server: Server, tmp_path: Path) -> None:
    server.put("secrets", _secret(server, "a", "1"))
    w = _watcher(server, tmp_path, Collection("secrets", server.ns, "app=db"))
    assert _users(w) == {"a": "1"}
    server.put("secrets", _secret(server, "b", "2"))
    server.put("secrets", _secret(server, "a", "1b"))
    server.put("secrets", _secret(server, "other", "x", app="web"))
    wait_until(lambda: _users(w) == {"a": "1b", "b": "2"}, what="adds and changes")
    server.delete("secrets", "b")
    wait_until(lambda: _users(w) == {"a": "1b"}, what="delete")
    w.stop()


def test_an_object_leaving_the_selector_is_removed(server: Server, tmp_path: Path) -> None:
    server.put("secrets", _secret(server, "a", "1"))
    w = _watcher(server, tmp_path, Collection("secrets", server.ns, "app=db"))
    server.put("secrets", _secret(server, "a", "1", app="web"))
    wait_until(lambda: _users(w) == {}, what="selector exit")
    w.stop()


def test_a_field_selector_by_name_sees_only_that_secret(server: Server, tmp_path: Path) -> None:
    server.put("secrets", _secret(server, "db-auth", "1"))
    server.put("secrets", _secret(server, "other", "2"))
    w = _watcher(
        server,
        tmp_path,
        Collection("secrets", server.ns, field_selector="metadata.name=db-auth"),
    )
    assert _users(w) == {"db-auth": "1"}
    server.put("secrets", _secret(server, "other", "3"))
    server.put("secrets", _secret(server, "db-auth", "4"))
    wait_until(lambda: _users(w) == {"db-auth": "4"}, what="the named one changed")
    w.stop()


def test_a_list_the_role_does_not_allow_is_named_and_retried_until_allowed(
    server: Server, tmp_path: Path
) -> None:
    server.forbid("list", "secrets")
    w = _watcher(server, tmp_path, Collection("secrets", server.ns, "app=db"))
    assert w.denied == f"list secrets in namespace {server.ns}"
    assert not w.synced.is_set()
    w.stop()
