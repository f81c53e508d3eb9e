"""Topology drills under a steady stream of new sessions: pgpoolsync's topology mirroring vs the
static files pgpool2_on_k8s runs with (``--topology off``: the same files, no node commands).

Real PostgreSQL primary + streaming replica, real pgpool (8 children), `pgpoolsync run --kube`
against the API double, each backend behind a kube-proxy-like forwarder (tests/drills.py). A new
session every 0.25 s the whole time (reads in the replica drill, INSERTs in the switchover):
- replica lost: the replica's packets dropped (iptables) and its endpoint not ready for
  ``--hold`` seconds, then both back;
- switchover: stop the primary, promote the replica, rebuild the old primary as its standby,
  2 s later re-point the forwarders and EndpointSlices.
A session fails when it errors or takes over 3 s. Prints failed sessions (more than 2 s after the
EndpointSlice change, and before), the longest stall and the time to recovery, side by side;
writes bench/results/failover.json. Needs root (iptables).

    python -m bench.failover [--rounds 3] [--hold 6]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path
from typing import Any

from bench.common import write
from devcluster import PgCluster
from tests import drills


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _row(s: dict[str, Any]) -> str:
    return (
        f"| {s['drill']} | {s['topology']} | {s['failed_after_2s']} / {s['sessions_after_2s']} "
        f"| {s['failed_before_2s']} | {s['longest_stall_s']:.2f} | {_secs(s['recovery_s'])} "
        f"| {_secs(s['replica_reads_back_s'])} |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3, help="runs of each drill and mode")
    ap.add_argument("--hold", type=float, default=6.0, help="seconds the fault lasts")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="pgpoolsync-failover-"))
    base.chmod(0o755)
    cluster = PgCluster(base / "pg")
    runs: list[dict[str, Any]] = []
    try:
        cluster.start()
        drills.prepare(cluster)
        for r in range(args.rounds):
            for drill in (drills.replica_lost, drills.switchover):
                for topology in (True, False):
                    name = f"{drill.__name__}-{'on' if topology else 'off'}-{r}"
                    result = drill(base / name, cluster, topology=topology, hold=args.hold)
                    runs.append(result.summary())
                    print(_row(runs[-1]), flush=True)
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)
    print()
    print(
        "| drill | topology | failed > 2 s after change | failed before | longest stall s "
        "| recovery s | replica reads back s |"
    )
    print("|---|---|---|---|---|---|---|")
    for run in runs:
        print(_row(run))
    path = write("failover", {"rounds": args.rounds, "hold_s": args.hold, "runs": runs})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
