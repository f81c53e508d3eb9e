"""The topology drills of devcluster/drills.py on a real node: the Deployment of manifests/base
(`devcluster.kubenode`) is the pgpool under test, sessions go through the pgpool Service, and the
PostgreSQL Services are real Services whose EndpointSlices the drill rewrites as an operator does,
so what follows them is the real kube-proxy (new connections) and the sidecar's watch.

Every PostgreSQL endpoint is this host's address on the node's veth, told apart by port and pod
(as pods on the host network are). A lost replica's packets are dropped as they arrive from the
node (`netfault`, on the veth `.ci/kube` made, the replica's port only).
"""

from __future__ import annotations

import contextlib
import json
import time
from datetime import datetime
from typing import Any

import psycopg

from devcluster import drills, netfault
from devcluster.drills import DB, PASSWORD, USER, Pod, pods
from devcluster.kubenode import PgpoolOnNode


class KubeRig:
    """A `drills.DrillRig` on a running `PgpoolOnNode` (which must have the drill's user)."""

    def __init__(self, deployed: PgpoolOnNode) -> None:
        self.d = deployed
        host = deployed.node.host_ip
        self.pods = pods((host, host))  # the pods PgpoolOnNode's slices name (POD_NAMES)

    def slices(self, *, primary: tuple[Pod, bool], replica: tuple[Pod, bool]) -> None:
        self.d.slices(
            primary=(primary[0].name, primary[0].uid, primary[1]),
            replica=(replica[0].name, replica[0].uid, replica[1]),
        )

    def repoint(self, *, primary_port: int, replica_port: int) -> None:
        """Nothing to do: the slices say the ports, kube-proxy follows them."""

    def dropped(self, port: int) -> contextlib.AbstractContextManager[None]:
        return netfault.dropped(port, interface=self.d.node.veth)

    def connect(self, **kw: Any) -> psycopg.Connection[Any]:
        return self.d.connect(
            USER, PASSWORD, dbname=DB, connect_timeout=20, application_name="drill", **kw
        )

    def read(self) -> int:
        return drills.read(self.connect)

    def write(self) -> int:
        return drills.write(self.connect)

    def node_log(self, since: float) -> str:
        """Every sidecar's node lines (JSON), stamped relative to ``since`` (monotonic)."""
        offset = time.time() - time.monotonic()
        out = []
        for pod in self.d.pods():
            name = pod["metadata"]["name"]
            for line in self.d.logs(name).splitlines():
                try:
                    entry = json.loads(line)
                    stamp = datetime.fromisoformat(entry["time"].replace("Z", "+00:00"))
                except (ValueError, KeyError):
                    continue
                message = str(entry.get("message", ""))
                if "node" in message and entry.get("level") != "debug":
                    at = stamp.timestamp() - offset - since
                    out.append((at, f"+{at:.2f}s {name}: {message}"))
        return "\n".join(line for _, line in sorted(out))
