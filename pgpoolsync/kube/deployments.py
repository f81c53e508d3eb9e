"""The calls a rollout makes, and no others: get a Pod and its ReplicaSet, get and merge-patch the
owning Deployment. Failures become ``ApiError`` (kube/errors.py) for the policy to read."""

from __future__ import annotations

import json

import kubernetes.client
import urllib3
from kubernetes.client.exceptions import ApiException

from pgpoolsync.kube.api import Obj, request
from pgpoolsync.kube.errors import ApiError


class Deployments:
    """The calls a rollout makes, and no others (the Role in manifests/base allows exactly
    these): get this pod and its ReplicaSet, get and merge-patch the owning Deployment."""

    def __init__(self, api: kubernetes.client.ApiClient, *, namespace: str) -> None:
        self._api = api
        self.namespace = namespace

    def _call(self, method: str, kind: str, name: str, body: Obj | None = None) -> Obj:
        try:
            resp = request(
                self._api,
                method,
                kind,
                self.namespace,
                name=name,
                body=body,
                timeout=(5, 10),
                content_type="application/merge-patch+json",
            )
            try:
                out: Obj = json.loads(resp.data)
            finally:
                resp.release_conn()
        except ApiException as exc:
            reason = exc.reason or ""
            raise ApiError(
                int(exc.status or 0), f"{method} {kind}/{name}: {exc.status} {reason}".strip()
            ) from None
        except (urllib3.exceptions.HTTPError, OSError, json.JSONDecodeError) as exc:
            raise ApiError(0, f"{method} {kind}/{name}: {type(exc).__name__}") from None
        return out

    def get(self, kind: str, name: str) -> Obj:
        return self._call("GET", kind, name)

    def patch_deployment(self, name: str, body: Obj) -> Obj:
        return self._call("PATCH", "deployments", name, body)
