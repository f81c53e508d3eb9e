"""Exporter scrape cost over the floor: the bare SHOW queries on one connection.

Real PostgreSQL primary + replica and pgpool with 32 children. Each round times one full
exporter scrape (queries + parsing + text exposition) and the same six SHOWs fetched on one
connection. Prints a table and writes bench/results/scrape.json. Target: ratio <= 1.3.

    python -m bench.scrape [--rounds 300]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import psycopg

from bench.common import summary, write
from devcluster import PgCluster, Pgpool
from pgpoolsync.cli import main as cli_main
from pgpoolsync.exporter.scrape import QUERIES, Scraper
from pgpoolsync.report.metrics import exposition


def run(rounds: int) -> dict[str, object]:
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
        return {
            "rounds": rounds,
            "children": 32,
            "scrape_seconds": s,
            "floor_seconds": f,
            "ratio_p50": s["p50"] / f["p50"],
            "ratio_mean": s["mean"] / f["mean"],
            "scrape_bytes": len(text),
            "target_ratio": 1.3,
        }
    finally:
        pool.stop()
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=300)
    args = ap.parse_args()
    r = run(args.rounds)
    s, f = r["scrape_seconds"], r["floor_seconds"]
    assert isinstance(s, dict) and isinstance(f, dict)
    print(f"{'':24}{'p50 ms':>10}{'p95 ms':>10}{'mean ms':>10}")
    for label, d in (("exporter scrape", s), ("bare SHOWs (floor)", f)):
        print(f"{label:24}{d['p50'] * 1e3:10.2f}{d['p95'] * 1e3:10.2f}{d['mean'] * 1e3:10.2f}")
    print(f"ratio (p50) {r['ratio_p50']:.2f}x  (mean) {r['ratio_mean']:.2f}x  target <= 1.3x")
    print("wrote", write("scrape", r))


if __name__ == "__main__":
    main()
