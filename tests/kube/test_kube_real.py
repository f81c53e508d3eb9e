"""On a real Kubernetes (`.ci/kube`: kube-apiserver, controllers, scheduler, a kwok node): the
manifests as a cluster admits them, and `pgpoolsync run --kube` with the token of the manifests'
ServiceAccount (the Role of manifests/base, not admin) against real PostgreSQL + pgpool."""

from __future__ import annotations

import base64
import json
import random
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devcluster import PgCluster, Pgpool, can_login
from devcluster.kubereal import ROOT, KubeCluster, ServiceVip
from devcluster.ports import wait_until
from devcluster.runprocess import RunProcess

pytestmark = [pytest.mark.kube]

PGO = "postgres-operator.crunchydata.com"
TARGETS = ["base", *sorted(p.name for p in (ROOT / "manifests" / "overlays").iterdir())]


def _kustomize(target: str) -> str:
    path = ROOT / "manifests" / (target if target == "base" else f"overlays/{target}")
    done = subprocess.run(
        ["kubectl", "kustomize", str(path)], capture_output=True, text=True, check=True
    )
    return done.stdout


@pytest.mark.parametrize("target", TARGETS)
def test_the_kustomization_applies_whole_into_a_restricted_namespace_without_a_warning(
    kube: KubeCluster, target: str
) -> None:
    ns = kube.namespace(f"manifests-{target}")
    done = kube.kubectl(
        "apply", "--server-side", "--validate=strict", "-n", ns, "-f", "-",
        stdin=_kustomize(target), check=False,
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


# -- the sidecar as the manifests run it ----------------------------------------------------


def _secret(user: str, password: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": f"hippo-pguser-{user.replace('_', '-')}",  # a DNS subdomain
            "labels": {f"{PGO}/cluster": "hippo", f"{PGO}/pguser": user},
        },
        "type": "Opaque",
        "data": {
            k: base64.b64encode(v.encode()).decode()
            for k, v in {"user": user, "password": password}.items()
        },
    }


def _service(name: str) -> dict[str, Any]:
    return {  # selector-less: its EndpointSlices are ours, as an operator's are
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"ports": [{"name": "postgres", "port": 5432, "protocol": "TCP"}]},
    }


def _slice(service: str, ready: list[bool]) -> dict[str, Any]:
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


@pytest.fixture(scope="module")
def live(kube: KubeCluster, cluster: PgCluster, pg_base: Path) -> Iterator[Live]:
    ns = kube.namespace(f"sync-{random.randrange(16**6):06x}")
    kube.kubectl("apply", "-n", ns, "-f", "-", stdin=_kustomize("pgo"))
    pod = wait_until(
        lambda: kube.get("pods", "-n", ns)["items"], what="a pod of the Deployment", timeout=60
    )[0]["metadata"]["name"]
    vips: list[ServiceVip] = []
    base = pg_base / "kube-real"
    base.mkdir()
    run: RunProcess | None = None
    pool: Pgpool | None = None
    try:
        for name, port in (
            ("hippo-primary", cluster.primary.port),
            ("hippo-replicas", cluster.replica.port),
        ):
            kube.apply(_service(name), ns)
            ip = kube.get("service", "-n", ns, name)["spec"]["clusterIP"]
            vips.append(ServiceVip(ip, 5432, port))
        kube.apply(_slice("hippo-primary", [True]), ns)
        kube.apply(_slice("hippo-replicas", [True]), ns)
        cluster.set_role("real_alice", "alice-1", encryption="scram-sha-256")
        kube.apply(_secret("real_alice", "alice-1"), ns)
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


def test_the_backends_are_the_services_and_both_nodes_are_up(live: Live) -> None:
    conf = (live.pool.config_dir / "pgpool.conf").read_text()
    assert "backend_hostname0 = '10.96." in conf and "backend_port0 = '5432'" in conf
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
    live.put(_secret("real_alice", "alice-2"))
    wait_until(lambda: can_login(live.pool, "real_alice", "alice-2"), what="rotated password")
    assert not can_login(live.pool, "real_alice", "alice-1")
    assert live.pool.proc is not None and live.pool.proc.pid == pid


def test_a_user_is_added_and_removed_with_its_secret(live: Live, cluster: PgCluster) -> None:
    cluster.set_role("real_bob", "bob-1", encryption="md5")
    live.put(_secret("real_bob", "bob-1"))
    wait_until(lambda: can_login(live.pool, "real_bob", "bob-1"), what="new user")
    live.kube.kubectl("delete", "secret", "-n", live.ns, "hippo-pguser-real-bob")
    wait_until(lambda: not can_login(live.pool, "real_bob", "bob-1"), what="user removed")


def test_an_invalid_secret_posts_events_on_the_secret_and_the_pod(live: Live) -> None:
    live.put(_secret("real_long", "p" * 90))
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

    live.put(_slice("hippo-replicas", [False]))
    wait_until(lambda: node_up() == 0, what="replica node detached")
    live.put(_slice("hippo-replicas", [True, True]))
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
    live.put(_secret("real_carol", "carol-1"))
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
    live.put(_secret("real_dave", "dave-1"))
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
    ready, budget = _sample(kube, ns)
    # The budget is there and selects the Deployment's 2 pods: 2 healthy, 1 needed, 1 allowed.
    assert _budget(budget) == (2, 2, 1, 1), budget
    pod = ready[0][1]
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
