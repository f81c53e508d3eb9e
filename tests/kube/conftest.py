"""The real cluster of `.ci/kube`, shared by the session's `kube` tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devcluster.kubereal import KubeCluster, cluster_session


@pytest.fixture(scope="session")
def kube() -> Iterator[KubeCluster]:
    yield from cluster_session()
