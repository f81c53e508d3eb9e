"""Rollouts with the real Deployment controller of `.ci/kube` (pods Ready by its kwok node): the
sidecar's restart-requiring change rolls the Deployment once, pod by pod, within the
PodDisruptionBudget of manifests/base."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devcluster import PgCluster
from devcluster.kubereal import KubeCluster
from devcluster.ports import wait_until
from tests.kube.sidecar import Live, live_sidecar

pytestmark = [pytest.mark.kube]


@pytest.fixture(scope="module")
def live(kube: KubeCluster, cluster: PgCluster, pg_base: Path) -> Iterator[Live]:
    with live_sidecar(kube, cluster, pg_base / "kube-rollout-sidecar") as sidecar:
        yield sidecar


def _sample(kube: KubeCluster, ns: str) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """(ReplicaSet, pod) of every pod Ready and not terminating, and the status of the
    PodDisruptionBudget of manifests/base, from one kubectl call."""
    items = kube.get("pods,pdb", "-n", ns, "-l", "app.kubernetes.io/name=pgpool")["items"]
    ready: list[tuple[str, str]] = []
    budget: dict[str, Any] = {}
    for p in items:
        meta = p["metadata"]
        if p["kind"] == "PodDisruptionBudget" and meta["name"] == "pgpool":
            budget = p["status"]
        conditions = p["status"].get("conditions", []) if p["kind"] == "Pod" else []
        going = meta.get("deletionTimestamp")
        if not going and any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
            ready.append((meta["ownerReferences"][0]["name"], meta["name"]))
    return ready, budget


BUDGET = ("expectedPods", "currentHealthy", "desiredHealthy", "disruptionsAllowed")


def _budget(status: dict[str, Any]) -> tuple[int, ...]:
    """The four numbers of a PDB's status that an eviction is judged by."""
    return tuple(int(status.get(k, -1)) for k in BUDGET)


def _watch_budget(kube: KubeCluster, ns: str, out: Path) -> subprocess.Popen[bytes]:
    """kubectl watching the PDB into ``out``: a line per version stored, its resourceVersion
    then the numbers of _budget (the versions an eviction could have been judged against)."""
    fields = " ".join(f"{{.status.{k}}}" for k in BUDGET)
    template = f'jsonpath={{.metadata.resourceVersion}} {fields}{{"\\n"}}'
    argv = ["kubectl", "--kubeconfig", str(kube.kubeconfig), "get", "pdb", "pgpool", "-n", ns]
    with out.open("wb") as f:
        return subprocess.Popen([*argv, "--watch", "-o", template], stdout=f)


def _evict(kube: KubeCluster, ns: str, pod: str) -> subprocess.CompletedProcess[str]:
    """A policy/v1 Eviction of the pod as `kubectl drain` posts it (as admin); -v=6 logs the
    HTTP status and the server's answer on stderr."""
    body = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod}}
    return kube.kubectl(
        "create", "-v=6", "--raw", f"/api/v1/namespaces/{ns}/pods/{pod}/eviction", "-f", "-",
        stdin=json.dumps(body), check=False,
    )  # fmt: skip


