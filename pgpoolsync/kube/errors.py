"""What a Kubernetes API call can fail with, one class each; importing it loads no ``kubernetes``.

``ApiError`` is what the rollout's calls raise (kube/deployments.py raises it, the policy in
restart/rollout.py reads its status); ``ApiUnavailable`` is the source's refusal to start;
``KubeConfigError`` says no client could be made; ``Gone`` is a watch's 410.
"""

from __future__ import annotations

from pgpoolsync.sources import SourceUnavailable

# discovery.k8s.io/v1 EndpointSlices are served from Kubernetes 1.21 on.
MIN_KUBERNETES = "1.21"


class Gone(Exception):
    """The resourceVersion is too old: relist."""


class KubeConfigError(Exception):
    """Neither an in-cluster service account nor a usable kubeconfig."""


class ApiUnavailable(SourceUnavailable):
    """The API server does not serve what is watched, or never answered the first list."""


class ApiError(Exception):
    """A Kubernetes API call for a rollout failed (raised by the API edge, read by the policy)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
