"""podman for the container tests: the images .ci/images builds, and the Pod of manifests/base
made playable by podman 4.3's `kube play`.

The Pod is derived from `kubectl kustomize manifests/base`, never restated: containers, flags,
env, users, mounts, probes and security contexts are the manifest's. `playable_pod` changes only
what podman 4.3 or a machine without a cluster lacks, and SWAPS lists each change with its reason
(the test report and the closing note quote it).
"""

from __future__ import annotations

import base64
import copy
import functools
import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
CONTAINERS_CONF = ROOT / ".ci" / "containers.conf"
IMAGES = (
    "localhost/pgpool:latest",
    "localhost/pgpoolsync:latest",
    "localhost/pgpool-dropin:latest",
)
CREDENTIALS_MOUNT = "/var/run/secrets/pgpoolsync"

SWAPS = (
    "the native sidecar (init container with restartPolicy: Always, podman 4.3 has none) becomes "
    "an init container running `pgpoolsync run --once` (the files exist before pgpool starts, as "
    "the startupProbe ensures) and a regular first container running `pgpoolsync run`, both with "
    "the sidecar's env, mounts and security context",
    "each volume's name gets the pod's name in front: podman 4.3 makes an emptyDir a named "
    "volume shared by every pod that uses the name, and keeps it after the pod (a Secret volume "
    "becomes a named volume after the Secret, filled once: play() removes it first)",
    "`run --kube` becomes `run`, with the secrets directory (kubelet's ..data layout, a hostPath "
    f"mounted at {CREDENTIALS_MOUNT}) and the backends in the pgpoolsync-settings ConfigMap, "
    "which each overlay fills anyway: there is no Kubernetes API",
    "PGPOOLSYNC_RESTART_POLICY rollout becomes never: a rollout patches the Deployment through "
    "the API",
    "the replica-lag gate (PGPOOLSYNC_MAX_REPLICA_LAG, the monitoring login and its Secret "
    "volume) is left out: it follows the replica Service's EndpointSlices, which need the API",
    "no Services: the pod has its own network namespace on podman's bridge, and the primary and "
    "replica Services are kube-proxy-like forwarders on the bridge's gateway to the PostgreSQL "
    "nodes on the host's loopback (the backends in the ConfigMap)",
    "the namespace from the downward API (fieldRef metadata.namespace, which podman 4.3 does not "
    "support) becomes the value `default`, the namespace of a pod created without one",
    "restartPolicy: OnFailure: podman 4.3 applies the pod's policy to init containers too, so "
    "Always (a Deployment's) would rerun `render` forever",
    "imagePullPolicy: Never: the images are local (no registry is reachable)",
)


def podman(
    *args: str, check: bool = True, timeout: float = 120.0, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}
    got = subprocess.run(
        ["podman", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        input=input,
    )
    if check and got.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)}: {got.returncode}\n{got.stderr[-3000:]}")
    return got


def missing_images() -> list[str]:
    return [i for i in IMAGES if podman("image", "exists", i, check=False).returncode != 0]


@functools.cache
def _kustomize(path: Path) -> str:
    return subprocess.run(
        ["kubectl", "kustomize", str(path)], capture_output=True, text=True, check=True
    ).stdout


def rendered(path: Path = ROOT / "manifests" / "base") -> list[dict[str, Any]]:
    """The built manifests, parsed afresh on each call (callers change their copy)."""
    return [d for d in yaml.safe_load_all(_kustomize(path)) if d]


def deployment(docs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    [dep] = [d for d in docs if d["kind"] == "Deployment"]
    return copy.deepcopy(dict(dep))


def _env_set(container: dict[str, Any], name: str, value: str) -> None:
    for var in container.get("env", []):
        if var["name"] == name:
            var.clear()
            var.update({"name": name, "value": value})
            return
    container.setdefault("env", []).append({"name": name, "value": value})


@dataclass(frozen=True)
class Playable:
    """What `podman kube play` takes: the Pod and the ConfigMap file for --configmap."""

    pod: dict[str, Any]
    configmap: dict[str, Any]


# The replica-lag gate's settings and the monitoring login's Secret volume: left out of the pod
# (the gate needs the API's EndpointSlices, which the podman pod has not).
LAG_GATE_ENV = frozenset(
    {"PGPOOLSYNC_MAX_REPLICA_LAG", "PGPOOLSYNC_MONITOR_USER", "PGPOOLSYNC_MONITOR_PASSWORD_FILE"}
)
LAG_GATE_VOLUME = "monitor-password"


def playable_pod(
    dep: Mapping[str, Any],
    *,
    name: str,
    settings: Mapping[str, str],
    credentials: Path | None,
) -> Playable:
    """The Deployment's pod template as a Pod podman 4.3 runs (SWAPS); ``settings`` fill the
    pgpoolsync-settings ConfigMap; ``credentials`` is the host directory mounted as the secrets
    directory (None: not mounted, a bad-input case)."""
    template = copy.deepcopy(dep["spec"]["template"])
    spec = template["spec"]
    [sidecar] = [c for c in spec["initContainers"] if c.get("restartPolicy") == "Always"]
    spec["initContainers"] = [c for c in spec["initContainers"] if c is not sidecar]
    del sidecar["restartPolicy"]
    assert sidecar["args"] == ["run", "--kube"], sidecar["args"]
    _env_set(sidecar, "PGPOOLSYNC_RESTART_POLICY", "never")
    sidecar["env"] = [e for e in sidecar["env"] if e["name"] not in LAG_GATE_ENV]
    sidecar["volumeMounts"] = [m for m in sidecar["volumeMounts"] if m["name"] != LAG_GATE_VOLUME]
    spec["volumes"] = [v for v in spec["volumes"] if v["name"] != LAG_GATE_VOLUME]
    if credentials is not None:
        sidecar["volumeMounts"].append(
            {"name": "credentials", "mountPath": CREDENTIALS_MOUNT, "readOnly": True}
        )
        spec["volumes"].append(
            {"name": "credentials", "hostPath": {"path": str(credentials), "type": "Directory"}}
        )
    render = copy.deepcopy(sidecar)
    render["name"] = "pgpoolsync-init"
    render["args"] = ["run", "--once"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        render.pop(probe, None)
    render.pop("ports", None)
    run = copy.deepcopy(sidecar)
    run["args"] = ["run"]
    run.pop("startupProbe", None)
    spec["initContainers"].append(render)
    spec["containers"].insert(0, run)
    for c in [*spec["initContainers"], *spec["containers"]]:
        c["imagePullPolicy"] = "Never"
        for var in c.get("env", []):
            field = var.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
            if field == "metadata.namespace":
                _env_set(c, var["name"], "default")
    spec["restartPolicy"] = "OnFailure"
    renamed = {v["name"]: f"{name}-{v['name']}" for v in spec["volumes"]}
    for v in spec["volumes"]:
        v["name"] = renamed[v["name"]]
    for c in [*spec["initContainers"], *spec["containers"]]:
        for m in c.get("volumeMounts", []):
            m["name"] = renamed[m["name"]]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": template["metadata"]["labels"]},
        "spec": spec,
    }
    [ref] = [e["configMapRef"]["name"] for e in sidecar.get("envFrom", []) if "configMapRef" in e]
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": ref},
        "data": dict(settings),
    }
    return Playable(pod=pod, configmap=configmap)


