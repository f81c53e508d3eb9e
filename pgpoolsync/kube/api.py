"""The client, its auth, and one request: the ``kubernetes`` package's configuration and REST layer,
without its generated API classes.

``load_api_client`` takes the in-cluster service account first (unless a kubeconfig is named),
then the kubeconfig; ``request`` makes one call by kind and namespace and hands back the raw
response; ``PATHS``/``GROUPS`` are the only resources pgpoolsync touches (the Role in
manifests/base allows exactly these). ``secret_data`` reads a Secret's base64 data.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import kubernetes.client
import kubernetes.config
import urllib3
from kubernetes.client.exceptions import ApiException

from pgpoolsync.kube.errors import KubeConfigError

Obj = dict[str, Any]


def load_api_client(*, kubeconfig: str | None) -> kubernetes.client.ApiClient:
    """In-cluster config first (unless a kubeconfig is named), then the kubeconfig."""
    if not kubeconfig:
        try:
            kubernetes.config.load_incluster_config()  # type: ignore[no-untyped-call]
            return kubernetes.client.ApiClient()
        except kubernetes.config.ConfigException:
            pass
    cfg = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, client_configuration=cfg
        )
    except (kubernetes.config.ConfigException, OSError, ValueError) as exc:
        # Only the config library's own message: a parser's could quote the file (a token).
        why = str(exc).splitlines()[0] if isinstance(exc, kubernetes.config.ConfigException) else ""
        where = f"--kubeconfig {kubeconfig}" if kubeconfig else "no in-cluster service account"
        raise KubeConfigError(
            f"--kube: cannot reach the Kubernetes API ({where}; kubeconfig: "
            f"{why or type(exc).__name__}). Run inside a Pod with a service account, or pass "
            "--kubeconfig FILE"
        ) from None
    return kubernetes.client.ApiClient(cfg)


GROUPS = {
    "endpointslices": "discovery.k8s.io/v1",
    "replicasets": "apps/v1",
    "deployments": "apps/v1",
}

PATHS = {
    "secrets": "/api/v1/namespaces/{namespace}/secrets",
    "services": "/api/v1/namespaces/{namespace}/services",
    "endpointslices": "/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices",
    "events": "/api/v1/namespaces/{namespace}/events",
    "pods": "/api/v1/namespaces/{namespace}/pods",
    "replicasets": "/apis/apps/v1/namespaces/{namespace}/replicasets",
    "deployments": "/apis/apps/v1/namespaces/{namespace}/deployments",
}


def request(
    api: kubernetes.client.ApiClient,
    method: str,
    kind: str,
    namespace: str,
    *,
    query: list[tuple[str, str]] | None = None,
    body: Obj | None = None,
    timeout: tuple[float, float] | None = None,
    name: str | None = None,
    content_type: str = "application/json",
) -> urllib3.BaseHTTPResponse:
    """One API call through the client's configuration, auth and REST layer; the raw response.

    The generated ``CoreV1Api`` is not used: importing it builds hundreds of pydantic models,
    which took 1 s of a 2 s start, and the answers are read as plain JSON anyway. Non-2xx
    raises ``ApiException`` as the generated methods do.
    """
    headers = {"Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = content_type
    path, params = PATHS[kind], {"namespace": namespace}
    if name is not None:
        path, params["name"] = path + "/{name}", name
    method, url, headers, payload, post = api.param_serialize(
        method=method,
        resource_path=path,
        path_params=params,
        query_params=query or [],
        header_params=headers,
        body=body,
        auth_settings=["BearerToken"],
    )
    resp = api.call_api(
        method, url, header_params=headers, body=payload, post_params=post, _request_timeout=timeout
    )
    if not 200 <= resp.status <= 299:
        resp.read()  # type: ignore[no-untyped-call]
        raise ApiException.from_response(http_resp=resp, body=None, data=None)
    raw: urllib3.BaseHTTPResponse = resp.response
    return raw


def in_cluster_namespace() -> str | None:
    path = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def secret_data(secret: Mapping[str, Any]) -> dict[str, bytes]:
    """A Secret's data, base64-decoded (stringData is folded into data by the API server)."""
    out: dict[str, bytes] = {}
    for key, value in (secret.get("data") or {}).items():
        try:
            out[key] = base64.b64decode(value or "", validate=True)
        except ValueError:
            out[key] = b"\xff"  # not decodable: reported by the model as invalid UTF-8
    return out
