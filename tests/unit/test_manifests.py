"""kustomize base + one overlay per operator: build, schema, security, RBAC, flags, env names."""

from __future__ import annotations

import functools
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from pgpoolsync.core.presets import PRESETS
from pgpoolsync.flags import build_parser
from pgpoolsync.settings import env_name
from pgpoolsync.sources import env

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = sorted(p.name for p in (ROOT / "manifests" / "overlays").iterdir())
K8S_VERSION = "1.32.0"


@functools.cache
def build(overlay: str) -> tuple[dict[str, Any], ...]:
    out = subprocess.run(
        ["kubectl", "kustomize", str(ROOT / "manifests" / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return tuple(d for d in yaml.safe_load_all(out) if d)


def by_kind(docs: tuple[dict[str, Any], ...], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def pod_spec(docs: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    [deploy] = by_kind(docs, "Deployment")
    spec: dict[str, Any] = deploy["spec"]["template"]["spec"]
    return spec


def all_containers(docs: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
    spec = pod_spec(docs)
    return [*spec.get("initContainers", []), *spec["containers"]]


def test_there_is_one_overlay_per_preset() -> None:
    assert set(OVERLAYS) == set(PRESETS)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_validates_against_the_kubernetes_schema(overlay: str) -> None:
    docs = build(overlay)
    kinds = {d["kind"] for d in docs}
    assert {
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "PodMonitor",
        "PrometheusRule",
        "ConfigMap",
    } <= kinds
    for doc in docs:
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            assert doc["spec"], doc["kind"]  # CRDs: no schema here; promtool checks the rules
            continue
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_names_only_its_preset_and_cluster(overlay: str) -> None:
    text = (ROOT / "manifests" / "overlays" / overlay / "kustomization.yaml").read_text()
    literals = re.findall(r"- (PGPOOLSYNC_[A-Z_]+)=", text)
    assert literals == ["PGPOOLSYNC_PRESET", "PGPOOLSYNC_CLUSTER"]
    [settings] = [
        d
        for d in by_kind(build(overlay), "ConfigMap")
        if d["metadata"]["name"].startswith("pgpoolsync-settings")
    ]
    assert settings["data"]["PGPOOLSYNC_PRESET"] == overlay


def test_pod_and_containers_are_locked_down() -> None:
    docs = build("pgo")
    spec = pod_spec(docs)
    psc = spec["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["runAsUser"] != 0
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    for c in all_containers(docs):
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False, c["name"]
        assert sc["readOnlyRootFilesystem"] is True, c["name"]
        assert sc["capabilities"] == {"drop": ["ALL"]}, c["name"]
        assert "memory" in c["resources"]["limits"] and c["resources"]["requests"], c["name"]
    assert spec["topologySpreadConstraints"][0]["topologyKey"] == "kubernetes.io/hostname"


def test_pgpoolsync_is_a_native_sidecar_that_renders_before_pgpool_starts() -> None:
    spec = pod_spec(build("pgo"))
    [sync] = spec["initContainers"]
    assert sync["restartPolicy"] == "Always"
    assert sync["startupProbe"]["httpGet"]["path"] == "/readyz"
    assert sync["livenessProbe"]["httpGet"]["path"] == "/healthz"
    pgpool = next(c for c in spec["containers"] if c["name"] == "pgpool")
    assert pgpool["readinessProbe"]["tcpSocket"]["port"] == "postgres"
    mounts = {m["mountPath"]: m for m in pgpool["volumeMounts"]}
    assert mounts["/etc/pgpool"]["readOnly"] is True


@pytest.mark.parametrize("overlay", ["pgo", "zalando"])
def test_rbac_grants_exactly_the_calls_pgpoolsync_makes(overlay: str) -> None:
    """The watches list and watch (never get), Events are created, and a rollout gets its pod
    and ReplicaSet and gets and patches its one Deployment (tests/unit/test_rollout.py records
    those calls against the API double)."""
    objs = build(overlay)
    [role] = by_kind(objs, "Role")
    [deploy] = by_kind(objs, "Deployment")
    granted = {
        (g, r, v, tuple(rule.get("resourceNames") or ()))
        for rule in role["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }
    name = (deploy["metadata"]["name"],)
    assert granted == (
        {("", "secrets", v, ()) for v in ("list", "watch")}
        | {("", "services", v, ()) for v in ("list", "watch")}
        | {("discovery.k8s.io", "endpointslices", v, ()) for v in ("list", "watch")}
        | {
            ("", "events", "create", ()),
            ("", "pods", "get", ()),
            ("apps", "replicasets", "get", ()),
        }
        | {("apps", "deployments", v, name) for v in ("get", "patch")}
    )
    assert not by_kind(objs, "ClusterRole")
    assert not any("*" in str(rule) for rule in role["rules"])


def _flags(command: str) -> set[str]:
    parser = build_parser({}, image=env.read({}))
    sub = parser._subparsers._group_actions[0].choices[command]  # type: ignore[union-attr,index]
    top = {f for a in parser._actions for f in a.option_strings}
    return top | {f for a in sub._actions for f in a.option_strings}


def test_every_flag_and_env_twin_in_the_manifests_exists_in_the_cli() -> None:
    docs = build("pgo")
    for c in all_containers(docs):
        if not c["image"].startswith("pgpoolsync"):
            continue
        command = c["args"][0]
        flags = _flags(command)
        for arg in c["args"][1:]:
            if arg.startswith("--"):
                assert arg.split("=", 1)[0] in flags, (c["name"], arg)
        twins = {env_name(f) for f in flags}
        envs = [e["name"] for e in c.get("env", [])]
        [settings] = [
            d
            for d in by_kind(docs, "ConfigMap")
            if d["metadata"]["name"].startswith("pgpoolsync-settings")
        ]
        if c.get("envFrom"):
            envs += list(settings["data"])
        for name in envs:
            if name.startswith("PGPOOLSYNC_"):
                assert name in twins, (c["name"], name)


def test_env_names_follow_pgpool2_on_k8s_and_pgpool2_exporter_conventions() -> None:
    known = {
        "POD_NAME",
        "PGPOOL_PCP_USER",
        "PGPOOL_PCP_PASSWORD",
        "DATA_SOURCE_URI",
        "DATA_SOURCE_USER",
        "DATA_SOURCE_PASS",
        "DATA_SOURCE_NAME",
    }
    for c in all_containers(build("pgo")):
        for e in c.get("env", []):
            name = e["name"]
            assert name in known or name.startswith(("PGPOOLSYNC_", "PGPOOL_PARAMS_")), name
            if name.startswith("PGPOOL_PARAMS_"):
                assert re.fullmatch(r"PGPOOL_PARAMS_[A-Z0-9_]+", name)


def test_no_secret_value_is_written_into_the_manifests() -> None:
    for c in all_containers(build("pgo")):
        for e in c.get("env", []):
            if re.search(r"PASS|KEY", e["name"]) and "FILE" not in e["name"]:
                assert "valueFrom" in e, e["name"]


def test_pdb_service_and_monitoring_match_the_pod() -> None:
    docs = build("cnpg")
    labels = (
        pod_spec(docs) and by_kind(docs, "Deployment")[0]["spec"]["template"]["metadata"]["labels"]
    )
    for kind in ("PodDisruptionBudget", "NetworkPolicy", "PodMonitor"):
        [obj] = by_kind(docs, kind)
        sel = obj["spec"].get("selector") or obj["spec"].get("podSelector")
        assert sel["matchLabels"].items() <= labels.items(), kind
    [svc] = by_kind(docs, "Service")
    assert svc["spec"]["ports"][0]["port"] == 9999
    ports = {p["name"] for c in all_containers(docs) for p in c.get("ports", [])}
    [pm] = by_kind(docs, "PodMonitor")
    assert {e["port"] for e in pm["spec"]["podMetricsEndpoints"]} <= ports


def test_a_renamed_deployment_is_still_the_one_the_role_lets_a_rollout_patch(
    tmp_path: Path,
) -> None:
    overlay = os.path.relpath(ROOT / "manifests" / "overlays" / "pgo", tmp_path)
    (tmp_path / "kustomization.yaml").write_text(
        f"resources:\n  - {overlay}\nnamePrefix: team-a-\n"
    )
    out = subprocess.run(
        ["kubectl", "kustomize", str(tmp_path)], capture_output=True, text=True, check=True
    ).stdout
    objs = tuple(d for d in yaml.safe_load_all(out) if d)
    [role], [deploy] = by_kind(objs, "Role"), by_kind(objs, "Deployment")
    assert deploy["metadata"]["name"] == "team-a-pgpool"
    [rule] = [r for r in role["rules"] if "deployments" in r["resources"]]
    assert rule["resourceNames"] == ["team-a-pgpool"]


def test_an_old_pod_drains_leaves_the_endpoints_first_then_smart_shutdown_within_the_grace() -> (
    None
):
    objs = build("pgo")
    [deploy] = by_kind(objs, "Deployment")
    assert deploy["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    spec = pod_spec(objs)
    pgpool = next(c for c in spec["containers"] if c["name"] == "pgpool")
    delay = pgpool["lifecycle"]["preStop"]["sleep"]["seconds"]
    grace = spec["terminationGracePeriodSeconds"]
    assert delay >= 5 and grace - delay >= 30  # time for sessions to finish after SIGTERM
    assert "command" not in pgpool and "args" not in pgpool  # pgpool is PID 1: it gets SIGTERM
    [sync] = spec["initContainers"]
    env = {e["name"]: e.get("value") for e in sync["env"]}
    assert env["PGPOOLSYNC_RESTART_POLICY"] == "rollout"
    exporter = next(c for c in spec["containers"] if c["name"] == "exporter")
    hold = {e["name"]: e.get("value") for e in exporter["env"]}[
        "PGPOOLSYNC_HOLD_CONNECTION_SECONDS"
    ]
    assert int(hold) < grace - delay
