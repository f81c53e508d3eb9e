"""Kubernetes objects as the API server serves them, for the API double and the tests that fill it:
builders (``secret``, ``service``, ``endpoint_slice``, ``pod``, ``replica_set``, ``deployment``),
each resource's kind and group, the ``Status`` a refusal answers (``status``, worded as 1.37 words
it), equality-based label and field selectors, and RFC 7386 merge patch."""

from __future__ import annotations

import base64
import copy
from typing import Any

Obj = dict[str, Any]

LIST_KIND = {
    "secrets": "SecretList",
    "services": "ServiceList",
    "endpointslices": "EndpointSliceList",
    "events": "EventList",
    "pods": "PodList",
    "replicasets": "ReplicaSetList",
    "deployments": "DeploymentList",
}
GROUP = {"endpointslices": "discovery.k8s.io", "replicasets": "apps", "deployments": "apps"}
KIND = {
    "secrets": "Secret",
    "services": "Service",
    "endpointslices": "EndpointSlice",
    "events": "Event",
    "pods": "Pod",
    "replicasets": "ReplicaSet",
    "deployments": "Deployment",
}
# The kinds whose metadata.generation the server keeps: 1 when made, +1 when what ``generation_of``
# reads changes (its spec; a Deployment's annotations too, as the server's strategy has it).
GENERATION = {"pods", "replicasets", "deployments"}
# What a core/v1 Event read back carries when it was posted without them.
EVENT_DEFAULTS: Obj = {
    "source": {},
    "firstTimestamp": None,
    "lastTimestamp": None,
    "eventTime": None,
    "reportingComponent": "",
    "reportingInstance": "",
}


def generation_of(kind: str, obj: Obj) -> tuple[Any, Any]:
    annotations = obj["metadata"].get("annotations") if kind == "deployments" else None
    return obj.get("spec") or {}, annotations or {}  # nil and empty are equal there


def qualified(kind: str) -> str:
    """The resource as a Status message names it: ``pods``, ``deployments.apps``."""
    return f"{kind}.{GROUP[kind]}" if kind in GROUP else kind


def status(code: int, reason: str, message: str, *, kind: str = "", name: str | None = None) -> Obj:
    """A refusal's body as the real server answers it: ``details`` name the resource asked for."""
    out: Obj = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure"}
    out.update(message=message, reason=reason)
    details = {"name": name, "group": GROUP.get(kind), "kind": kind}
    if kind:
        out["details"] = {k: v for k, v in details.items() if v}
    out["code"] = code
    return out


def match_labels(selector: str | None, labels: dict[str, str]) -> bool:
    """Equality-based selectors: ``a=b``, ``a==b``, ``a!=b``, ``a`` (exists), ``!a``."""
    if not selector:
        return True
    for raw in selector.split(","):
        term = raw.strip()
        if not term:
            continue
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k.strip()) == v.strip():
                return False
        elif "=" in term:
            k, v = term.replace("==", "=").split("=", 1)
            if labels.get(k.strip()) != v.strip():
                return False
        elif term.startswith("!"):
            if term[1:].strip() in labels:
                return False
        elif term not in labels:
            return False
    return True


def match_fields(selector: str | None, obj: Obj) -> bool:
    if not selector:
        return True
    meta = obj.get("metadata", {})
    for term in selector.split(","):
        negate = "!=" in term
        k, v = term.replace("!=", "=").replace("==", "=").split("=", 1)
        actual = {
            "metadata.name": meta.get("name"),
            "metadata.namespace": meta.get("namespace"),
        }.get(k.strip())
        if (actual == v.strip()) == negate:
            return False
    return True


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (what ``application/merge-patch+json`` does)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def deployment(name: str, *, namespace: str = "default", replicas: int = 2) -> Obj:
    return {
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-deploy-{name}"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": []}},
        },
    }


def replica_set(name: str, deployment_name: str, *, namespace: str = "default") -> Obj:
    return {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": f"uid-rs-{name}",  # what its pods' ownerReferences name
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": deployment_name,
                    "uid": f"uid-deploy-{deployment_name}",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        }
    }


def pod(
    name: str,
    replica_set_name: str,
    *,
    namespace: str = "default",
    annotations: dict[str, str] | None = None,
) -> Obj:
    return {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "annotations": dict(annotations or {}),
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": replica_set_name,
                    "uid": f"uid-rs-{replica_set_name}",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        }
    }


def secret(
    name: str,
    data: dict[str, str],
    *,
    labels: dict[str, str] | None = None,
    namespace: str = "default",
) -> Obj:
    return {
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def service(
    name: str,
    *,
    port: int = 5432,
    cluster_ip: str = "10.0.0.1",
    port_name: str = "postgres",
    namespace: str = "default",
) -> Obj:
    return {
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "clusterIP": cluster_ip,
            "ports": [{"name": port_name, "port": port, "protocol": "TCP"}],
        },
    }


def endpoint_slice(
    name: str,
    service_name: str,
    addresses: list[tuple[str, bool]],
    namespace: str = "default",
    *,
    pods: list[tuple[str, str]] | None = None,
    ports: list[tuple[str, int]] | None = None,
) -> Obj:
    """``pods``: a (name, uid) targetRef per address, in order; ``ports``: (name, port)."""
    endpoints: list[Obj] = [{"addresses": [a], "conditions": {"ready": r}} for a, r in addresses]
    for ep, (pod_name, uid) in zip(endpoints, pods or [], strict=False):
        ep["targetRef"] = {"kind": "Pod", "name": pod_name, "namespace": namespace, "uid": uid}
    out: Obj = {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"kubernetes.io/service-name": service_name},
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
    }
    if ports is not None:
        out["ports"] = [{"name": n, "port": p, "protocol": "TCP"} for n, p in ports]
    return out
