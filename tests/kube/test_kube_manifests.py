"""The manifests as a real kube-apiserver admits them (`.ci/kube`): base and every overlay, whole,
into namespaces that enforce the restricted Pod Security Standard."""

from __future__ import annotations

import pytest

from devcluster.kubereal import ROOT, KubeCluster
from devcluster.ports import wait_until
from tests.kube.sidecar import kustomize

pytestmark = [pytest.mark.kube]

TARGETS = ["base", *sorted(p.name for p in (ROOT / "manifests" / "overlays").iterdir())]


@pytest.mark.parametrize("target", TARGETS)
def test_the_kustomization_applies_whole_into_a_restricted_namespace_without_a_warning(
    kube: KubeCluster, target: str
) -> None:
    ns = kube.namespace(f"manifests-{target}")
    done = kube.kubectl(
        "apply", "--server-side", "--validate=strict", "-n", ns, "-f", "-",
        stdin=kustomize(target), check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr, done.stderr
    kinds = {
        item["kind"] for item in kube.get("-n", ns, "all,podmonitor,prometheusrule,role")["items"]
    }
    assert {"Deployment", "Service", "PodMonitor", "PrometheusRule", "Role"} <= kinds
    # The ReplicaSet's pods are admitted under enforce=restricted, and keep the native sidecar.
    pods = wait_until(
        lambda: [
            p for p in kube.get("pods", "-n", ns)["items"] if p["status"].get("phase") == "Running"
        ],
        what=f"running pods in {ns}",
        timeout=60,
    )
    sidecar = pods[0]["spec"]["initContainers"][0]
    assert sidecar["name"] == "pgpoolsync" and sidecar["restartPolicy"] == "Always"
    pgpool = next(c for c in pods[0]["spec"]["containers"] if c["name"] == "pgpool")
    assert "sleep" in pgpool["lifecycle"]["preStop"]
    failed = [
        e["message"]
        for e in kube.get("events", "-n", ns)["items"]
        if e["reason"] in ("FailedCreate", "FailedScheduling")
    ]
    assert not failed
