"""On `.ci/kube`'s real node (kubelet, containerd, runc, the CNI bridge, kube-proxy in iptables
mode): the whole Deployment of manifests/base (the `pgo` overlay, images from `.ci/images`) in
front of a PostgreSQL primary + replica on this host behind selector-less Services whose
EndpointSlices the tests write. Every session goes through the pgpool Service's clusterIP and the
real kube-proxy; the sidecar runs with the pod's own ServiceAccount token, reaching the API server
through the `kubernetes` Service."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from devcluster import PgCluster, drills, netfault
from devcluster.kubedrill import KubeRig
from devcluster.kubenode import MOVED_PORT_NAME, Node, PgpoolOnNode, user_secret
from devcluster.kubereal import KubeCluster
from devcluster.ports import wait_until
from devcluster.sessions import streaming

pytestmark = [pytest.mark.kube]

ALICE = "alice"


@pytest.fixture(scope="module")
def node_pg(kube: KubeCluster, pg_base: Path) -> Iterator[PgCluster]:
    """A cluster of its own, listening where the node's pods reach this host (the switchover
    drill swaps its primary and replica)."""
    assert netfault.available(), "the drills need iptables and root (.ci/install installs it)"
    node = Node.of(kube)
    cluster = PgCluster(pg_base / "node-pg", also_listen=(node.host_ip, node.client_net))
    try:
        cluster.start()
        drills.prepare(cluster)
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def deployed(kube: KubeCluster, node_pg: PgCluster, pg_base: Path) -> Iterator[PgpoolOnNode]:
    with PgpoolOnNode(
        kube,
        pg_base / "node-deploy",
        node_pg,
        users={ALICE: "alice-1", drills.USER: drills.PASSWORD},
        settings={"PGPOOL_PARAMS_NUM_INIT_CHILDREN": "8", "PGPOOL_PARAMS_MAX_POOL": "2"},
    ) as d:
        yield d


def _stamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _show(result: drills.DrillResult) -> str:
    failures = "\n".join(result.describe_failures())
    return f"{result.summary()}\nfailed after 2 s:\n{failures}\npgpoolsync:\n{result.log}"


def test_the_deployment_serves_logins_through_the_pgpool_service_on_the_real_node(
    deployed: PgpoolOnNode,
) -> None:
    pods = deployed.pods(ready=True)
    assert len(pods) == 2
    assert {p["spec"]["nodeName"] for p in pods} == {deployed.node.name}
    deployed.wait_login(ALICE, "alice-1")
    with deployed.connect(ALICE, "alice-1") as conn:
        nodes = conn.execute("SHOW pool_nodes").fetchall()
    assert [n[3] for n in nodes] == ["up", "up"], nodes
    assert not deployed.can_login(ALICE, "wrong")


def test_pgpool_starts_only_once_the_sidecars_startup_probe_has_passed(
    deployed: PgpoolOnNode,
) -> None:
    """The native sidecar's startupProbe (/readyz) holds pgpool back until the files exist:
    pgpool starts after it, once. Started beside it (no gate), pgpool would find no pgpool.conf,
    exit, and be restarted: the restart count is the check."""
    for pod in deployed.pods(ready=True):
        sidecar = pod["status"]["initContainerStatuses"][0]
        pgpool = next(c for c in pod["status"]["containerStatuses"] if c["name"] == "pgpool")
        assert sidecar["name"] == "pgpoolsync" and sidecar["started"], sidecar
        assert "running" in sidecar["state"], sidecar
        assert pgpool["restartCount"] == 0, pgpool
        sidecar_started = _stamp(sidecar["state"]["running"]["startedAt"])
        pgpool_started = _stamp(pgpool["state"]["running"]["startedAt"])
        assert pgpool_started >= sidecar_started, (sidecar, pgpool)


def test_the_kubelet_lays_out_the_secret_volumes_with_fs_group_and_default_mode(
    deployed: PgpoolOnNode,
) -> None:
    pod = deployed.pods(ready=True)[0]["metadata"]["name"]
    for path in (
        "/var/run/secrets/pgpool-key/pgpoolkey",
        "/var/run/secrets/pgpool-pcp/password",
        "/var/run/secrets/pgpool-monitor/password",
    ):
        mode_group = deployed.exec(pod, "pgpoolsync", "stat", "-L", "-c", "%a %g", path)
        assert mode_group.split() == ["440", "10001"], (path, mode_group)
    # what the sidecar wrote from them: its own, 0600, read by pgpool (the same uid)
    owned = deployed.exec(pod, "pgpool", "stat", "-c", "%a %u", "/etc/pgpool/pool_passwd")
    assert owned.split() == ["600", "10001"], owned


def test_a_rotated_secret_reaches_both_pods_and_the_new_password_logs_in_through_the_service(
    deployed: PgpoolOnNode, node_pg: PgCluster
) -> None:
    node_pg.set_role(ALICE, "alice-2")
    deployed.put(user_secret(ALICE, "alice-2"))

    def both_pods_have_it() -> bool:  # kube-proxy picks a pod per connection: 12 in a row
        return all(deployed.can_login(ALICE, "alice-2") for _ in range(12))

    wait_until(both_pods_have_it, what="alice's new password through the Service", timeout=60)
    assert not deployed.can_login(ALICE, "alice-1")


def test_the_sidecars_own_token_is_never_refused(deployed: PgpoolOnNode) -> None:
    for pod in deployed.pods():
        lines = deployed.logs(pod["metadata"]["name"]).splitlines()
        messages = [str(json.loads(line).get("message", "")) for line in lines if line[:1] == "{"]
        assert any("reloaded pgpool" in m for m in messages), lines[-20:]
        refused = [m for m in messages if "Forbidden" in m or "Unauthorized" in m]
        assert refused == [], refused


def test_replica_lost_through_real_kube_proxy_every_login_after_two_seconds_succeeds(
    deployed: PgpoolOnNode, node_pg: PgCluster
) -> None:
    r = drills.replica_lost_on(KubeRig(deployed), node_pg, topology=True)
    assert len(r.after()) >= 10, _show(r)
    assert r.failed_after() == [], _show(r)
    assert r.recovered_at is not None and r.back_at is not None, _show(r)
    assert r.recovered_at - r.back_at < 10.0, _show(r)


def test_switchover_through_real_kube_proxy_every_write_after_two_seconds_is_on_the_new_primary(
    deployed: PgpoolOnNode, node_pg: PgCluster
) -> None:
    """Both PostgreSQL endpoints are this host's address (told apart by pod and port), so only
    the pods in the EndpointSlices show the sidecars the switchover."""
    r = drills.switchover_on(KubeRig(deployed), node_pg, topology=True)
    after = r.after()
    assert len(after) >= 10, _show(r)
    assert r.failed_after() == [], _show(r)
    assert {s.port for s in after} == {node_pg.primary.port}, _show(r)
    assert "recycled" in r.log and "pod pg-1" in r.log, _show(r)


class _Held:
    """Sessions opened before the rollout, each asked something every half second until
    closed; what each answered or raised is kept."""

    def __init__(self, rig: KubeRig, count: int) -> None:
        self.conns = [rig.connect() for _ in range(count)]
        self.errors: list[str] = []
        self.answers = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            for conn in self.conns:
                try:
                    conn.execute("SELECT 1").fetchone()
                    self.answers += 1
                except psycopg.Error as e:
                    self.errors.append(str(e).strip())

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        for conn in self.conns:
            conn.close()


def _old_pods(deployed: PgpoolOnNode, names: set[str]) -> list[dict[str, Any]]:
    return [p for p in deployed.pods() if p["metadata"]["name"] in names]


def test_a_restart_requiring_change_rolls_the_pods_and_the_old_ones_drain_their_sessions(
    deployed: PgpoolOnNode, kube: KubeCluster
) -> None:
    """The sidecars see a change pgpool takes only at start (the primary Service's port) and
    roll the Deployment once. The old pods drain as the manifests document: the preStop sleep
    while they leave the Service, then pgpool's smart shutdown waits for every open session;
    new logins keep working through the Service all along; once the sessions end, the old pods
    go at once, long before the grace period's SIGKILL."""
    rig = KubeRig(deployed)
    ns = deployed.ns
    old = {p["metadata"]["name"] for p in deployed.pods()}
    rs_before = {r["metadata"]["name"] for r in kube.get("rs", "-n", ns)["items"]}
    held = _Held(rig, 8)
    try:
        with streaming(rig.read, interval=0.5) as stream:
            # pgpool takes backend_port0 only at start; the old port stays open for the old pods
            ports = [
                {"name": "postgres", "port": 5433, "protocol": "TCP"},
                {"name": MOVED_PORT_NAME, "port": 5432, "protocol": "TCP"},
            ]
            kube.kubectl(
                "patch", "service", "-n", ns, "hippo-primary", "--type", "merge",
                "-p", json.dumps({"spec": {"ports": ports}}),
            )  # fmt: skip

            def rolled() -> bool:
                ready = {p["metadata"]["name"] for p in deployed.pods(ready=True)}
                return len(ready) == 2 and not ready & old

            wait_until(rolled, what="two new pods Ready", timeout=180)
            time.sleep(1.0)  # sessions keep going after the rollout
        # kube-proxy spread the 8 sessions over the two old pods (all on one: 1 in 128)
        terminating = _old_pods(deployed, old)
        assert terminating, "the old pods went while sessions were open"
        assert all(p["metadata"].get("deletionTimestamp") for p in terminating), terminating
        assert held.errors == [] and held.answers > 0, held.errors[:5]
        failed = [s.error for s in stream.sessions if not s.ok]
        assert failed == [] and len(stream.sessions) >= 10, failed
    finally:
        held.close()
    closed = time.time()
    kill_at = min(_stamp(p["metadata"]["deletionTimestamp"]) for p in terminating)
    wait_until(lambda: not _old_pods(deployed, old), what="the old pods gone", timeout=90)
    gone = time.time()
    assert gone < kill_at - 5, f"gone {gone - closed:.1f} s after the sessions closed"
    rs_after = {r["metadata"]["name"] for r in kube.get("rs", "-n", ns)["items"]}
    assert len(rs_after - rs_before) == 1
