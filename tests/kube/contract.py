"""The two servers of the contract modules (tests/kube/test_kube_contract*.py): the API double
(devcluster/kubeapi.py) and the real kube-apiserver of `.ci/kube`, behind one face. pgpoolsync
talks to either with a kubeconfig of the same Role, manifests/base/role.yaml's rules (the real
one a ServiceAccount bound to it; the double answers them: ``forbidden``, ``resource_names``);
the test reads back what the server stored as admin.

Each contract module's own ``server`` fixture yields ``servers(request)``, so that the ``kube``
marker of its real half stays in the module (tests/unit/test_architecture.py checks it)."""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from devcluster.kubeapi import KubeApiDouble
from devcluster.kubeobjects import GROUP, KIND, deployment, pod, replica_set
from devcluster.kubereal import ROOT, KubeCluster
from devcluster.ports import wait_until
from pgpoolsync.kube.api import load_api_client, request

Obj = dict[str, Any]
SA = "pgpoolsync"
RULES: list[Obj] = yaml.safe_load((ROOT / "manifests/base/role.yaml").read_text())["rules"]
DEPLOYMENT = "pgpool"  # the one name the Role's deployments rule allows
assert any(DEPLOYMENT in r.get("resourceNames", ()) for r in RULES)


class Server(Protocol):
    ns: str
    user: str  # who the Role's refusals name

    def put(self, kind: str, obj: Obj) -> None: ...

    def delete(self, kind: str, name: str) -> None: ...

    def kubeconfig(self, path: Path) -> Path: ...

    def forbid(self, verb: str, resource: str) -> None: ...

    def stored(self, kind: str) -> list[Obj]: ...

    def rollout_pod(self) -> str: ...


class DoubleServer:
    ns = "default"
    user = f"system:serviceaccount:default:{SA}"

    def __init__(self, double: KubeApiDouble) -> None:
        self.double = double
        double.user = self.user
        for rule in RULES:
            for resource in rule["resources"] if "resourceNames" in rule else ():
                double.resource_names[resource] = set(rule["resourceNames"])

    def put(self, kind: str, obj: Obj) -> None:
        self.double.put(kind, obj)

    def delete(self, kind: str, name: str) -> None:
        self.double.delete(kind, name, self.ns)

    def kubeconfig(self, path: Path) -> Path:
        return self.double.write_kubeconfig(path, namespace=self.ns)

    def forbid(self, verb: str, resource: str) -> None:
        self.double.forbidden.add((verb, resource))

    def stored(self, kind: str) -> list[Obj]:
        with self.double.store.cond:
            found = self.double.store.objects.get((kind, self.ns), {})
            return [copy.deepcopy(o) for _, o in sorted(found.items())]

    def rollout_pod(self) -> str:
        """The Deployment, its ReplicaSet and its one pod, as kubeobjects builds them."""
        self.put("deployments", deployment(DEPLOYMENT, namespace=self.ns, replicas=1))
        self.put("replicasets", replica_set(f"{DEPLOYMENT}-6d4cf", DEPLOYMENT, namespace=self.ns))
        self.put("pods", pod(f"{DEPLOYMENT}-6d4cf-x2kq9", f"{DEPLOYMENT}-6d4cf", namespace=self.ns))
        return f"{DEPLOYMENT}-6d4cf-x2kq9"


