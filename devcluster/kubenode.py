"""The Deployment of manifests/base on `.ci/kube`'s real node (kubelet, containerd, kube-proxy),
in front of a PostgreSQL primary + replica on this host.

`PgpoolOnNode` is one namespace: the three Secrets the README asks for, an operator's user Secrets
(Crunchy PGO's labels, the `pgo` overlay), the primary and replica Services without a selector
and their EndpointSlices, written here as an operator's are (the endpoints are this host's address
on the node's veth, `NODE_HOST_IP`, at each PostgreSQL's port, each named by a pod), and the
kustomization of the `pgo` overlay with only what a test cluster without a registry or DNS needs:
the images as `.ci/images` tagged them (IfNotPresent: `.ci/kube` imported them), the real node's
toleration and selector, `--service-address cluster-ip`, and the settings a test passes.

Clients on this host reach the pgpool Service's clusterIP through the real kube-proxy: `.ci/kube`
routes the Service range to the node.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from devcluster import PgCluster
from devcluster.drills import pods
from devcluster.kubereal import ROOT, KubeCluster, read_env
from devcluster.ports import wait_until

PGO = "postgres-operator.crunchydata.com"
MONITOR_USER = "pgpool_monitor"
# The PostgreSQL "pods" of the EndpointSlices: (name, uid); pg-0 is the first primary's port
POD_NAMES = tuple((p.name, p.uid) for p in pods())
Endpoint = tuple[str, str, bool]
# The endpoints also serve a Service port of this name: a test moving the Service to a new port
# keeps the old one open under it, as an operator moving a port would, so pods still on it work
MOVED_PORT_NAME = "previous"  # a pod's name and uid, and whether it is ready


@dataclass(frozen=True)
class Node:
    """The real node of `.ci/kube` as its env file describes it."""

    name: str
    host_ip: str  # this host, as the node and its pods reach it
    client_net: str  # where the node's connections to this host come from (masqueraded pods)
    veth: str  # this host's end of the node's veth pair

    @classmethod
    def of(cls, kube: KubeCluster) -> Node:
        env = read_env(kube.dir)
        host_ip = env["NODE_HOST_IP"]
        return cls(
            name=env["NODE_NAME"],
            host_ip=host_ip,
            client_net=env["NODE_IP"] + "/32",
            veth=env["NODE_VETH"],
        )


def _b64(data: Mapping[str, str]) -> dict[str, str]:
    return {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}


def _secret(name: str, data: Mapping[str, str], labels: Mapping[str, str] | None = None) -> Any:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "labels": dict(labels or {})},
        "type": "Opaque",
        "data": _b64(data),
    }


def user_secret(user: str, password: str, *, cluster: str = "hippo") -> Any:
    """A user's Secret as Crunchy PGO v5 writes it."""
    return _secret(
        f"{cluster}-pguser-{user.replace('_', '-')}",
        {"user": user, "password": password},
        {f"{PGO}/cluster": cluster, f"{PGO}/pguser": user},
    )


