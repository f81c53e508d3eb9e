"""``--restart-policy rollout``: the restart hash and the decision (pure), then the policy with the
real ``kubernetes`` client against the API double (a Deployment, its ReplicaSet, two pods), and
the Role in manifests/base held against the calls it makes."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from devcluster.kubeapi import KubeApiDouble
from devcluster.kubeobjects import deployment, pod, replica_set
from pgpoolsync.core import model, rollout, tls
from pgpoolsync.kube.api import load_api_client
from pgpoolsync.kube.deployments import Deployments
from pgpoolsync.restart.rollout import Rollout, annotation

ROOT = Path(__file__).resolve().parents[2]
CERT = tls.generate_self_signed(["pgpool"])


def _state(**params: str) -> model.DesiredState:
    base = {"port": "9999", "num_init_children": "32", "backend_hostname0": "db", "ssl": "on"}
    base.update(params)
    return model.DesiredState(
        params=tuple(base.items()),
        credentials=(model.Credential("alice", "pw-1"),),
        password_format="aes",
        hba_rules=(),
        pcp_users=(),
        tls=CERT,
    )


# -- the hash ------------------------------------------------------------------------------
def test_the_restart_hash_is_the_same_for_the_same_restart_only_values() -> None:
    assert rollout.restart_hash(_state()) == rollout.restart_hash(_state())
    assert len(rollout.restart_hash(_state())) == 16


@pytest.mark.parametrize(
    "change",
    [
        {"num_init_children": "64"},
        {"port": "9998"},
        {"backend_hostname0": "db2"},
        {"work_dir": "/other"},
    ],
)
def test_a_restart_only_value_changes_the_hash(change: dict[str, str]) -> None:
    assert rollout.restart_hash(_state(**change)) != rollout.restart_hash(_state())


def test_a_new_certificate_changes_the_hash() -> None:
    other = replace(_state(), tls=tls.generate_self_signed(["pgpool"]))
    assert rollout.restart_hash(other) != rollout.restart_hash(_state())


def test_reloadable_changes_and_password_rotations_leave_the_hash_alone() -> None:
    rotated = replace(
        _state(connect_timeout="5000", backend_flag0="ALWAYS_PRIMARY|ALLOW_TO_FAILOVER"),
        credentials=(model.Credential("alice", "pw-2"),),
    )
    assert rollout.restart_hash(rotated) == rollout.restart_hash(
        _state(backend_flag0="ALWAYS_PRIMARY|DISALLOW_TO_FAILOVER")
    )


def test_no_password_or_key_goes_into_the_hash() -> None:
    part = repr(rollout.restart_part(_state(ssl_passphrase_command="echo hunter2")))
    assert "pw-1" not in part and "hunter2" not in part
    assert CERT.key_pem.decode() not in part


# -- the decision --------------------------------------------------------------------------
def _decide(**kw: Any) -> rollout.Decision:
    args: dict[str, Any] = {
        "desired": "h2",
        "template": "h1",
        "pod": "h1",
        "requested_at": None,
        "now": 10_000.0,
        "min_interval": 900.0,
        "blocked": None,
    }
    args.update(kw)
    return rollout.decide(**args)


def test_a_template_without_the_hash_is_patched() -> None:
    assert _decide().action == rollout.PATCH
    assert _decide(template=None, pod=None).action == rollout.PATCH


def test_a_template_already_carrying_the_hash_is_left_alone() -> None:
    assert _decide(template="h2").action == rollout.PENDING


def test_a_pod_made_for_the_hash_that_still_needs_a_restart_never_rolls_again() -> None:
    assert _decide(template="h2", pod="h2").action == rollout.DONE


def test_a_second_rollout_waits_for_the_minimum_interval() -> None:
    held = _decide(requested_at=10_000.0 - 300)
    assert held.action == rollout.HOLD and held.wait == pytest.approx(600)
    assert _decide(requested_at=10_000.0 - 901).action == rollout.PATCH


def test_no_rollout_while_the_desired_state_has_fatal_problems() -> None:
    out = _decide(blocked="secret db/bob: password contains a newline")
    assert out.action == rollout.BLOCKED and "secret db/bob" in out.why


# -- the policy against the API double ------------------------------------------------------
@pytest.fixture
def api(tmp_path: Path) -> Iterator[KubeApiDouble]:
    double = KubeApiDouble().start()
    double.put("deployments", deployment("pgpool"))
    double.put("replicasets", replica_set("pgpool-6d4cf", "pgpool"))
    for name in ("pgpool-6d4cf-aaaaa", "pgpool-6d4cf-bbbbb"):
        double.put("pods", pod(name, "pgpool-6d4cf"))
    yield double
    double.stop()


class Clock:
    def __init__(self) -> None:
        self.wall = 1_800_000_000.0
        self.mono = 0.0

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds


def _sidecar(
    double: KubeApiDouble, tmp_path: Path, pod_name: str, clock: Clock, **kw: Any
) -> Rollout:
    client = load_api_client(kubeconfig=str(double.write_kubeconfig(tmp_path / "kc")))
    return Rollout(
        Deployments(client, namespace="default"),
        pod_name=pod_name,
        min_interval=900,
        wall=lambda: clock.wall,
        clock=lambda: clock.mono,
        **kw,
    )


def _template_hash(double: KubeApiDouble) -> str | None:
    dep = double.store.objects[("deployments", "default")]["pgpool"]
    return annotation(dep, "spec", "template", key=rollout.HASH_ANNOTATION)


NEEDS = ("ssl certificate",)


def test_two_sidecars_seeing_the_same_change_cause_exactly_one_patch(
    api: KubeApiDouble, tmp_path: Path
) -> None:
    clock = Clock()
    a = _sidecar(api, tmp_path, "pgpool-6d4cf-aaaaa", clock)
    b = _sidecar(api, tmp_path, "pgpool-6d4cf-bbbbb", clock)
    state = _state()
    first = a(state, NEEDS, blocked=None)
    second = b(state, NEEDS, blocked=None)
    assert (first.decision, second.decision) == (rollout.PATCH, rollout.PENDING)
    assert first.deployment == "pgpool" and first.error is None
    assert len(api.store.patches) == 1
    assert _template_hash(api) == rollout.restart_hash(state)
    dep = api.store.objects[("deployments", "default")]["pgpool"]
    assert annotation(dep, key=rollout.REQUESTED_AT_ANNOTATION) == "2027-01-15T08:00:00Z"


def test_two_sidecars_racing_still_patch_once_the_loser_reads_the_winners_hash(
    api: KubeApiDouble, tmp_path: Path
) -> None:
    clock = Clock()
    barrier = threading.Barrier(2, timeout=10)

    class Racing(Deployments):
        reads = 0

        def get(self, kind: str, name: str) -> dict[str, Any]:
            obj = super().get(kind, name)
            if kind == "deployments":
                Racing.reads += 1
                if Racing.reads <= 2:
                    barrier.wait()  # both have read the Deployment before either patches
            return obj

    client = load_api_client(kubeconfig=str(api.write_kubeconfig(tmp_path / "kc")))
    sidecars = [
        Rollout(
            Racing(client, namespace="default"),
            pod_name=name,
            min_interval=900,
            wall=lambda: clock.wall,
            clock=lambda: clock.mono,
        )
        for name in ("pgpool-6d4cf-aaaaa", "pgpool-6d4cf-bbbbb")
    ]
    results: list[str | None] = []
    threads = [
        threading.Thread(
            target=lambda s=s: results.append(s(_state(), NEEDS, blocked=None).decision)
        )
        for s in sidecars
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    assert sorted(str(r) for r in results) == [rollout.PATCH, rollout.PENDING]
    assert len(api.store.patches) == 1
    assert any(c[0] == "patch" for c in api.store.calls)


def test_the_same_change_again_patches_nothing_and_a_change_back_is_a_new_hash(
    api: KubeApiDouble, tmp_path: Path
) -> None:
    clock = Clock()
    a = _sidecar(api, tmp_path, "pgpool-6d4cf-aaaaa", clock)
    renewed = _state()
    assert a(renewed, NEEDS, blocked=None).decision == rollout.PATCH
    for _ in range(3):
        clock.advance(60)  # past the policy's own re-read interval, and a pass every minute
        assert a(renewed, NEEDS, blocked=None).decision == rollout.PENDING
    assert len(api.store.patches) == 1
    back = _state(num_init_children="16")
    held = a(back, ("num_init_children",), blocked=None)
    assert held.decision == rollout.HOLD and held.wait is not None and held.wait > 0
    assert len(api.store.patches) == 1
    clock.advance(held.wait + 1)
    again = a(back, ("num_init_children",), blocked=None)
    assert again.decision == rollout.PATCH
    assert len(api.store.patches) == 2
    assert _template_hash(api) == rollout.restart_hash(back) != rollout.restart_hash(renewed)


def test_a_pod_started_for_the_hash_does_not_roll_the_deployment_again(
    api: KubeApiDouble, tmp_path: Path
) -> None:
    state = _state()
    api.put(
        "pods",
        pod(
            "pgpool-77f9b-ccccc",
            "pgpool-6d4cf",
            annotations={rollout.HASH_ANNOTATION: rollout.restart_hash(state)},
        ),
    )
    out = _sidecar(api, tmp_path, "pgpool-77f9b-ccccc", Clock())(state, NEEDS, blocked=None)
    assert out.decision == rollout.DONE and "does not apply it" in out.why
    assert api.store.patches == []


def test_a_blocked_state_and_a_missing_deployment_patch_nothing(
    api: KubeApiDouble, tmp_path: Path
) -> None:
    clock = Clock()
    a = _sidecar(api, tmp_path, "pgpool-6d4cf-aaaaa", clock)
    assert a(_state(), NEEDS, blocked="secret db/bob: bad").decision == rollout.BLOCKED
    lost = _sidecar(api, tmp_path, "pgpool-gone", clock)
    out = lost(_state(), NEEDS, blocked=None)
    assert out.error is not None and "pods/pgpool-gone: 404" in out.error
    assert api.store.patches == []


def _role_allows(verb: str, group: str, resource: str, name: str | None) -> bool:
    role = yaml.safe_load((ROOT / "manifests/base/role.yaml").read_text())
    for rule in role["rules"]:
        if group not in rule["apiGroups"] or resource not in rule["resources"]:
            continue
        if verb not in rule["verbs"]:
            continue
        names = rule.get("resourceNames")
        if names and name not in names:
            continue
        return True
    return False


def test_the_role_allows_every_call_a_rollout_makes_and_only_on_that_deployment(
    api: KubeApiDouble, tmp_path: Path
) -> None:
    _sidecar(api, tmp_path, "pgpool-6d4cf-aaaaa", Clock())(_state(), NEEDS, blocked=None)
    calls = set(api.store.calls)
    assert calls == {
        ("get", "", "pods", "pgpool-6d4cf-aaaaa"),
        ("get", "apps", "replicasets", "pgpool-6d4cf"),
        ("get", "apps", "deployments", "pgpool"),
        ("patch", "apps", "deployments", "pgpool"),
    }
    for call in calls:
        assert _role_allows(*call), call
    assert not _role_allows("patch", "apps", "deployments", "another-app")
    assert not _role_allows("get", "apps", "deployments", "another-app")
    assert not _role_allows("list", "", "pods", None)
    assert not _role_allows("patch", "", "pods", "pgpool-6d4cf-aaaaa")


@pytest.mark.parametrize(
    "name",
    ["health_check_password", "sr_check_password", "ssl_passphrase_command", "ssl_key", "x_secret"],
)
def test_a_sensitive_value_is_masked_in_a_change_line_and_left_out_of_the_hash_alike(
    name: str,
) -> None:
    from pgpoolsync.core.changes import describe_change

    old, new = _state(**{name: "hunter1"}), _state(**{name: "hunter2"})
    line = describe_change(old, new)
    assert f"{name} = ***" in line and "hunter" not in line
    assert rollout.restart_hash(old) == rollout.restart_hash(new)
    shown = describe_change(_state(connect_timeout="1"), _state(connect_timeout="2"))
    assert "connect_timeout = '2'" in shown  # the rule masks only what it should


@pytest.mark.parametrize(
    "name",
    [
        "num_init_children",
        "listen_addresses",
        "ssl_ciphers",
        "backend_hostname1",
        "backend_port0",
        "connect_timeout",
        "backend_weight1",
        "backend_application_name0",
        "log_min_messages",
    ],
)
def test_a_change_rolls_the_pods_exactly_when_pgpool_needs_a_restart_for_it(name: str) -> None:
    from pgpoolsync.core.changes import needs_restart

    rolls = rollout.restart_hash(_state(**{name: "a"})) != rollout.restart_hash(
        _state(**{name: "b"})
    )
    assert rolls == needs_restart(name, "a", "b")
    assert rolls == (
        name
        not in {
            "connect_timeout",
            "backend_weight1",
            "backend_application_name0",
            "log_min_messages",
        }
    )


def test_only_always_primary_of_a_backend_flag_needs_a_restart_and_rolls() -> None:
    from pgpoolsync.core.changes import needs_restart

    def rolls(a: str, b: str) -> bool:
        return rollout.restart_hash(_state(backend_flag0=a)) != rollout.restart_hash(
            _state(backend_flag0=b)
        )

    primary, plain = "ALWAYS_PRIMARY|DISALLOW_TO_FAILOVER", "DISALLOW_TO_FAILOVER"
    assert needs_restart("backend_flag0", primary, plain) and rolls(primary, plain)
    assert not needs_restart("backend_flag0", plain, "ALLOW_TO_FAILOVER")
    assert not rolls(plain, "ALLOW_TO_FAILOVER")
