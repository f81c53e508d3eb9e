"""The replica-lost and switchover drills on `.ci/kube`'s real node: pgpoolsync's topology
mirroring vs the static files (``--topology off``), as tests/kube/test_kube_node.py runs the
first and this runs both.

The Deployment of manifests/base (the `pgo` overlay, devcluster/kubenode.py) on the real node,
sessions through the pgpool Service's clusterIP and the real kube-proxy, the PostgreSQL primary +
replica on this host behind selector-less Services whose EndpointSlices the drill rewrites
(devcluster/kubedrill.py). With topology off the manifests' replica-lag gate is off too (it
needs the mirroring). A session fails when it errors or takes over 3 s. Prints a table, writes
bench/results/nodedrills.json. Needs root, and the images of `.ci/images`.

    python -m bench.nodedrills [--rounds 1]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path
from typing import Any

from bench.common import write
from bench.failover import row
from devcluster import PgCluster, drills
from devcluster.kubedrill import KubeRig
from devcluster.kubenode import Node, PgpoolOnNode
from devcluster.kubereal import cluster_session


def _round(kube: Any, base: Path, *, on: bool) -> list[drills.DrillResult]:
    node = Node.of(kube)
    cluster = PgCluster(base / "pg", also_listen=(node.host_ip, node.client_net))
    try:
        cluster.start()
        drills.prepare(cluster)
        with PgpoolOnNode(
            kube,
            base / "deploy",
            cluster,
            users={drills.USER: drills.PASSWORD},
            settings={
                "PGPOOL_PARAMS_NUM_INIT_CHILDREN": "8",
                "PGPOOL_PARAMS_MAX_POOL": "2",
                "PGPOOLSYNC_TOPOLOGY": "mirror" if on else "off",
            },
            sidecar_env={} if on else {"PGPOOLSYNC_MAX_REPLICA_LAG": "0"},
        ) as deployed:
            rig = KubeRig(deployed)
            return [
                drills.replica_lost_on(rig, cluster, topology=on),
                drills.switchover_on(rig, cluster, topology=on),
            ]
    finally:
        cluster.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=1, help="runs of each mode")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="pgpoolsync-nodedrills-"))
    base.chmod(0o755)
    runs: list[dict[str, Any]] = []
    try:
        for kube in cluster_session():
            for r in range(args.rounds):
                for on in (True, False):
                    for result in _round(kube, base / f"{'on' if on else 'off'}-{r}", on=on):
                        runs.append(result.summary())
                        print(row(runs[-1]), flush=True)
                        if on and result.failed_after():  # what the sidecars did, to see why
                            print("\n".join(result.describe_failures()), result.log, sep="\n")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(
        "\n| drill | topology | failed > 2 s after change | failed before | longest stall s "
        "| recovery s | replica reads back s |\n|---|---|---|---|---|---|---|"
    )
    for run in runs:
        print(row(run))
    print(f"\nwrote {write('nodedrills', {'rounds': args.rounds, 'runs': runs})}")


if __name__ == "__main__":
    main()
