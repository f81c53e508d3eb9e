"""Topology drills under a steady stream of new sessions: pgpoolsync's topology mirroring vs the
static files pgpool2_on_k8s runs with (``--topology off``: the same files, no node commands).

Real PostgreSQL primary + streaming replica, real pgpool (8 children), `pgpoolsync run --kube`
against the API double, each backend behind a kube-proxy-like forwarder (devcluster/drills.py).
A new session every 0.25 s the whole time (reads in the replica drill, INSERTs in the switchover):
- replica lost: the replica's packets dropped (iptables) and its endpoint not ready for
  ``--hold`` seconds, then both back;
- switchover: stop the primary, promote the replica, rebuild the old primary as its standby,
  2 s later re-point the forwarders and EndpointSlices; again with both pods on one address
  (only their targetRefs tell the endpoints apart);
- replica lag (devcluster/lagdrill.py): replay paused on the replica for 12 s under writes every
  50 ms and new-session reads every 100 ms, then resumed, then 20 s without writes; with
  ``--max-replica-lag 3`` and without.
A session fails when it errors or takes over 3 s. Prints failed sessions (more than 2 s after the
EndpointSlice change, and before), the longest stall and the time to recovery, side by side; for
the lag drill the stale reads, the worst staleness, the time to gate and the time back. Writes
bench/results/failover.json. Needs root (iptables).

    python -m bench.failover [--rounds 3] [--hold 6] [--drills replica_lost,switchover,...]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path
from typing import Any

from bench.common import write
from devcluster import PgCluster, drills, lagdrill

DRILLS = ("replica_lost", "switchover", "switchover_one_address", "replica_lag")


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def row(s: dict[str, Any]) -> str:
    return (
        f"| {s['drill']} | {s['topology']} | {s['failed_after_2s']} / {s['sessions_after_2s']} "
        f"| {s['failed_before_2s']} | {s['longest_stall_s']:.2f} | {_secs(s['recovery_s'])} "
        f"| {_secs(s['replica_reads_back_s'])} |"
    )


def _lag_row(s: dict[str, Any]) -> str:
    gate = "off" if s["max_replica_lag"] is None else f"{s['max_replica_lag']} s"
    return (
        f"| {gate} | {s['stale_reads_over_3s']} / {s['reads'] - s['failed_reads']} "
        f"| {s['stale_reads_over_3s_started_6s_after_pause']} | {s['worst_staleness_s']:.2f} "
        f"| {_secs(s['time_to_gate_s'])} | {_secs(s['time_back_s'])} "
        f"| {_secs(s['replica_reads_back_s'])} "
        f"| {s['replica_reads_while_idle']} / {s['reads_while_idle']} | {s['failed_reads']} |"
    )


def _one(name: str, base: Path, cluster: PgCluster, *, on: bool, hold: float) -> dict[str, Any]:
    if name == "replica_lag":
        return lagdrill.replica_lag(base, cluster, max_lag=3 if on else None).summary()
    if name == "switchover_one_address":
        return drills.switchover(
            base, cluster, topology=on, hold=hold, addresses=drills.ONE_ADDRESS
        ).summary()
    drill = drills.replica_lost if name == "replica_lost" else drills.switchover
    return drill(base, cluster, topology=on, hold=hold).summary()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3, help="runs of each drill and mode")
    ap.add_argument("--hold", type=float, default=6.0, help="seconds the fault lasts")
    ap.add_argument("--drills", default=",".join(DRILLS), help=f"comma-separated, of {DRILLS}")
    args = ap.parse_args()
    chosen = [d for d in args.drills.split(",") if d]
    if set(chosen) - set(DRILLS):
        ap.error(f"--drills: unknown {sorted(set(chosen) - set(DRILLS))}")
    base = Path(tempfile.mkdtemp(prefix="pgpoolsync-failover-"))
    base.chmod(0o755)
    cluster = PgCluster(base / "pg")
    runs: list[dict[str, Any]] = []
    try:
        cluster.start()
        drills.prepare(cluster)
        for r in range(args.rounds):
            for drill in chosen:
                for on in (True, False):
                    name = f"{drill}-{'on' if on else 'off'}-{r}"
                    runs.append(_one(drill, base / name, cluster, on=on, hold=args.hold))
                    print(
                        _lag_row(runs[-1]) if drill == "replica_lag" else row(runs[-1]), flush=True
                    )
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)
    topo = [run for run in runs if run["drill"] != "replica lag"]
    lags = [run for run in runs if run["drill"] == "replica lag"]
    if topo:
        print()
        print(
            "| drill | topology | failed > 2 s after change | failed before | longest stall s "
            "| recovery s | replica reads back s |"
        )
        print("|---|---|---|---|---|---|---|")
        for run in topo:
            print(row(run))
    if lags:
        print()
        print(
            "| --max-replica-lag | stale reads (> 3 s) | of them started > 6 s after the pause "
            "| worst staleness s | time to gate s | time back s | replica reads back s "
            "| replica reads while idle | failed reads |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for run in lags:
            print(_lag_row(run))
    path = write("failover", {"rounds": args.rounds, "hold_s": args.hold, "runs": runs})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
