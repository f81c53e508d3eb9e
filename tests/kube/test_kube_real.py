"""On a real Kubernetes (`.ci/kube`): `pgpoolsync run --kube` with the token of the manifests'
ServiceAccount (the Role of manifests/base, not admin) against real PostgreSQL + pgpool, as
tests/kube/sidecar.py runs it; its watches across an apiserver restart and an etcd compaction,
and a real 403."""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from devcluster import PgCluster, can_login
from devcluster.kubenode import PGO, user_secret
from devcluster.kubereal import KubeCluster
from devcluster.ports import wait_until
from tests.kube.sidecar import Live, endpoint_slice, live_sidecar

pytestmark = [pytest.mark.kube]


@pytest.fixture(scope="module")
def live(kube: KubeCluster, cluster: PgCluster, pg_base: Path) -> Iterator[Live]:
    with live_sidecar(kube, cluster, pg_base / "kube-real") as sidecar:
        yield sidecar


def test_the_backends_are_the_services_and_both_nodes_are_up(live: Live) -> None:
    conf = (live.pool.config_dir / "pgpool.conf").read_text()
    ip = live.kube.get("service", "-n", live.ns, "hippo-primary")["spec"]["clusterIP"]
    assert f"backend_hostname0 = '{ip}'" in conf and "backend_port0 = '5432'" in conf
    assert can_login(live.pool, "real_alice", "alice-1")
    for node in ("0", "1"):
        wait_until(
            lambda n=node: live.run.metric("pgpoolsync_pgpool_node_up", f'node_id="{n}"') == 1,  # type: ignore[misc]
            what=f"node {node} up",
        )


def test_a_rotated_secret_reloads_pgpool_and_the_new_password_logs_in(
    live: Live, cluster: PgCluster
) -> None:
    pid = live.pool.proc.pid if live.pool.proc else None
    cluster.set_role("real_alice", "alice-2", encryption="scram-sha-256")
    live.put(user_secret("real_alice", "alice-2"))
    wait_until(lambda: can_login(live.pool, "real_alice", "alice-2"), what="rotated password")
    assert not can_login(live.pool, "real_alice", "alice-1")
    assert live.pool.proc is not None and live.pool.proc.pid == pid


def test_a_user_is_added_and_removed_with_itsuser_secret(live: Live, cluster: PgCluster) -> None:
    cluster.set_role("real_bob", "bob-1", encryption="md5")
    live.put(user_secret("real_bob", "bob-1"))
    wait_until(lambda: can_login(live.pool, "real_bob", "bob-1"), what="new user")
    live.kube.kubectl("delete", "secret", "-n", live.ns, "hippo-pguser-real-bob")
    wait_until(lambda: not can_login(live.pool, "real_bob", "bob-1"), what="user removed")


def test_an_invalid_secret_posts_events_on_the_secret_and_the_pod(live: Live) -> None:
    live.put(user_secret("real_long", "p" * 90))
    name = "hippo-pguser-real-long"
    events = wait_until(lambda: live.events(name), what="an Event on the Secret")
    assert events[0]["reason"] == "InvalidInput" and events[0]["type"] == "Warning"
    assert events[0]["involvedObject"]["kind"] == "Secret"
    assert "p" * 90 not in json.dumps(events)
    pod = live.run.env["POD_NAME"]
    on_pod = [e for e in live.events(pod) if e["reason"] == "InvalidInput"]
    assert on_pod and on_pod[0]["involvedObject"]["kind"] == "Pod"
    live.kube.kubectl("delete", "secret", "-n", live.ns, name)


def test_endpoint_slice_changes_are_mirrored_into_pgpools_node_status(live: Live) -> None:
    def node_up() -> float:
        return live.run.metric("pgpoolsync_pgpool_node_up", 'node_id="1"')

    live.put(endpoint_slice("hippo-replicas", [False]))
    wait_until(lambda: node_up() == 0, what="replica node detached")
    live.put(endpoint_slice("hippo-replicas", [True, True]))
    wait_until(lambda: node_up() == 1, what="replica node attached again")
    wait_until(
        lambda: "backend_weight1 = '2'" in (live.pool.config_dir / "pgpool.conf").read_text(),
        what="weight 2",
    )


def test_nothing_the_sidecar_did_was_refused(live: Live) -> None:
    """Before the restart drills below: right after a restart, kube-apiserver answered a watch
    403 for a moment (seen once), which the sidecar named, retried and got past."""
    log = live.run.log_text()
    for refusal in ('" 403 ', '" 401 ', "the API server refused", "could not post Event"):
        assert refusal not in log, refusal
    assert '" 200 ' in log and '" 201 ' in log  # the requests are in the log (DEBUG) to check