def test_a_restart_requiring_change_rolls_the_deployment_once_pod_by_pod(
    live: Live, pg_base: Path
) -> None:
    """The real Deployment controller (pods Ready by kwok): one patch, one new ReplicaSet, never
    fewer Ready pods than replicas (maxUnavailable 0), and the PodDisruptionBudget of
    manifests/base (minAvailable 1) never spent by the rollout; then a drain's second eviction is
    refused by it. Last: it moves the primary's port and replaces the pods."""
    kube, ns = live.kube, live.ns
    deploy = kube.get("deployment", "-n", ns, "pgpool")
    generation = deploy["metadata"]["generation"]
    rs_before = {r["metadata"]["name"] for r in kube.get("rs", "-n", ns)["items"]}
    # The budget is there and selects the Deployment's 2 pods: 2 healthy, 1 needed, 1 allowed
    # (once the disruption controller has counted them: a fresh namespace starts at zeros).
    samples: list[tuple[int, ...]] = []

    def counted() -> list[tuple[str, str]]:
        ready, budget = _sample(kube, ns)
        samples.append(_budget(budget))
        return ready if samples[-1] == (2, 2, 1, 1) else []

    try:
        pod = wait_until(counted, what="the budget counting 2 pods", timeout=60)[0][1]
    except AssertionError as e:
        raise AssertionError(f"{e}: {samples[-3:]}") from None
    base = pg_base / "kube-real-rollout"
    base.mkdir()
    pool, run = kube.sidecar(
        base,
        namespace=ns,
        pod=pod,
        args=["--preset", "pgo", "--cluster", "hippo", "--service-address", "cluster-ip",
              "--restart-policy", "rollout"],
    )  # fmt: skip
    run.start()
    pool.start()
    seen: list[list[tuple[str, str]]] = []
    watched = base / "pdb.watch"
    watch = _watch_budget(kube, ns, watched)
    try:
        run.wait_first_reload()
        wait_until(watched.read_text, what="the watch on the budget")
        # backend_port0 of a running pgpool changes only by a restart.
        kube.kubectl(
            "patch", "service", "-n", ns, "hippo-primary", "--type", "json", "-p",
            '[{"op": "replace", "path": "/spec/ports/0/port", "value": 5433}]',
        )  # fmt: skip

        def rolled() -> bool:
            seen.append(_sample(kube, ns)[0])
            new = {rs for rs, _ in seen[-1]} - rs_before
            return len(seen[-1]) == 2 and len(new) == 1 and {rs for rs, _ in seen[-1]} == new

        wait_until(rolled, what="the Deployment rolled", timeout=90)
        for _ in range(20):  # and nothing more happens
            seen.append(_sample(kube, ns)[0])
        after = kube.get("deployment", "-n", ns, "pgpool")
        assert after["metadata"]["generation"] == generation + 1
        rs_after = {r["metadata"]["name"] for r in kube.get("rs", "-n", ns)["items"]}
        assert len(rs_after - rs_before) == 1
        assert min(len(s) for s in seen) >= 2, seen  # maxUnavailable 0
        # Every version of the budget stored from before the patch to now (the watch has the
        # last one): the rollout never spent it, so a drain during the rollout could still have
        # taken one pod.
        last = kube.get("pdb", "-n", ns, "pgpool")["metadata"]["resourceVersion"]

        def versions() -> list[tuple[int, ...]]:
            lines = [ln.split() for ln in watched.read_text().splitlines()]
            done = any(ln[0] == last for ln in lines)
            return [tuple(int(v) for v in ln[1:]) for ln in lines] if done else []

        budgets = wait_until(versions, what=f"the watch at the budget's version {last}")
        spent = [b for b in budgets if b[1] < b[2] or b[3] < 1]
        assert not spent, budgets
        assert any(b[0] == 3 for b in budgets), budgets  # the watch saw the rollout's 3 pods
        assert "rollout" in run.log_text().lower()
    finally:
        watch.terminate()
        watch.wait()
        run.stop()
        pool.stop()
    # A drain with no room for a replacement: a ResourceQuota of one pod, in force once a pod
    # like the Deployment's is refused by it (a server-side dry run; a cordon would be judged by
    # the scheduler's cache, which once placed the replacement before it saw the cordon). The
    # first eviction takes the budget's one disruption, so the budget stays at 0 and the next
    # eviction is refused.
    first, second = sorted(p for _, p in _sample(kube, ns)[0])
    like = {"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "probe-"}}
    like["spec"] = kube.get("pod", "-n", ns, second)["spec"]
    quota = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "no-room"}}
    kube.apply({**quota, "spec": {"hard": {"pods": "1"}}}, ns)
    try:
        wait_until(
            lambda: "exceeded quota: no-room" in kube.kubectl(
                "create", "--dry-run=server", "-n", ns, "-f", "-",
                stdin=json.dumps(like), check=False,
            ).stderr,
            what="the quota in force", timeout=60,
        )  # fmt: skip
        done = _evict(kube, ns, first)
        assert " 201 Created" in done.stderr, done.stderr
        # As the disruption controller counts it (the evicted pod may still be terminating).
        wait_until(
            lambda: _budget(_sample(kube, ns)[1])[1:] == (1, 1, 0),
            what="the budget at 0", timeout=60,
        )  # fmt: skip
        refused = _evict(kube, ns, second)
        assert " 429 Too Many Requests" in refused.stderr, refused.stderr
        assert "Cannot evict pod as it would violate the pod's disruption budget" in refused.stderr
        assert "needs 1 healthy pods and has 1 currently" in refused.stderr
        assert "deletionTimestamp" not in kube.get("pod", "-n", ns, second)["metadata"]
    finally:
        kube.kubectl("delete", "resourcequota", "-n", ns, "no-room")

    # And the Deployment is whole again: 2 Ready pods, one disruption allowed.
    def whole() -> bool:
        ready, budget = _sample(kube, ns)
        return len(ready) == 2 and _budget(budget) == (2, 2, 1, 1)

    wait_until(whole, what="2 Ready pods and the budget whole again", timeout=60)
