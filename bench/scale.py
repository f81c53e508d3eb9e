"""Scale: N credential Secrets in the Kubernetes API double, `pgpoolsync run --kube` against it.

For N in 100, 1,000, 10,000: time from start to the first apply on disk (/readyz), one Secret
changed → pgpool reloaded (pgpoolsync's change_to_reload histogram; pgpool is real), and peak RSS
of the pgpoolsync process. Prints a table, writes bench/results/scale.json.
Targets at 10,000: first apply <= 2 s, change → reload <= 100 ms, peak RSS <= 120 MiB.

    python -m bench.scale [--sizes 100,1000,10000] [--changes 20]
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

from bench.common import put_credential, summary, write
from devcluster import PgCluster, Pgpool, free_port, pgpoolsync_exe
from devcluster.kubeapi import KubeApiDouble


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return str(r.read().decode())


def _value(text: str, name: str) -> float:
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def one_size(n: int, changes: int, cluster: PgCluster, base: Path) -> dict[str, Any]:
    api = KubeApiDouble(bookmark_interval=10).start()
    work = base / f"n{n}"
    pool = Pgpool(work, work / "config", key_file=work / "config" / ".pgpoolkey")
    proc: subprocess.Popen[bytes] | None = None
    try:
        for i in range(n):
            put_credential(
                api, f"user-{i:05d}", user=f"user{i:05d}", password=f"password-{i}", app="scale"
            )
        port = free_port()
        env = {
            "PATH": os.environ.get("PATH", ""),
            **pool.params(),
            "PGPOOL_PCP_USER": "pcp",
            "PGPOOL_PCP_PASSWORD": "pcp-pw",
        }
        argv = [
            pgpoolsync_exe(),
            "--log-level",
            "WARNING",
            "run",
            "--config-dir",
            str(pool.config_dir),
            "--pool-key-file",
            str(pool.key_file),
            "--kubeconfig",
            str(api.write_kubeconfig(work / "kc")),
            "--namespace",
            "default",
            "--secret-selector",
            "app=scale",
            "--listen",
            f"127.0.0.1:{port}",
            "--primary-host",
            "127.0.0.1",
            "--primary-port",
            str(cluster.primary.port),
        ]
        work.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.perf_counter() - t0 > 120:
                raise TimeoutError("no first apply")
            time.sleep(0.01)
        first_apply = time.perf_counter() - t0
        pool.start()
        while _value(_metrics(port), 'pgpoolsync_reloads_total{result="success"}') < 1:
            time.sleep(0.05)
        before = _metrics(port)
        count0 = _value(before, "pgpoolsync_change_to_reload_seconds_count")
        sum0 = _value(before, "pgpoolsync_change_to_reload_seconds_sum")
        per_change: list[float] = []
        for c in range(changes):
            put_credential(
                api, "user-00000", user="user00000", password=f"rotated-{c}", app="scale"
            )
            deadline = time.perf_counter() + 30
            while True:
                text = _metrics(port)
                count = _value(text, "pgpoolsync_change_to_reload_seconds_count")
                if count > count0:
                    total = _value(text, "pgpoolsync_change_to_reload_seconds_sum")
                    per_change.append((total - sum0) / (count - count0))
                    count0, sum0 = count, total
                    break
                if time.perf_counter() > deadline:
                    raise TimeoutError("change not reloaded")
                time.sleep(0.01)
        rss = _peak_rss_mib(proc.pid)
        return {
            "secrets": n,
            "first_apply_seconds": first_apply,
            "change_to_reload_seconds": summary(per_change),
            "peak_rss_mib": rss,
        }
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
        pool.stop()
        api.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", default="100,1000,10000")
    ap.add_argument("--changes", type=int, default=20)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="pgpoolsync-bench-scale-"))
    base.chmod(0o755)
    cluster = PgCluster(base / "pg")
    rows = []
    try:
        cluster.start()
        for n in (int(x) for x in args.sizes.split(",")):
            rows.append(one_size(n, args.changes, cluster, base))
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)
    print(
        f"{'secrets':>8}{'first apply s':>15}{'change→reload p50 ms':>22}{'p95 ms':>9}"
        f"{'peak RSS MiB':>14}"
    )
    for r in rows:
        c = r["change_to_reload_seconds"]
        print(
            f"{r['secrets']:8d}{r['first_apply_seconds']:15.2f}{c['p50'] * 1e3:22.1f}"
            f"{c['p95'] * 1e3:9.1f}{r['peak_rss_mib']:14.1f}"
        )
    print("targets at 10,000: first apply <= 2 s, change -> reload <= 100 ms, RSS <= 120 MiB")
    print("wrote", write("scale", {"sizes": rows}))


if __name__ == "__main__":
    main()
