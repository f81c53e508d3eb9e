"""The sidecar as the manifests run it, on `.ci/kube`'s kwok node: the `pgo` overlay applied (pods
Ready by kwok, no containers run) and `pgpoolsync run --kube` as a host process with the token of
the manifests' ServiceAccount (the Role of manifests/base, not admin), against real PostgreSQL +
pgpool; a Service's clusterIP is an address on `lo` with a forwarder standing in for kube-proxy.
Shared by test_kube_real.py and test_kube_rollout.py."""

from __future__ import annotations

import contextlib
import random
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from devcluster import PgCluster, Pgpool
from devcluster.kubenode import user_secret
from devcluster.kubereal import ROOT, KubeCluster, ServiceVip
from devcluster.ports import wait_until
from devcluster.runprocess import RunProcess


def kustomize(target: str) -> str:
    path = ROOT / "manifests" / (target if target == "base" else f"overlays/{target}")
    done = subprocess.run(
        ["kubectl", "kustomize", str(path)], capture_output=True, text=True, check=True
    )
    return done.stdout


def service(name: str) -> dict[str, Any]:
    return {  # selector-less: its EndpointSlices are ours, as an operator's are
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"ports": [{"name": "postgres", "port": 5432, "protocol": "TCP"}]},
    }


def endpoint_slice(service: str, ready: list[bool]) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{service}-test",
            "labels": {
                "kubernetes.io/service-name": service,
                "endpointslice.kubernetes.io/managed-by": "pgpoolsync-tests",
            },
        },
        "addressType": "IPv4",
        "ports": [{"name": "postgres", "port": 5432, "protocol": "TCP"}],
        "endpoints": [
            {"addresses": [f"10.244.0.{i + 10}"], "conditions": {"ready": r}}
            for i, r in enumerate(ready)
        ],
    }


class Live:
    def __init__(self, kube: KubeCluster, ns: str, pool: Pgpool, run: RunProcess) -> None:
        self.kube, self.ns, self.pool, self.run = kube, ns, pool, run

    def put(self, obj: dict[str, Any]) -> None:
        self.kube.apply(obj, self.ns)

    def events(self, name: str) -> list[dict[str, Any]]:
        items = self.kube.get("events", "-n", self.ns)["items"]
        return [e for e in items if e["involvedObject"]["name"] == name]


@contextlib.contextmanager
def live_sidecar(kube: KubeCluster, cluster: PgCluster, base: Path) -> Iterator[Live]:
    """The pgo overlay applied (its pods Ready by kwok), the PostgreSQL Services on loopback, and
    `pgpoolsync run --kube` as a host process with the manifests' ServiceAccount token."""
    ns = kube.namespace(f"sync-{random.randrange(16**6):06x}")
    kube.kubectl("apply", "-n", ns, "-f", "-", stdin=kustomize("pgo"))
    pod = wait_until(
        lambda: kube.get("pods", "-n", ns)["items"], what="a pod of the Deployment", timeout=60
    )[0]["metadata"]["name"]
    vips: list[ServiceVip] = []
    base.mkdir()
    run: RunProcess | None = None
    pool: Pgpool | None = None
    try:
        for name, port in (
            ("hippo-primary", cluster.primary.port),
            ("hippo-replicas", cluster.replica.port),
        ):
            kube.apply(service(name), ns)
            ip = kube.get("service", "-n", ns, name)["spec"]["clusterIP"]
            vips.append(ServiceVip(ip, 5432, port))
        kube.apply(endpoint_slice("hippo-primary", [True]), ns)
        kube.apply(endpoint_slice("hippo-replicas", [True]), ns)
        cluster.set_role("real_alice", "alice-1", encryption="scram-sha-256")
        kube.apply(user_secret("real_alice", "alice-1"), ns)
        pool, run = kube.sidecar(
            base,
            namespace=ns,
            pod=pod,
            args=[
                "--preset", "pgo", "--cluster", "hippo", "--service-address", "cluster-ip",
                "--watch-timeout-seconds", "10", "--node-settle-seconds", "1",
            ],
        )  # fmt: skip
        run.start()
        pool.start()
        run.wait_first_reload()
        yield Live(kube, ns, pool, run)
    finally:
        if run is not None:
            run.stop()
        if pool is not None:
            pool.stop()
        for vip in vips:
            vip.close()
        kube.kubectl("delete", "namespace", ns, "--wait=false", check=False)