class PgpoolOnNode:
    """manifests/overlays/pgo (cluster ``hippo``) deployed on the real node; see the module."""

    def __init__(
        self,
        kube: KubeCluster,
        base: Path,
        cluster: PgCluster,
        *,
        users: Mapping[str, str],
        settings: Mapping[str, str] = {},
        sidecar_env: Mapping[str, str] = {},
        replicas: int = 2,
    ) -> None:
        """``settings``: merged into the settings ConfigMap; ``sidecar_env``: values for the
        sidecar's own ``env`` entries (which win over the ConfigMap), by name."""
        self.kube, self.base, self.cluster = kube, base, cluster
        self.node = Node.of(kube)
        self.users = dict(users)
        self.settings = {"PGPOOLSYNC_SERVICE_ADDRESS": "cluster-ip", **settings}
        self.sidecar_env = dict(sidecar_env)
        self.replicas = replicas
        self.ns = kube.namespace(f"node-{secrets.token_hex(3)}")
        self.ports = {POD_NAMES[0][0]: cluster.primary.port, POD_NAMES[1][0]: cluster.replica.port}
        self.pcp_password = secrets.token_urlsafe(18)
        self.ip = ""

    # -- the operator's side --------------------------------------------------------------------

    def put(self, obj: Any) -> None:
        self.kube.apply(obj, self.ns)

    def slices(self, *, primary: Endpoint, replica: Endpoint) -> None:
        """Each Service's one endpoint: a PostgreSQL "pod" (by name: ``pg-0`` is the first
        primary's port, ``pg-1`` the first replica's) and whether it is ready."""
        for service, (pod, uid, ready) in (("hippo-primary", primary), ("hippo-replicas", replica)):
            self.put(
                {
                    "apiVersion": "discovery.k8s.io/v1",
                    "kind": "EndpointSlice",
                    "metadata": {
                        "name": f"{service}-operator",
                        "labels": {
                            "kubernetes.io/service-name": service,
                            "endpointslice.kubernetes.io/managed-by": "pgpoolsync-tests",
                        },
                    },
                    "addressType": "IPv4",
                    "ports": [
                        {"name": name, "port": self.ports[pod], "protocol": "TCP"}
                        for name in ("postgres", MOVED_PORT_NAME)
                    ],
                    "endpoints": [
                        {
                            "addresses": [self.node.host_ip],
                            "conditions": {"ready": ready},
                            "targetRef": {"kind": "Pod", "name": pod, "uid": uid},
                        }
                    ],
                }
            )

    def _objects(self) -> None:
        monitor_password = secrets.token_urlsafe(18)
        self.cluster.set_role(MONITOR_USER, monitor_password)
        with self.cluster.connect() as conn:
            conn.execute(f"GRANT pg_monitor TO {MONITOR_USER}")
        key = base64.b64encode(os.urandom(32)).decode()
        self.put(_secret("pgpool-key", {"pgpoolkey": key}))
        self.put(_secret("pgpool-pcp", {"password": self.pcp_password}))
        self.put(
            _secret("pgpool-exporter", {"username": MONITOR_USER, "password": monitor_password})
        )
        self.put(user_secret(MONITOR_USER, monitor_password))  # in pool_passwd, as the README says
        for user, password in self.users.items():
            self.cluster.set_role(user, password)
            self.put(user_secret(user, password))
        for name in ("hippo-primary", "hippo-replicas"):
            self.put(
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": {"name": name},
                    "spec": {"ports": [{"name": "postgres", "port": 5432, "protocol": "TCP"}]},
                }
            )
        self.slices(primary=(*POD_NAMES[0], True), replica=(*POD_NAMES[1], True))

    def _kustomization(self) -> Path:
        overlay = self.base / "overlay"
        overlay.mkdir(parents=True, exist_ok=True)
        pull = [
            {
                "op": "add",
                "path": f"/spec/template/spec/{where}/imagePullPolicy",
                "value": "IfNotPresent",
            }
            for where in ("initContainers/0", "containers/0", "containers/1")
        ]
        place = [
            {"op": "add", "path": "/spec/template/spec/nodeSelector",
             "value": {"pgpoolsync.test/node": "real"}},
            {"op": "add", "path": "/spec/template/spec/tolerations",
             "value": [{"key": "pgpoolsync.test/node", "operator": "Exists"}]},
            {"op": "replace", "path": "/spec/replicas", "value": self.replicas},
        ]  # fmt: skip
        sidecar = {
            "name": "pgpoolsync",
            "env": [{"name": k, "value": v} for k, v in self.sidecar_env.items()],
        }
        kustomization = {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            # kustomize takes no absolute path to a base: relative, from here
            "resources": [os.path.relpath(ROOT / "manifests" / "overlays" / "pgo", overlay)],
            "images": [
                {"name": "pgpoolsync", "newName": "localhost/pgpoolsync"},
                {"name": "pgpool", "newName": "localhost/pgpool"},
            ],
            "configMapGenerator": [
                {
                    "name": "pgpoolsync-settings",
                    "behavior": "merge",
                    "literals": [f"{k}={v}" for k, v in self.settings.items()],
                }
            ],
            "patches": [
                {
                    "target": {"kind": "Deployment", "name": "pgpool"},
                    "patch": json.dumps(pull + place),
                },
                {  # a strategic merge: the env entries by name
                    "patch": json.dumps(
                        {
                            "apiVersion": "apps/v1",
                            "kind": "Deployment",
                            "metadata": {"name": "pgpool"},
                            "spec": {"template": {"spec": {"initContainers": [sidecar]}}},
                        }
                    )
                },
            ],
        }
        (overlay / "kustomization.yaml").write_text(json.dumps(kustomization))
        return overlay

    # -- the Deployment -------------------------------------------------------------------------

    def __enter__(self) -> PgpoolOnNode:
        self._objects()
        self.kube.kubectl("apply", "-n", self.ns, "-k", str(self._kustomization()))
        self.ip = self.kube.get("service", "-n", self.ns, "pgpool")["spec"]["clusterIP"]
        self.wait_ready(self.replicas)
        return self

    def __exit__(self, *exc: object) -> None:
        self.kube.kubectl("delete", "namespace", self.ns, "--wait=false", check=False)

    def pods(self, *, ready: bool = False) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.kube.get(
            "pods", "-n", self.ns, "-l", "app.kubernetes.io/instance=pgpool"
        )["items"]
        if not ready:
            return items
        return [
            p
            for p in items
            if not p["metadata"].get("deletionTimestamp")
            and any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in p["status"].get("conditions", [])
            )
        ]

    def wait_ready(self, count: int, *, timeout: float = 180) -> list[dict[str, Any]]:
        def enough() -> list[dict[str, Any]]:
            pods = self.pods(ready=True)
            if len(pods) >= count:
                return pods
            time.sleep(0.5)
            return []

        try:
            return wait_until(
                enough, what=f"{count} Ready pgpool pods in {self.ns}", timeout=timeout
            )
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.describe()}") from None

    def describe(self) -> str:
        """Pods, their containers' states and the namespace's warning Events (for failures)."""
        out = []
        for p in self.pods():
            statuses = p["status"].get("initContainerStatuses", []) + p["status"].get(
                "containerStatuses", []
            )
            states = ", ".join(f"{c['name']}: {json.dumps(c.get('state'))}" for c in statuses)
            out.append(f"{p['metadata']['name']} {p['status'].get('phase')}: {states}")
        events = self.kube.get("events", "-n", self.ns)["items"]
        out += [
            f"{e['involvedObject']['name']}: {e['reason']}: {e['message']}"
            for e in events
            if e.get("type") == "Warning"
        ]
        return "\n".join(out)

    def logs(self, pod: str, container: str = "pgpoolsync") -> str:
        return self.kube.kubectl("logs", "-n", self.ns, pod, "-c", container, check=False).stdout

    def exec(self, pod: str, container: str, *argv: str) -> str:
        return self.kube.kubectl("exec", "-n", self.ns, pod, "-c", container, "--", *argv).stdout

    def connect(self, user: str, password: str, **kw: Any) -> psycopg.Connection[Any]:
        """A session through the pgpool Service (kube-proxy picks the pod)."""
        kw.setdefault("dbname", "postgres")
        kw.setdefault("connect_timeout", 10)
        return psycopg.connect(
            host=self.ip, port=9999, user=user, password=password, autocommit=True, **kw
        )

    def can_login(self, user: str, password: str) -> bool:
        try:
            with self.connect(user, password) as conn:
                return conn.execute("SELECT 1").fetchone() == (1,)
        except psycopg.OperationalError:
            return False

    def wait_login(self, user: str, password: str, *, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not self.can_login(user, password):
            if time.monotonic() > deadline:
                raise AssertionError(f"{user} cannot log in through the Service\n{self.describe()}")
            time.sleep(0.5)
