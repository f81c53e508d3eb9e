"""Watchers (real `kubernetes` client) against the API double: selectors, 410, faults."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devcluster.kubeapi import Fault, KubeApiDouble
from devcluster.kubeobjects import endpoint_slice, secret, service
from devcluster.ports import wait_until
from pgpoolsync.core import model, render
from pgpoolsync.core.build import build
from pgpoolsync.kube.api import load_api_client, secret_data
from pgpoolsync.kube.events import EventRecorder
from pgpoolsync.kube.watch import Collection, Watcher
from pgpoolsync.settings import parse
from pgpoolsync.sources import ChangeSignal
from pgpoolsync.sources import convert as sources
from tests.fakes import FakePgpool, make_loop
from tests.origins import src

SEL = "app=db"


@pytest.fixture
def api(tmp_path: Path) -> Iterator[KubeApiDouble]:
    double = KubeApiDouble(bookmark_interval=0.3).start()
    yield double
    double.stop()


def _watcher(
    double: KubeApiDouble,
    tmp_path: Path,
    collection: Collection,
    *,
    restarts: list[tuple[str, str]] | None = None,
    timeout: int = 2,
    notify: threading.Event | None = None,
) -> Watcher:
    client = load_api_client(kubeconfig=str(double.write_kubeconfig(tmp_path / "kc")))
    ev = notify or threading.Event()
    w = Watcher(
        client,
        collection,
        notify=ev.set,
        timeout_seconds=timeout,
        backoff_max=0.5,
        on_restart=lambda k, r: (restarts if restarts is not None else []).append((k, r)),
    )
    w.start()
    assert w.synced.wait(10)
    return w


def _users(w: Watcher) -> dict[str, str]:
    out = {}
    for obj in w.snapshot():
        data = secret_data(obj)
        out[obj["metadata"]["name"]] = data.get("password", b"").decode()
    return out


def _expected(double: KubeApiDouble, selector: str = SEL) -> dict[str, str]:
    from devcluster.kubeobjects import match_labels

    out = {}
    for name, obj in double.store.objects.get(("secrets", "default"), {}).items():
        if match_labels(selector, obj["metadata"].get("labels") or {}):
            out[name] = secret_data(obj).get("password", b"").decode()
    return out


def test_list_then_watch_sees_adds_changes_and_deletes(api: KubeApiDouble, tmp_path: Path) -> None:
    api.put("secrets", secret("a", {"username": "a", "password": "1"}, labels={"app": "db"}))
    w = _watcher(api, tmp_path, Collection("secrets", "default", SEL))
    assert _users(w) == {"a": "1"}
    api.put("secrets", secret("b", {"username": "b", "password": "2"}, labels={"app": "db"}))
    api.put("secrets", secret("a", {"username": "a", "password": "1b"}, labels={"app": "db"}))
    api.put("secrets", secret("other", {"username": "o", "password": "x"}))
    wait_until(lambda: _users(w) == {"a": "1b", "b": "2"}, what="adds and changes")
    api.delete("secrets", "b")
    wait_until(lambda: _users(w) == {"a": "1b"}, what="delete")
    w.stop()


def test_an_object_leaving_the_selector_is_removed(api: KubeApiDouble, tmp_path: Path) -> None:
    api.put("secrets", secret("a", {"username": "a", "password": "1"}, labels={"app": "db"}))
    w = _watcher(api, tmp_path, Collection("secrets", "default", SEL))
    api.put("secrets", secret("a", {"username": "a", "password": "1"}, labels={"app": "web"}))
    wait_until(lambda: _users(w) == {}, what="selector exit")
    w.stop()


def test_field_selector_by_name(api: KubeApiDouble, tmp_path: Path) -> None:
    api.put("secrets", secret("db-auth", {"username": "a", "password": "1"}))
    api.put("secrets", secret("other", {"username": "o", "password": "2"}))
    w = _watcher(
        api, tmp_path, Collection("secrets", "default", field_selector="metadata.name=db-auth")
    )
    assert list(_users(w)) == ["db-auth"]
    w.stop()


def test_bookmarks_keep_an_idle_watch_fresh(api: KubeApiDouble, tmp_path: Path) -> None:
    w = _watcher(api, tmp_path, Collection("secrets", "default", SEL), timeout=30)
    time.sleep(1.5)  # idle: with no event, only bookmarks can keep it fresh
    wait_until(lambda: w.stale_for() < 1.0, what="a bookmark refreshing the idle watch")
    assert any("allowWatchBookmarks=true" in r for r in api.store.requests)
    assert any("timeoutSeconds=30" in r for r in api.store.requests)
    w.stop()


def test_410_relists_and_sees_deletions_made_while_disconnected(
    api: KubeApiDouble, tmp_path: Path
) -> None:
    api.put("secrets", secret("a", {"username": "a", "password": "1"}, labels={"app": "db"}))
    api.put("secrets", secret("b", {"username": "b", "password": "2"}, labels={"app": "db"}))
    restarts: list[tuple[str, str]] = []
    w = _watcher(api, tmp_path, Collection("secrets", "default", SEL), restarts=restarts)
    # Keep the watcher away (500s), delete meanwhile, compact history, let it come back.
    for _ in range(3):
        api.inject(Fault(kind="secrets", watch=True, action="status", status=500))
    api.drop_watches()
    api.delete("secrets", "b")
    api.compact()
    wait_until(lambda: _users(w) == {"a": "1"}, what="deletion seen after 410", timeout=20)
    assert ("secrets", "gone") in restarts
    w.stop()


@pytest.mark.parametrize(
    "fault",
    [
        Fault(kind="secrets", watch=True, action="drop", after_events=0),
        Fault(kind="secrets", watch=True, action="status", status=500),
        Fault(kind="secrets", watch=True, action="status", status=429, retry_after=1),
        Fault(kind="secrets", watch=True, action="stall"),
    ],
    ids=["dropped-mid-event", "http-500", "http-429-retry-after", "stall"],
)
def test_a_faulty_watch_recovers_and_converges(
    api: KubeApiDouble, tmp_path: Path, fault: Fault
) -> None:
    restarts: list[tuple[str, str]] = []
    w = _watcher(api, tmp_path, Collection("secrets", "default", SEL), restarts=restarts, timeout=1)
    api.inject(fault)
    api.drop_watches()  # the next watch request meets the fault
    api.put("secrets", secret("a", {"username": "a", "password": "1"}, labels={"app": "db"}))
    wait_until(
        lambda: not api.store.faults and _users(w) == {"a": "1"},
        timeout=25,
        what="the fault served, then convergence",
    )
    if fault.status == 429:
        # The client honours Retry-After itself: its retry comes at least that long after.
        timeline = api.store.timeline

        def fault_at() -> int:
            return next(i for i, (_, what) in enumerate(timeline) if what.startswith("fault"))

        wait_until(lambda: len(timeline) > fault_at() + 2, timeout=15, what="the retry")
        i = fault_at()
        assert timeline[i + 2][0] - timeline[i][0] >= 0.9
    else:
        wait_until(lambda: bool(restarts), timeout=15, what="the fault noticed as a restart")
    w.stop()


def test_randomized_events_with_faults_end_with_files_equal_to_the_desired_state(
    api: KubeApiDouble, tmp_path: Path
) -> None:
    rng = random.Random(1234)
    for name, port in (("db-primary", 5432), ("db-replicas", 5433)):
        api.put("services", service(name, port=port))
    settings = parse(
        ["run", "--config-dir", str(tmp_path / "cfg"), "--password-format", "md5"],
        {"PGPOOL_PCP_USER": "u", "PGPOOL_PCP_PASSWORD": "p"},
    )
    assert settings.common is not None
    client = load_api_client(kubeconfig=str(api.write_kubeconfig(tmp_path / "kc")))
    signal = ChangeSignal()
    watchers = [
        Watcher(
            client,
            Collection("secrets", "default", SEL),
            notify=signal.notify,
            timeout_seconds=1,
            backoff_max=0.3,
        ),
        Watcher(
            client,
            Collection("services", "default"),
            notify=signal.notify,
            timeout_seconds=1,
            backoff_max=0.3,
        ),
        Watcher(
            client,
            Collection("endpointslices", "default", "kubernetes.io/service-name=db-replicas"),
            notify=signal.notify,
            timeout_seconds=1,
            backoff_max=0.3,
        ),
    ]
    for w in watchers:
        w.start()
        assert w.synced.wait(10)
    snapshot = sources.kube_snapshot(
        names=sources.KubeNames("default", "db-primary", "db-replicas", "dns"),
        keys=sources.KeyConfig(),
        secrets=watchers[0].snapshot,
        services=watchers[1].snapshot,
        slices=watchers[2].snapshot,
        secret_data=secret_data,
    )
    pgpool = FakePgpool()
    reloads = pgpool.reloads
    loop, _ = make_loop(
        tmp_path / "cfg", snapshot, pgpool, args=["--password-format", "md5"], resync_seconds=1
    )
    loop.signal = signal
    stop = threading.Event()
    thread = threading.Thread(target=loop.run, args=(stop,), daemon=True)
    thread.start()
    faults = [
        Fault(kind=None, watch=True, action="drop", after_events=1),
        Fault(kind=None, watch=True, action="status", status=500),
        Fault(kind=None, watch=None, action="status", status=429, retry_after=1),
    ]
    for step in range(120):
        name = f"u{rng.randrange(12)}"
        roll = rng.random()
        if roll < 0.55:
            labels = {"app": "db"} if rng.random() < 0.9 else {"app": "other"}
            api.put(
                "secrets", secret(name, {"username": name, "password": f"pw{step}"}, labels=labels)
            )
        elif roll < 0.8:
            api.delete("secrets", name)
        elif roll < 0.9:
            ready = [(f"10.0.0.{i}", rng.random() < 0.7) for i in range(rng.randrange(4))]
            api.put("endpointslices", endpoint_slice("db-replicas-x", "db-replicas", ready))
        else:
            api.inject(rng.choice(faults))
            api.drop_watches()
        if rng.random() < 0.05:
            api.compact()
        time.sleep(rng.random() * 0.02)

    creds = [model.Credential(n, p, src(n)) for n, p in sorted(_expected(api).items())]
    slices = list(api.store.objects.get(("endpointslices", "default"), {}).values())
    expected_state = build(
        model.Inputs(
            backends=(
                model.Backend("db-primary.default.svc", 5432, model.PRIMARY_FLAG),
                model.Backend(
                    "db-replicas.default.svc",
                    5433,
                    model.REPLICA_FLAG,
                    weight=len(sources.ready_endpoints(slices)),
                ),
            ),
            credentials=tuple(creds),
            pcp_users=settings.common.pcp_users,
            password_format="md5",
        )
    ).state
    assert expected_state is not None
    expected = render.render(expected_state, pool_key=None)

    def files_match() -> bool:
        return all((tmp_path / "cfg" / n).read_text() == t for n, t in expected.items())

    try:
        wait_until(files_match, timeout=30, what="files equal to the desired state")
        assert not loop.pending_reload
        assert reloads, "changes must have been reloaded"
    finally:
        stop.set()
        signal.notify()
        thread.join(5)
        for w in watchers:
            w.stop()


def test_events_repeat_only_after_their_quiet_time_and_the_record_forgets_older_ones(
    api: KubeApiDouble, tmp_path: Path
) -> None:
    client = load_api_client(kubeconfig=str(api.write_kubeconfig(tmp_path / "kc")))
    now = [0.0]
    rec = EventRecorder(
        client, namespace="default", pod_name="pgpool-0", clock=lambda: now[0], quiet_seconds=60
    )
    rec.event(reason="ReplicaLag", message="lag 4.1s")
    rec.event(reason="ReplicaLag", message="lag 4.1s")  # a repeat within the quiet time
    now[0] = 30.0
    rec.event(reason="ReplicaLag", message="lag 5.3s")  # another message: posted
    assert [e["message"] for e in api.store.events] == ["lag 4.1s", "lag 5.3s"]
    now[0] = 80.0
    rec.event(reason="ReplicaLag", message="lag 9.9s")
    assert len(rec._sent) == 2  # "lag 4.1s" is past its quiet time and forgotten
    now[0] = 200.0
    rec.event(reason="ReplicaLag", message="lag 4.1s")
    assert [e["message"] for e in api.store.events][-1] == "lag 4.1s" and len(rec._sent) == 1