def _lists(log: str) -> list[str]:
    """The list requests in the sidecar's DEBUG log (a watch carries watch=true)."""
    return [ln for ln in log.splitlines() if '"GET /api' in ln and "watch=true" not in ln]


def _exact(live: Live) -> None:
    """pool_passwd holds exactly the users of the cluster's Secrets."""
    items = live.kube.get("secrets", "-n", live.ns, "-l", f"{PGO}/cluster=hippo")["items"]
    want = {base64.b64decode(s["data"]["user"]).decode() for s in items}

    def users() -> set[str]:
        text = (live.pool.config_dir / "pool_passwd").read_text()
        return {ln.split(":", 1)[0] for ln in text.splitlines() if ln}

    wait_until(lambda: users() == want, what=f"pool_passwd users {sorted(want)}")


WATCHERS = 4  # the Secrets (selector), the Services, the EndpointSlices of each Service


def test_an_apiserver_restart_mid_watch_resumes_the_watches_without_a_relist_storm(
    live: Live, cluster: PgCluster
) -> None:
    mark = len(live.run.log_text())
    live.kube.restart("kube-apiserver")
    cluster.set_role("real_carol", "carol-1", encryption="scram-sha-256")
    live.put(user_secret("real_carol", "carol-1"))
    wait_until(lambda: can_login(live.pool, "real_carol", "carol-1"), what="a user after restart")
    live.kube.kubectl("delete", "secret", "-n", live.ns, "hippo-pguser-real-carol")
    _exact(live)
    lists = _lists(live.run.log_text()[mark:])
    assert len(lists) <= WATCHERS, lists


def test_an_etcd_compaction_expiring_the_watches_relists_and_ends_exact(
    live: Live, cluster: PgCluster
) -> None:
    def gone() -> float:
        return live.run.metric("pgpoolsync_watch_restarts_total", 'kind="secrets",reason="gone"')

    before = gone()
    mark = len(live.run.log_text())
    cluster.set_role("real_dave", "dave-1", encryption="scram-sha-256")
    live.put(user_secret("real_dave", "dave-1"))
    wait_until(lambda: can_login(live.pool, "real_dave", "dave-1"), what="a user")
    # A write the sidecar does not watch: the history moves past its resourceVersion.
    live.put({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "unwatched"}})
    live.kube.compact_etcd()
    # Killed: a stopping apiserver sends every watcher a last bookmark (the newest
    # resourceVersion), so a graceful restart after a compaction expires nothing.
    live.kube.restart("kube-apiserver", signal="KILL")
    wait_until(lambda: gone() > before, what="a 410 on the Secrets' watch", timeout=60)
    live.kube.kubectl("delete", "secret", "-n", live.ns, "hippo-pguser-real-dave")
    _exact(live)
    assert any(can_login(live.pool, "real_alice", pw) for pw in ("alice-1", "alice-2"))
    assert len(_lists(live.run.log_text()[mark:])) <= WATCHERS


def test_a_verb_outside_the_role_is_a_real_403_named_in_one_line_and_the_files_stay(
    live: Live, pg_base: Path
) -> None:
    """The negative control: a ServiceAccount bound to the Role minus services."""
    kube, ns = live.kube, live.ns
    role = kube.get("role", "-n", ns, "pgpoolsync")
    rules = [r for r in role["rules"] if "services" not in r["resources"]]
    for obj in (
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "limited"}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "limited"},
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "limited"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "limited"},
            "subjects": [{"kind": "ServiceAccount", "name": "limited"}],
        },
    ):
        kube.apply(obj, ns)
    base = pg_base / "kube-real-limited"
    base.mkdir()
    subprocess.run(["cp", "-a", str(live.pool.config_dir), str(base / "config")], check=True)
    before = {p.name: p.read_bytes() for p in (base / "config").iterdir() if p.is_file()}
    _, run = kube.sidecar(
        base,
        namespace=ns,
        service_account="limited",
        args=["--preset", "pgo", "--cluster", "hippo", "--service-address", "cluster-ip",
              "--watch-timeout-seconds", "10"],
    )  # fmt: skip
    with run.log.open("ab") as out:
        run.proc = subprocess.Popen(run.argv, env=run.env, stdout=out, stderr=subprocess.STDOUT)
    try:
        run.wait_http("/healthz")
        wait_until(lambda: "the API server refused" in run.log_text(), what="the refusal named")
        assert run.get("/readyz")[0] == 503
        named = [ln for ln in run.log_text().splitlines() if "the API server refused" in ln]
        assert len(named) == 1, named
        assert f"refused to list services in namespace {ns} (403 Forbidden" in named[0]
        after = {p.name: p.read_bytes() for p in (base / "config").iterdir() if p.is_file()}
        assert after == before
    finally:
        run.stop()