def _base64_values(data: Mapping[str, str]) -> dict[str, str]:
    return {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}


def secret_doc(name: str, data: Mapping[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "type": "Opaque",
        # data, not stringData: podman 4.3 keeps only a Secret's data
        "data": _base64_values(data),
    }


def inspect(container: str) -> dict[str, Any]:
    got = podman("container", "inspect", container)
    [info] = json.loads(got.stdout)
    return dict(info)


NETWORK = "pgpoolsync-ci"
SUBNET = "10.89.77.0/24"
GATEWAY = "10.89.77.1"  # where the Service stand-ins listen, as seen from the pod


def ensure_network() -> str:
    """podman's bridge network for the test pods; returns the gateway address. The bridge
    interface exists only while a container is attached to it."""
    if podman("network", "exists", NETWORK, check=False).returncode != 0:
        podman("network", "create", "--subnet", SUBNET, "--gateway", GATEWAY, NETWORK)
    return GATEWAY


def create_secrets(
    volume_secrets: Mapping[str, Mapping[str, str]],
    env_secrets: Mapping[str, Mapping[str, str]],
    *,
    workdir: Path,
) -> list[str]:
    """Secrets as podman 4.3 reads them: for Secret volumes a `kube play`ed Secret (its data),
    for secretKeyRef env a podman secret holding a JSON map of base64 values. Values go
    through a 0600 file or stdin, never argv."""
    names = [*volume_secrets, *env_secrets]
    for name in names:
        podman("secret", "rm", name, check=False)
    if volume_secrets:
        path = workdir / "secrets.yaml"
        path.touch(mode=0o600)
        path.write_text(yaml.safe_dump_all([secret_doc(n, d) for n, d in volume_secrets.items()]))
        podman("kube", "play", str(path))
        path.unlink()
    for name, data in env_secrets.items():
        podman("secret", "create", name, "-", input=json.dumps(_base64_values(data)))
    return names


@dataclass
class PlayedPod:
    """A pod started with `podman kube play`; ``remove`` takes it, its volumes and secrets."""

    name: str
    playable: Playable
    secrets: list[str]
    result: subprocess.CompletedProcess[str]

    def container(self, short: str) -> str:
        return f"{self.name}-{short}"

    def logs(self, short: str) -> str:
        got = podman("logs", self.container(short), check=False)
        return got.stdout + got.stderr

    def state(self, short: str) -> dict[str, Any]:
        return dict(inspect(self.container(short))["State"])

    def remove(self) -> None:
        podman("pod", "rm", "--force", "--time", "0", self.name, check=False)
        _remove_volumes(self.playable)
        for s in self.secrets:
            podman("secret", "rm", s, check=False)


def _remove_volumes(playable: Playable) -> None:
    """podman 4.3 names an emptyDir's volume after it, a Secret volume's after the Secret."""
    for v in playable.pod["spec"]["volumes"]:
        if "emptyDir" in v:
            podman("volume", "rm", "--force", v["name"], check=False)
        elif "secret" in v:
            podman("volume", "rm", "--force", v["secret"]["secretName"], check=False)


def play(playable: Playable, *, secrets: list[str], workdir: Path) -> PlayedPod:
    name = playable.pod["metadata"]["name"]
    podman("pod", "rm", "--force", "--time", "0", name, check=False)
    _remove_volumes(playable)
    pod_file, cm_file = workdir / f"{name}.yaml", workdir / f"{name}-settings.yaml"
    pod_file.write_text(yaml.safe_dump(playable.pod))
    cm_file.write_text(yaml.safe_dump(playable.configmap))
    result = podman(
        "kube",
        "play",
        "--network",
        NETWORK,
        "--configmap",
        str(cm_file),
        str(pod_file),
        check=False,
        timeout=180,
    )
    return PlayedPod(name=name, playable=playable, secrets=secrets, result=result)
