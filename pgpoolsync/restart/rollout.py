"""``--restart-policy rollout``: a restart pgpool needs becomes a rolling restart of the Deployment.

Owns finding the Deployment (this pod → its ReplicaSet → the Deployment, or ``--deployment``),
reading the hash it carries and the one this pod was made with (the readers of those objects are
here, below), and the merge patch that starts the rollout (core/rollout.py decides;
kube/deployments.py makes the calls and raises kube/errors.py's ``ApiError``). Kubernetes
then replaces the pods one at a time behind the Service, within the PodDisruptionBudget; each
new pod's pgpool starts on the files its sidecar renders. Knows no ``kubernetes`` types.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from pgpoolsync.core import rollout
from pgpoolsync.core.model import DesiredState
from pgpoolsync.core.outcomes import RestartOutcome
from pgpoolsync.core.rollout import HASH_ANNOTATION, REQUESTED_AT_ANNOTATION
from pgpoolsync.kube.errors import ApiError

log = logging.getLogger(__name__)


class DeploymentApi(Protocol):
    def get(self, kind: str, name: str) -> dict[str, Any]: ...

    def patch_deployment(self, name: str, body: dict[str, Any]) -> dict[str, Any]: ...


def _parse_time(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None  # not ours to fix: treated as never requested


def _time_text(when: float) -> str:
    return dt.datetime.fromtimestamp(when, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class _Seen:
    desired: str
    outcome: RestartOutcome
    at: float


class Rollout:
    def __init__(
        self,
        api: DeploymentApi,
        *,
        pod_name: str | None,
        deployment: str | None = None,
        min_interval: float,
        recheck_seconds: float = 30.0,
        wall: Callable[[], float] = time.time,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api = api
        self._pod_name = pod_name
        self._deployment = deployment
        self._pod_hash: str | None = None
        self._resolved = False
        self._min_interval = min_interval
        self._recheck = recheck_seconds
        self._wall = wall
        self._clock = clock
        self._seen: _Seen | None = None

    def _resolve(self) -> str:
        """The Deployment's name, and the hash this pod was made with (once)."""
        if self._resolved and self._deployment:
            return self._deployment
        if self._pod_name:
            pod = self._api.get("pods", self._pod_name)
            self._pod_hash = annotation(pod, key=HASH_ANNOTATION)
            if not self._deployment:
                rs_name = owner(pod, "ReplicaSet")
                if rs_name is None:
                    raise ApiError(0, f"pod {self._pod_name} is not owned by a ReplicaSet")
                name = owner(self._api.get("replicasets", rs_name), "Deployment")
                if name is None:
                    raise ApiError(0, f"replicaset {rs_name} is not owned by a Deployment")
                self._deployment = name
        if not self._deployment:
            raise ApiError(0, "no --pod-name ($POD_NAME) or --deployment to roll out")
        self._resolved = True
        return self._deployment

    def __call__(
        self, state: DesiredState, names: tuple[str, ...], *, blocked: str | None
    ) -> RestartOutcome:
        desired = rollout.restart_hash(state)
        seen = self._seen
        if (
            seen is not None
            and seen.desired == desired
            and seen.outcome.decision in (rollout.PENDING, rollout.DONE)
            and self._clock() - seen.at < self._recheck
        ):
            return seen.outcome  # a rollout under way takes minutes: no GET every pass
        try:
            outcome = self._request(desired, blocked=blocked)
        except ApiError as exc:
            outcome = RestartOutcome(
                restart_hash=desired, deployment=self._deployment, error=str(exc)
            )
        if outcome.decision != rollout.PATCH:
            self._seen = _Seen(desired, outcome, self._clock())
        return outcome

    def _request(self, desired: str, *, blocked: str | None) -> RestartOutcome:
        name = self._resolve()
        for attempt in (1, 2):
            dep = self._api.get("deployments", name)
            requested_at = _parse_time(annotation(dep, key=REQUESTED_AT_ANNOTATION))
            now = self._wall()
            decision = rollout.decide(
                desired=desired,
                template=annotation(dep, "spec", "template", key=HASH_ANNOTATION),
                pod=self._pod_hash,
                requested_at=requested_at,
                now=now,
                min_interval=self._min_interval,
                blocked=blocked,
            )
            out = RestartOutcome(
                decision=decision.action,
                restart_hash=desired,
                deployment=name,
                why=decision.why,
                requested_at=requested_at,
                wait=decision.wait,
            )
            if decision.action != rollout.PATCH:
                return out
            meta = dep.get("metadata") or {}
            body = patch_body(
                desired=desired,
                now_text=_time_text(now),
                resource_version=meta.get("resourceVersion"),
            )
            try:
                self._api.patch_deployment(name, body)
            except ApiError as exc:
                if exc.status == 409 and attempt == 1:
                    continue  # another sidecar patched first: read what it asked for
                raise
            done = replace(out, requested_at=now)
            # Until the next read, the passes after this one see the rollout under way.
            later = replace(
                done,
                decision=rollout.PENDING,
                why=f"the Deployment is rolling out restart hash {desired}; this pod waits",
            )
            self._seen = _Seen(desired, later, self._clock())
            return done
        raise ApiError(409, f"deployments/{name} kept changing under the patch")


def patch_body(*, desired: str, now_text: str, resource_version: str | None) -> dict[str, object]:
    """The merge patch: the hash on the pod template (rolls the pods), the request time on the
    Deployment; with the resourceVersion read, so that of two sidecars racing one wins and the
    other (409 Conflict) reads again and finds the rollout under way."""
    meta: dict[str, object] = {"annotations": {REQUESTED_AT_ANNOTATION: now_text}}
    if resource_version is not None:
        meta["resourceVersion"] = resource_version
    return {
        "metadata": meta,
        "spec": {"template": {"metadata": {"annotations": {HASH_ANNOTATION: desired}}}},
    }


def owner(obj: dict[str, object], kind: str) -> str | None:
    """The name of the controlling owner of ``kind`` in an object's ownerReferences."""
    meta = obj.get("metadata")
    refs = meta.get("ownerReferences") if isinstance(meta, dict) else None
    for ref in refs if isinstance(refs, list) else []:
        if isinstance(ref, dict) and ref.get("kind") == kind and ref.get("controller", True):
            name = ref.get("name")
            return name if isinstance(name, str) else None
    return None


def annotation(obj: dict[str, object], *path: str, key: str) -> str | None:
    """``metadata.annotations[key]`` of ``obj`` (or of the object at ``path`` inside it)."""
    node: object = obj
    for step in (*path, "metadata", "annotations"):
        node = node.get(step) if isinstance(node, dict) else None
    value = node.get(key) if isinstance(node, dict) else None
    return value if isinstance(value, str) else None
