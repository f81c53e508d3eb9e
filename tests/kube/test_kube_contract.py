"""The contract: the watcher's behaviour against devcluster/kubeapi.py (the API double) and against
the real kube-apiserver of `.ci/kube` is the same, so the double stays honest. Each test runs on
both (the real one only with the `kube` marker's cluster)."""

from __future__ import annotations

import base64
import json
import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest

from devcluster.kubeapi import KubeApiDouble
from devcluster.kubeobjects import secret
from devcluster.kubereal import KubeCluster, cluster_session
from devcluster.ports import wait_until
from pgpoolsync.kube.api import load_api_client
from pgpoolsync.kube.watch import Collection, Watcher


class Server(Protocol):
    ns: str

    def put(self, kind: str, obj: dict[str, Any]) -> None: ...

    def delete(self, kind: str, name: str) -> None: ...

    def kubeconfig(self, path: Path) -> Path: ...

    def forbid(self, verb: str, resource: str) -> None: ...


class DoubleServer:
    ns = "default"

    def __init__(self, double: KubeApiDouble) -> None:
        self.double = double

    def put(self, kind: str, obj: dict[str, Any]) -> None:
        self.double.put(kind, obj)

    def delete(self, kind: str, name: str) -> None:
        self.double.delete(kind, name, self.ns)

    def kubeconfig(self, path: Path) -> Path:
        return self.double.write_kubeconfig(path, namespace=self.ns)

    def forbid(self, verb: str, resource: str) -> None:
        self.double.forbidden.add((verb, resource))


class RealServer:
    """A fresh namespace; the watcher uses a ServiceAccount bound to a Role we can narrow."""

    def __init__(self, kube: KubeCluster) -> None:
        self.kube = kube
        self.ns = kube.namespace(f"contract-{random.randrange(16**6):06x}")
        self.rules = [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["list", "watch"]}]
        for obj in (
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "watcher"}},
            self._role(),
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": "watcher"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": "watcher",
                },
                "subjects": [{"kind": "ServiceAccount", "name": "watcher"}],
            },
        ):
            kube.apply(obj, self.ns)

    def _role(self) -> dict[str, Any]:
        return {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "watcher"},
            "rules": self.rules,
        }

    def put(self, kind: str, obj: dict[str, Any]) -> None:
        obj = {**obj, "apiVersion": "v1", "kind": "Secret"}
        obj["metadata"] = {**obj["metadata"], "namespace": self.ns}
        self.kube.kubectl("apply", "-f", "-", stdin=json.dumps(obj))

    def delete(self, kind: str, name: str) -> None:
        self.kube.kubectl("delete", kind, "-n", self.ns, name)

    def kubeconfig(self, path: Path) -> Path:
        return self.kube.token_kubeconfig(path, namespace=self.ns, service_account="watcher")

    def forbid(self, verb: str, resource: str) -> None:
        self.rules = [
            {**r, "verbs": [v for v in r["verbs"] if v != verb]}
            for r in self.rules
            if resource in r["resources"]
        ]
        self.kube.apply(self._role(), self.ns)


@pytest.fixture(scope="module")
def real_cluster() -> Iterator[KubeCluster]:
    yield from cluster_session()


@pytest.fixture(params=["double", pytest.param("real", marks=pytest.mark.kube)])
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    if request.param == "double":
        double = KubeApiDouble(bookmark_interval=0.3).start()
        yield DoubleServer(double)
        double.stop()
    else:
        yield RealServer(request.getfixturevalue("real_cluster"))


def _watcher(server: Server, tmp_path: Path, collection: Collection) -> Watcher:
    client = load_api_client(kubeconfig=str(server.kubeconfig(tmp_path / "kc")))
    w = Watcher(
        client, collection, notify=threading.Event().set, timeout_seconds=5, backoff_max=0.5
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