class RealServer:
    """A fresh namespace; pgpoolsync uses a ServiceAccount bound to a Role we can narrow."""

    def __init__(self, kube: KubeCluster) -> None:
        self.kube = kube
        self.ns = kube.namespace(f"contract-{random.randrange(16**6):06x}")
        self.user = f"system:serviceaccount:{self.ns}:{SA}"
        self.rules = copy.deepcopy(RULES)
        for obj in (
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": SA}},
            self._role(),
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": SA},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": SA},
                "subjects": [{"kind": "ServiceAccount", "name": SA}],
            },
        ):
            kube.apply(obj, self.ns)

    def _role(self) -> Obj:
        return {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": SA},
            "rules": self.rules,
        }

    def put(self, kind: str, obj: Obj) -> None:
        group = GROUP.get(kind)
        obj = {**obj, "apiVersion": f"{group}/v1" if group else "v1", "kind": KIND[kind]}
        obj["metadata"] = {**obj["metadata"], "namespace": self.ns}
        self.kube.kubectl("apply", "-f", "-", stdin=json.dumps(obj))

    def delete(self, kind: str, name: str) -> None:
        self.kube.kubectl("delete", kind, "-n", self.ns, name)

    def kubeconfig(self, path: Path) -> Path:
        return self.kube.token_kubeconfig(path, namespace=self.ns, service_account=SA)

    def forbid(self, verb: str, resource: str) -> None:
        """Drop ``verb`` from the rules for ``resource`` (the others stay), and wait until the
        authorizer says no (the Role reaches it through a watch)."""
        rules = [
            {**r, "verbs": [v for v in r["verbs"] if v != verb or resource not in r["resources"]]}
            for r in self.rules
        ]
        self.rules = [r for r in rules if r["verbs"]]
        self.kube.apply(self._role(), self.ns)
        can_i = ("auth", "can-i", verb, resource, "-n", self.ns, "--as", self.user)
        wait_until(
            lambda: self.kube.kubectl(*can_i, check=False).returncode != 0,
            what=f"the Role to refuse {verb} {resource}",
        )

    def stored(self, kind: str) -> list[Obj]:
        items: list[Obj] = self.kube.get(kind, "-n", self.ns)["items"]
        return sorted(items, key=lambda o: str(o["metadata"]["name"]))

    def rollout_pod(self) -> str:
        """A one-replica Deployment on the kwok node ("pause:none" is never pulled), admitted
        under enforce=restricted; the controllers make its ReplicaSet and pod."""
        container = {
            "name": "pause",
            "image": "pause:none",
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 65534,
                "allowPrivilegeEscalation": False,
                "capabilities": {"drop": ["ALL"]},
                "seccompProfile": {"type": "RuntimeDefault"},
            },
        }
        labels = {"app": DEPLOYMENT}
        spec = {"nodeSelector": {"type": "kwok"}, "containers": [container]}
        self.put(
            "deployments",
            {
                "metadata": {"name": DEPLOYMENT},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": labels},
                    "template": {"metadata": {"labels": labels}, "spec": spec},
                },
            },
        )
        pods = wait_until(lambda: self.stored("pods"), what="the Deployment's pod", timeout=60)
        return str(pods[0]["metadata"]["name"])


def servers(request: pytest.FixtureRequest) -> Iterator[Server]:
    """The ``server`` fixture's body: the double for the "double" param, else the real one."""
    if request.param == "double":
        double = KubeApiDouble(bookmark_interval=0.3).start()
        yield DoubleServer(double)
        double.stop()
    else:
        real = RealServer(request.getfixturevalue("kube"))
        yield real
        real.kube.kubectl("delete", "namespace", real.ns, "--wait=false", check=False)


def client(server: Server, tmp_path: Path) -> Any:
    """An API client with the Role's kubeconfig (a ``kubernetes.client.ApiClient``)."""
    return load_api_client(kubeconfig=str(server.kubeconfig(tmp_path / "kc")))


def refused(
    server: Server,
    tmp_path: Path,
    method: str,
    kind: str,
    name: str | None,
    body: Obj | None = None,
) -> Any:
    """The Status body of a call the server refuses (what an ``ApiError`` is made from), made
    with the Role's kubeconfig; a PATCH is a merge patch (an empty one unless given)."""
    patch = method == "PATCH"
    kind_of = "application/merge-patch+json" if patch else "application/json"
    with pytest.raises(ApiException) as caught:
        request(
            client(server, tmp_path), method, kind, server.ns, name=name,
            body={} if body is None and patch else body, content_type=kind_of,
        )  # fmt: skip
    return json.loads(str(caught.value.body))


def refusal(code: int, reason: str, message: str, details: dict[str, str]) -> Obj:
    """A Status body as kube-apiserver 1.37 answers a refusal, written out."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": details,
        "code": code,
    }
