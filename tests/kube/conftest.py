"""The real cluster every `kube` module shares: one per session (or PGPOOLSYNC_KUBE_DIR's)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devcluster.kubereal import KubeCluster, cluster_session


@pytest.fixture(scope="session")
def kube() -> Iterator[KubeCluster]:
    yield from cluster_session()
