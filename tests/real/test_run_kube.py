"""`pgpoolsync run --kube` (real client, API double) with real PostgreSQL + pgpool."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devcluster import PgCluster, Pgpool, can_login
from devcluster.kubeapi import KubeApiDouble
from devcluster.kubeobjects import endpoint_slice, secret, service
from devcluster.ports import wait_until
from devcluster.runprocess import RunProcess

pytestmark = pytest.mark.real

PGO = "postgres-operator.crunchydata.com"


def pgo_secret(user: str, password: str) -> dict[str, object]:
    return secret(
        f"hippo-pguser-{user}",
        {"user": user, "password": password, "verifier": "SCRAM-SHA-256$4096:x$y:z"},
        labels={f"{PGO}/cluster": "hippo", f"{PGO}/pguser": user},
    )


@pytest.fixture(scope="module")
def live(cluster: PgCluster, pg_base: Path) -> Iterator[tuple[Pgpool, RunProcess, KubeApiDouble]]:
    base = pg_base / "run-kube"
    base.mkdir()
    api = KubeApiDouble(bookmark_interval=1.0).start()
    api.put("services", service("hippo-primary", port=cluster.primary.port, cluster_ip="127.0.0.1"))
    api.put(
        "services",
        service(
            "hippo-replicas",
            port=cluster.replica.port,
            cluster_ip="127.0.0.1",
            port_name="postgres",
        ),
    )
    api.put(
        "endpointslices",
        endpoint_slice(
            "hippo-replicas-abc", "hippo-replicas", [("10.1.0.1", True), ("10.1.0.2", False)]
        ),
    )
    api.put(
        "endpointslices", endpoint_slice("hippo-primary-x", "hippo-primary", [("10.1.0.3", True)])
    )
    cluster.set_role("kube_alice", "alice-1", encryption="scram-sha-256")
    api.put("secrets", pgo_secret("kube_alice", "alice-1"))
    pool = Pgpool(base, base / "config", key_file=base / "config" / ".pgpoolkey")
    run = RunProcess(
        pool,
        None,
        log=base / "run.log",
        env={"POD_NAME": "pgpool-0"},
        args=[
            "--kubeconfig",
            str(api.write_kubeconfig(base / "kubeconfig", namespace="db")),
            "--namespace",
            "default",
            "--preset",
            "pgo",
            "--cluster",
            "hippo",
            "--service-address",
            "cluster-ip",
            "--watch-timeout-seconds",
            "5",
        ],
    )
    run.start()
    pool.start()
    run.wait_first_reload()
    yield pool, run, api
    run.stop()
    pool.stop()
    api.stop()


def test_backends_come_from_the_services_and_endpoint_slices(
    live: tuple[Pgpool, RunProcess, KubeApiDouble], cluster: PgCluster
) -> None:
    pool, _, _ = live
    conf = (pool.config_dir / "pgpool.conf").read_text()
    assert f"backend_port0 = '{cluster.primary.port}'" in conf
    assert f"backend_port1 = '{cluster.replica.port}'" in conf
    assert "backend_weight1 = '1'" in conf  # one ready endpoint of two
    assert can_login(pool, "kube_alice", "alice-1")
    run = live[1]
    for node in ("0", "1"):  # both Services have a ready endpoint: both nodes stay in rotation
        assert run.metric("pgpoolsync_backend_up", f'node_id="{node}"') == 1
        assert run.metric("pgpoolsync_pgpool_node_up", f'node_id="{node}"') == 1
    assert "detached node" not in run.log_text()


def test_rotated_password_in_the_secret_is_accepted_without_restart(
    live: tuple[Pgpool, RunProcess, KubeApiDouble], cluster: PgCluster
) -> None:
    pool, _run, api = live
    pid = pool.proc.pid if pool.proc else None
    session = pool.connect("kube_alice", "alice-1")
    cluster.set_role("kube_alice", "alice-2", encryption="scram-sha-256")
    api.put("secrets", pgo_secret("kube_alice", "alice-2"))
    wait_until(lambda: can_login(pool, "kube_alice", "alice-2"), what="rotated password")
    assert not can_login(pool, "kube_alice", "alice-1")
    assert session.execute("SELECT 1").fetchone() == (1,)
    session.close()
    assert pool.proc is not None and pool.proc.pid == pid and pool.running()


def test_new_secret_adds_and_deleted_secret_removes_a_user(
    live: tuple[Pgpool, RunProcess, KubeApiDouble], cluster: PgCluster
) -> None:
    pool, _, api = live
    cluster.set_role("kube_bob", "bob-1", encryption="md5")
    api.put("secrets", pgo_secret("kube_bob", "bob-1"))
    wait_until(lambda: can_login(pool, "kube_bob", "bob-1"), what="new user")
    api.delete("secrets", "hippo-pguser-kube_bob")
    wait_until(lambda: not can_login(pool, "kube_bob", "bob-1"), what="user removed")


def test_an_invalid_secret_posts_an_event_and_others_keep_working(
    live: tuple[Pgpool, RunProcess, KubeApiDouble],
) -> None:
    pool, _run, api = live
    api.put("secrets", pgo_secret("kube_long", "p" * 90))
    wait_until(
        lambda: any(
            e["involvedObject"]["name"] == "hippo-pguser-kube_long" for e in api.store.events
        ),
        what="Event on the Secret",
    )
    event = next(
        e for e in api.store.events if e["involvedObject"]["name"] == "hippo-pguser-kube_long"
    )
    assert event["reason"] == "InvalidInput" and event["type"] == "Warning"
    assert "secret default/hippo-pguser-kube_long" in event["message"]
    assert "p" * 90 not in str(api.store.events)
    assert any(
        e["involvedObject"]
        == {"apiVersion": "v1", "kind": "Pod", "name": "pgpool-0", "namespace": "default"}
        for e in api.store.events
    )
    assert can_login(pool, "kube_alice", "alice-2") or can_login(pool, "kube_alice", "alice-1")
    api.delete("secrets", "hippo-pguser-kube_long")


def test_replica_weight_follows_ready_endpoints(
    live: tuple[Pgpool, RunProcess, KubeApiDouble],
) -> None:
    pool, _, api = live
    api.put(
        "endpointslices",
        endpoint_slice(
            "hippo-replicas-abc",
            "hippo-replicas",
            [("10.1.0.1", True), ("10.1.0.2", True), ("10.1.0.3", True)],
        ),
    )
    wait_until(
        lambda: "backend_weight1 = '3'" in (pool.config_dir / "pgpool.conf").read_text(),
        what="weight 3",
    )


def test_healthz_and_watch_metrics(live: tuple[Pgpool, RunProcess, KubeApiDouble]) -> None:
    _, run, _ = live
    assert run.get("/healthz") == (200, "ok\n")
    assert run.metric("pgpoolsync_users") >= 1
    assert 0 <= run.metric("pgpoolsync_watch_staleness_seconds", 'kind="secrets"') < 30


def test_every_dashboard_query_uses_a_metric_pgpoolsync_run_emits(
    live: tuple[Pgpool, RunProcess, KubeApiDouble],
) -> None:
    from tests.real.test_exporter_real import dashboard_metrics

    _, run, _ = live
    text = run.get("/metrics")[1]
    emitted = {ln.split("{")[0].split(" ")[0] for ln in text.splitlines() if ln and ln[0] != "#"}
    used = dashboard_metrics("pgpoolsync_")
    assert used and used <= emitted, used - emitted
