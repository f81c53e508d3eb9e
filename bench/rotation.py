"""Password rotation under load: pgpoolsync (reload) vs today's images (re-render + restart).

Real PostgreSQL primary + replica, real pgpool, `pgpoolsync run --kube` against the Kubernetes API
double, pgbench (select-only, default 8 clients) through pgpool the whole time. Each rotation:
ALTER ROLE ... PASSWORD, then the Secret is updated; latency = Secret updated → first successful
login with the new password. The rotations run twice: under pgbench flat out, and under the same
clients rate-limited to half the throughput they reached (a loaded but not saturated machine);
each phase also times plain logins with an unchanged password, the floor under that load. The
baseline re-renders and restarts pgpool per rotation, as images that build pool_passwd once at
start force. Prints a table, writes bench/results/rotation.json.
Targets: p99 <= 300 ms, 0 failed transactions.

    python -m bench.rotation [--rotations 100] [--baseline 10] [--clients 8]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import psycopg

from bench.common import put_credential, summary, write
from devcluster import PgCluster, Pgpool, free_port, pgpoolsync_exe, wait_ready
from devcluster.kubeapi import KubeApiDouble
from pgpoolsync.cli import main as cli_main


def _login(pool: Pgpool, user: str, password: str) -> bool:
    try:
        with pool.connect(user, password):
            return True
    except psycopg.OperationalError:
        return False


def _wait_login(pool: Pgpool, user: str, password: str, t0: float, timeout: float = 60) -> float:
    while not _login(pool, user, password):
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError(f"{user} could not log in with the new password")
        time.sleep(0.005)
    return time.perf_counter() - t0


def _pgbench(
    cluster: PgCluster, pool: Pgpool, *, clients: int, seconds: int, rate: int | None = None
) -> subprocess.Popen[str]:
    env = {"PATH": os.environ.get("PATH", ""), "PGPASSWORD": "load-pw"}
    return subprocess.Popen(
        [
            str(cluster.bindir / "pgbench"),
            "-h",
            "127.0.0.1",
            "-p",
            str(pool.port),
            "-U",
            "bench_load",
            "-S",
            "-c",
            str(clients),
            "-j",
            "2",
            "-T",
            str(seconds),
            *(["--rate", str(rate)] if rate else []),
            "postgres",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _pgbench_result(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = proc.communicate(timeout=600)
    text = out + err
    done = re.search(r"number of transactions actually processed: (\d+)", text)
    failed = re.search(r"number of failed transactions: (\d+)", text)
    aborted = len(re.findall(r"client \d+ aborted", text))
    tps = re.search(r"^tps = ([\d.]+)", text, re.M)
    return {
        "tps": float(tps.group(1)) if tps else 0.0,
        "processed": int(done.group(1)) if done else 0,
        "failed": int(failed.group(1)) if failed else 0,
        "aborted_clients": aborted,
        "exit_code": proc.returncode,
    }


def run(rotations: int, baseline: int, clients: int) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="pgpoolsync-bench-rotation-"))
    base.chmod(0o755)
    cluster = PgCluster(base / "pg")
    pool = Pgpool(base, base / "config", key_file=base / "config" / ".pgpoolkey")
    api = KubeApiDouble(bookmark_interval=5).start()
    sync: subprocess.Popen[bytes] | None = None
    try:
        cluster.start()
        cluster.set_role("bench_rot", "pw-0")
        cluster.set_role("bench_load", "load-pw")
        subprocess.run(
            [
                str(cluster.bindir / "pgbench"),
                "-i",
                "-q",
                "-s",
                "1",
                "-h",
                str(cluster.primary.sockdir),
                "-p",
                str(cluster.primary.port),
                "-U",
                "postgres",
                "postgres",
            ],
            check=True,
            capture_output=True,
        )
        with cluster.connect() as conn:
            conn.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO bench_load")
        cluster.wait_replayed()
        for user, pw in (("bench_rot", "pw-0"), ("bench_load", "load-pw")):
            put_credential(api, user, user=user, password=pw, app="bench")
        params = {**pool.params(), "PGPOOL_PARAMS_NUM_INIT_CHILDREN": "32"}
        backends = cluster.backend_args()
        metrics_port = free_port()
        env = {
            "PATH": os.environ.get("PATH", ""),
            **params,
            "PGPOOL_PCP_USER": "pcp",
            "PGPOOL_PCP_PASSWORD": "pcp-pw",
        }
        with (base / "run.log").open("ab") as log:
            sync = subprocess.Popen(
                [
                    pgpoolsync_exe(),
                    "run",
                    "--config-dir",
                    str(pool.config_dir),
                    "--pool-key-file",
                    str(pool.key_file),
                    "--kubeconfig",
                    str(api.write_kubeconfig(base / "kubeconfig")),
                    "--namespace",
                    "default",
                    "--secret-selector",
                    "app=bench",
                    "--listen",
                    f"127.0.0.1:{metrics_port}",
                    *backends,
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_ready(metrics_port, sync)
        pool.start()
        assert _wait_login(pool, "bench_load", "load-pw", time.perf_counter()) >= 0

        # -- pgpoolsync: Secret updated, reload, no restart --------------------------------
        # Twice: pgbench flat out (on a small machine it saturates every core, and a plain
        # login then takes most of the budget), and the same clients at half that throughput.
        pid = pool.proc.pid if pool.proc else None
        phases: dict[str, dict[str, Any]] = {}
        rotated = 0
        rate: int | None = None
        for phase in ("saturating", "half_rate"):
            load = _pgbench(
                cluster, pool, clients=clients, seconds=max(20, rotations // 3), rate=rate
            )
            time.sleep(1)
            floor: list[float] = []  # a login with an unchanged password, same load
            for _ in range(30):
                floor.append(_wait_login(pool, "bench_load", "load-pw", time.perf_counter()))
            live: list[float] = []
            for _ in range(rotations):
                rotated += 1
                cluster.set_role("bench_rot", f"pw-{rotated}")
                t0 = time.perf_counter()
                put_credential(
                    api, "bench_rot", user="bench_rot", password=f"pw-{rotated}", app="bench"
                )
                live.append(_wait_login(pool, "bench_rot", f"pw-{rotated}", t0))
            result = _pgbench_result(load)
            phases[phase] = {
                "pgbench_rate_limit_tps": rate,
                "latency_seconds": summary(live),
                "plain_login_under_load_seconds": summary(floor),
                "pgbench": result,
            }
            rate = max(1, int(result["tps"] / 2))
        assert pool.proc is not None and pool.proc.pid == pid, "pgpool must not restart"

        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics") as resp:
            text = resp.read().decode()
        hist = {
            m.group(1): float(m.group(2))
            for m in re.finditer(
                r"^pgpoolsync_change_to_reload_seconds_(sum|count) (\S+)$", text, re.M
            )
        }
        reload_mean = hist.get("sum", 0.0) / max(1.0, hist.get("count", 0.0))
        sync.terminate()
        sync.wait(10)

        # -- baseline: re-render and restart pgpool for each rotation ----------------------
        load = _pgbench(cluster, pool, clients=clients, seconds=max(15, baseline * 3))
        time.sleep(1)
        restart: list[float] = []
        for i in range(1, baseline + 1):
            pw = f"base-{i}"
            cluster.set_role("bench_rot", pw)
            t0 = time.perf_counter()
            renv = {
                **params,
                "ROT_USERNAME": "bench_rot",
                "ROT_PASSWORD": pw,
                "LOAD_USERNAME": "bench_load",
                "LOAD_PASSWORD": "load-pw",
                "PGPOOL_PCP_USER": "pcp",
                "PGPOOL_PCP_PASSWORD": "pcp-pw",
            }
            assert (
                cli_main(
                    [
                        "--log-level",
                        "WARNING",
                        "render",
                        "--config-dir",
                        str(pool.config_dir),
                        "--pool-key-file",
                        str(pool.key_file),
                        *backends,
                    ],
                    renv,
                )
                == 0
            )
            pool.stop()
            pool.start()
            restart.append(_wait_login(pool, "bench_rot", pw, t0))
        base_load = _pgbench_result(load)
        restart_s = summary(restart)
        return {
            "clients": clients,
            "pgpoolsync": {**phases, "change_to_reload_mean_seconds": reload_mean},
            "restart_baseline": {"latency_seconds": restart_s, "pgbench": base_load},
            "p50_ratio_restart_over_pgpoolsync": restart_s["p50"]
            / phases["saturating"]["latency_seconds"]["p50"],
            "targets": {"p99_seconds": 0.3, "failed_transactions": 0},
        }
    finally:
        if sync is not None and sync.poll() is None:
            sync.kill()
        pool.stop()
        cluster.stop()
        api.stop()
        shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rotations", type=int, default=100)
    ap.add_argument("--baseline", type=int, default=10)
    ap.add_argument("--clients", type=int, default=8)
    args = ap.parse_args()
    r = run(args.rotations, args.baseline, args.clients)
    print(
        f"{'':44}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'max ms':>9}"
        f"{'tx ok':>9}{'failed':>8}{'aborted':>9}"
    )
    rows = [
        (f"pgpoolsync, pgbench {name.replace('_', ' ')}", r["pgpoolsync"][name])
        for name in ("saturating", "half_rate")
    ]
    for label, d in [*rows, ("restart per rotation, saturating", r["restart_baseline"])]:
        lat, pg = d["latency_seconds"], d["pgbench"]
        print(
            f"{label:44}{lat['p50'] * 1e3:9.1f}{lat['p95'] * 1e3:9.1f}{lat['p99'] * 1e3:9.1f}"
            f"{lat['max'] * 1e3:9.1f}{pg['processed']:9d}{pg['failed']:8d}"
            f"{pg['aborted_clients']:9d}"
        )
    for label, d in rows:
        fl = d["plain_login_under_load_seconds"]
        print(
            f"{'  plain login (floor), ' + label.split(', ')[1]:44}{fl['p50'] * 1e3:9.1f}"
            f"{fl['p95'] * 1e3:9.1f}{fl['p99'] * 1e3:9.1f}{fl['max'] * 1e3:9.1f}"
            f"{d['pgbench']['tps']:9.0f} tps"
        )
    print(
        f"pgpoolsync's own change→reload mean: "
        f"{r['pgpoolsync']['change_to_reload_mean_seconds'] * 1e3:.1f} ms"
    )
    print(
        f"restart / pgpoolsync (p50, saturating): {r['p50_ratio_restart_over_pgpoolsync']:.1f}x; "
        f"target p99 <= 300 ms and 0 failed"
    )
    print("wrote", write("rotation", r))


if __name__ == "__main__":
    main()
