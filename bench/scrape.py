"""Exporter scrape cost over the floor: the bare SHOW queries on one connection.

Real PostgreSQL primary + replica and pgpool with 32 children. Each round times one full
exporter scrape (queries + parsing + text exposition) and the same six SHOWs fetched on one
connection. Then the memory of the process itself: ``pgpoolsync exporter`` started as the
image starts it, scraped over HTTP 20 times, its resident set read from /proc (target
<= 36 MiB; pgpool2_exporter takes about 15). Prints a table and writes
bench/results/scrape.json. Target: ratio <= 1.3.

    python -m bench.scrape [--rounds 300] [--rss-scrapes 20]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import psycopg

from bench.common import summary, write
from devcluster import PgCluster, Pgpool, free_port, pgpoolsync_exe
from pgpoolsync.cli import main as cli_main
from pgpoolsync.exporter.exposition import exposition
from pgpoolsync.exporter.families import QUERIES
from pgpoolsync.exporter.scrape import Scraper


def _kib(status: str, field: str) -> int:
    for line in status.splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise ValueError(f"{field} not in /proc status")


def exporter_rss(*, port: int, password: str, scrapes: int) -> dict[str, object]:
    """RSS of a ``pgpoolsync exporter`` process after ``scrapes`` scrapes of pgpool."""
    listen = free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DATA_SOURCE_URI": f"127.0.0.1:{port}/postgres?sslmode=disable",
        "DATA_SOURCE_USER": "monitor",
        "DATA_SOURCE_PASS": password,
        **({"PGGSSENCMODE": os.environ["XG"]} if "XG" in os.environ else {}),
    }
    proc = subprocess.Popen(
        [pgpoolsync_exe(), "exporter", "--listen", f"127.0.0.1:{listen}"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:  # /healthz: the port is open, nothing scraped yet
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{listen}/healthz", timeout=5) as r:
                    r.read()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.05)
        status = Path(f"/proc/{proc.pid}/status")
        rss: list[float] = [_kib(status.read_text(), "VmRSS") / 1024]
        for _ in range(scrapes):
            with urllib.request.urlopen(f"http://127.0.0.1:{listen}/metrics", timeout=10) as r:
                text = r.read().decode()
            if "\npgpool2_up 1.0\n" not in text:
                raise RuntimeError("the exporter did not reach pgpool")
            rss.append(_kib(status.read_text(), "VmRSS") / 1024)
        final = status.read_text()
        return {
            "scrapes": scrapes,
            "rss_mib_before_a_scrape": rss[0],
            "rss_mib_after_one": rss[1],
            "rss_mib_by_scrape": rss,
            "rss_mib": _kib(final, "VmRSS") / 1024,
            "peak_rss_mib": _kib(final, "VmHWM") / 1024,
            "target_rss_mib": 36,
        }
    finally:
        proc.terminate()
        proc.wait(10)


def run(rounds: int, rss_scrapes: int = 20) -> dict[str, object]:
    base = Path(tempfile.mkdtemp(prefix="pgpoolsync-bench-scrape-"))
    base.chmod(0o755)
    cluster = PgCluster(base / "pg")
    pool = Pgpool(base, base / "config", key_file=base / "config" / ".pgpoolkey")
    try:
        cluster.start()
        cluster.set_role("monitor", "mon-pw")
        (base / "s" / "m").mkdir(parents=True)
        (base / "s" / "m" / "username").write_text("monitor")
        (base / "s" / "m" / "password").write_text("mon-pw")
        env = {**pool.params(), "PGPOOL_PARAMS_NUM_INIT_CHILDREN": "32"}
        assert (
            cli_main(
                [
                    "render",
                    "--config-dir",
                    str(pool.config_dir),
                    "--secrets-dir",
                    str(base / "s"),
                    "--pool-key-file",
                    str(pool.key_file),
                    *cluster.backend_args(),
                ],
                env,
            )
            == 0
        )
        pool.start()
        conninfo = f"host=127.0.0.1 port={pool.port} user=monitor dbname=postgres"
        scraper = Scraper(conninfo=conninfo, password="mon-pw")
        bare = psycopg.connect(
            conninfo, password="mon-pw", autocommit=True, cursor_factory=psycopg.ClientCursor
        )
        for _ in range(10):  # warm both paths
            exposition(scraper.scrape())
            for what, _ in QUERIES:
                bare.execute(f"SHOW {what}").fetchall()
        scrape_s, floor_s = [], []
        for _ in range(rounds):
            t0 = time.perf_counter()
            text = exposition(scraper.scrape())
            scrape_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            bare.execute("SHOW POOL_VERSION").fetchall()
            for what, _ in QUERIES:
                cur = bare.execute(f"SHOW {what}")
                cur.fetchall()
                while cur.nextset():
                    cur.fetchall()
            floor_s.append(time.perf_counter() - t0)
        bare.close()
        s, f = summary(scrape_s), summary(floor_s)
        rss = exporter_rss(port=pool.port, password="mon-pw", scrapes=rss_scrapes)
        return {
            "rounds": rounds,
            "children": 32,
            "scrape_seconds": s,
            "floor_seconds": f,
            "ratio_p50": s["p50"] / f["p50"],
            "ratio_mean": s["mean"] / f["mean"],
            "scrape_bytes": len(text),
            "target_ratio": 1.3,
            "exporter_process": rss,
        }
    finally:
        pool.stop()
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=300)
    ap.add_argument("--rss-scrapes", type=int, default=20)
    args = ap.parse_args()
    r = run(args.rounds, args.rss_scrapes)
    s, f = r["scrape_seconds"], r["floor_seconds"]
    assert isinstance(s, dict) and isinstance(f, dict)
    print(f"{'':24}{'p50 ms':>10}{'p95 ms':>10}{'mean ms':>10}")
    for label, d in (("exporter scrape", s), ("bare SHOWs (floor)", f)):
        print(f"{label:24}{d['p50'] * 1e3:10.2f}{d['p95'] * 1e3:10.2f}{d['mean'] * 1e3:10.2f}")
    print(f"ratio (p50) {r['ratio_p50']:.2f}x  (mean) {r['ratio_mean']:.2f}x  target <= 1.3x")
    rss = r["exporter_process"]
    assert isinstance(rss, dict)
    print(
        f"pgpoolsync exporter RSS: {rss['rss_mib_before_a_scrape']:.1f} MiB before a scrape, "
        f"{rss['rss_mib_after_one']:.1f} after one, {rss['rss_mib']:.1f} after {rss['scrapes']} "
        f"(peak {rss['peak_rss_mib']:.1f}); target <= {rss['target_rss_mib']} MiB"
    )
    print("wrote", write("scrape", r))


if __name__ == "__main__":
    main()
