"""`pgpoolsync exporter` against real pgpool 4.3 + PostgreSQL primary/replica."""

from __future__ import annotations

import os
import re
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from devcluster import PgCluster, Pgpool, free_port, pgpool_version, pgpoolsync_exe
from devcluster.ports import wait_until
from tests.pgpool_helpers import render_cli, write_secret

pytestmark = pytest.mark.real

# pgpool2_exporter's own names that break Prometheus naming conventions; kept for dashboards.
PGPOOL2_EXPORTER_NAMES = {
    "pgpool2_frontend_total",
    "pgpool2_backend_total",
    "pgpool2_backend_by_process_total",
    *(
        f"pgpool2_pool_health_check_stats_{c}"
        for c in (
            "total_count",
            "success_count",
            "fail_count",
            "skip_count",
            "retry_count",
            "average_retry_count",
            "max_retry_count",
        )
    ),
    # counters, as pgpool2_exporter types them, under its names without _total
    "pgpool2_pool_nodes_select_cnt",
    *(
        f"pgpool2_pool_backend_stats_{c}_cnt"
        for c in ("select", "insert", "update", "delete", "ddl", "other", "panic", "fatal", "error")
    ),
}


@pytest.fixture(scope="module")
def pool(cluster: PgCluster, pg_base: Path) -> Iterator[Pgpool]:
    base = pg_base / "exporter"
    cluster.set_role("monitor", "mon:pw", encryption="scram-sha-256")
    write_secret(base / "secrets", "monitor", "monitor", "mon:pw")
    p = Pgpool(base, base / "config", key_file=base / "config" / ".pgpoolkey")
    result = render_cli(p, cluster, secrets=base / "secrets")
    assert result.returncode == 0, result.stderr
    yield p
    p.stop()


def _start_exporter(
    pool: Pgpool, pg_base: Path, *, options: str
) -> tuple[subprocess.Popen[bytes], str]:
    """``pgpoolsync exporter`` as the image runs it (the console script), and its /metrics URL."""
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DATA_SOURCE_USER": "monitor",
        "DATA_SOURCE_PASS": "mon:pw",
        "DATA_SOURCE_URI": f"127.0.0.1:{pool.port}/postgres?{options}",
    }
    log = (pg_base / "exporter" / "exporter.log").open("ab")
    proc = subprocess.Popen(
        [
            pgpoolsync_exe(),
            "exporter",
            "--listen",
            f"127.0.0.1:{port}",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/metrics"
    wait_until(lambda: _ok(url), what="exporter port open")
    return proc, url


@pytest.fixture(scope="module")
def exporter_url(pool: Pgpool, pg_base: Path) -> Iterator[str]:
    proc, url = _start_exporter(pool, pg_base, options="sslmode=disable")
    yield url
    proc.terminate()
    proc.wait(10)


def _ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as r:
        return str(r.read().decode())


def _sample(text: str, prefix: str) -> float:
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{prefix} not in scrape")


def test_port_is_open_before_pgpool_answers_and_up_follows_pgpool(
    pool: Pgpool, exporter_url: str
) -> None:
    assert not pool.running()
    assert _sample(_scrape(exporter_url), "pgpool2_up ") == 0.0
    pool.start()
    wait_until(lambda: _sample(_scrape(exporter_url), "pgpool2_up ") == 1.0, what="up 1")
    pool.stop()
    assert _sample(_scrape(exporter_url), "pgpool2_up ") == 0.0
    pool.start()  # the same exporter process reconnects
    wait_until(lambda: _sample(_scrape(exporter_url), "pgpool2_up ") == 1.0, what="up 1 again")


def test_the_exporter_speaks_tls_to_pgpool_through_libpq_without_python_s_ssl(
    pool: Pgpool, pg_base: Path
) -> None:
    if not pool.running():
        pool.start()
    """The console script keeps Python's ssl out of the exporter (pgpoolsync.main); libpq's
    own OpenSSL is what sslmode=require needs (it refuses a connection without TLS)."""
    proc, url = _start_exporter(pool, pg_base, options="sslmode=require")
    try:
        wait_until(lambda: _sample(_scrape(url), "pgpool2_up ") == 1.0, what="up over TLS")
    finally:
        proc.terminate()
        proc.wait(10)


def test_values_match_show_pool_nodes(pool: Pgpool, exporter_url: str, cluster: PgCluster) -> None:
    if not pool.running():
        pool.start()
    with pool.connect("monitor", "mon:pw") as conn:
        for _ in range(3):
            conn.execute("SELECT 1")
        text = _scrape(exporter_url)
        cur = conn.execute("SHOW pool_nodes")
        cols = [d.name for d in cur.description or []]
        rows = [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
    for row in rows:
        labels = (
            f'hostname="{row["hostname"]}",node_id="{row["node_id"]}",'
            f'port="{row["port"]}",role="{row["role"]}"'
        )
        assert _sample(text, f"pgpool2_pool_nodes_status{{{labels}}}") == (
            1.0 if row["status"] in ("up", "waiting") else 0.0
        )
        # select_cnt may only grow between our scrape and the SHOW that followed it
        assert _sample(text, f"pgpool2_pool_nodes_select_cnt{{{labels}}}") <= float(
            row["select_cnt"]
        )
        assert _sample(text, f"pgpool2_pool_nodes_lb_weight{{{labels}}}") == float(row["lb_weight"])
    assert [r["role"] for r in rows] == ["primary", "standby"]
    assert _sample(text, "pgpool2_frontend_total ") == 4.0  # num_init_children in the tests
    # one pool_pools row per child x pool slot x backend: 4 x 2 x 2
    assert _sample(text, "pgpool2_backend_total ") == 16.0
    assert f'pgpool2_version_info{{version="{pgpool_version()}"}} 1.0' in text
    assert _sample(text, "pgpool2_last_scrape_error ") == 0.0


def test_promtool_accepts_a_real_scrape(pool: Pgpool, exporter_url: str) -> None:
    if not pool.running():
        pool.start()
    text = _scrape(exporter_url)
    assert "# TYPE pgpool2_pool_backend_stats_select_cnt counter\n" in text
    assert "# TYPE pgpool2_pool_nodes_select_cnt counter\n" in text
    result = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    # Exit 3 = naming lints only (a parse error exits 1). The only lints allowed are on the
    # names pgpool2_exporter has always used, which dashboards depend on.
    assert result.returncode in (0, 3), result.stdout + result.stderr
    lint = re.compile(
        r'^(\S+) (non-counter metrics should not have "_total" suffix|'
        r'counter metrics should have "_total" suffix|'
        r'non-histogram and non-summary metrics should not have "_count" suffix)$'
    )
    for line in (result.stdout + result.stderr).splitlines():
        m = lint.match(line)
        assert m is not None, f"promtool: {line}"
        assert m.group(1) in PGPOOL2_EXPORTER_NAMES, f"promtool: {line}"


DASHBOARD = Path(__file__).resolve().parents[2] / "manifests" / "base" / "grafana-dashboard.json"


def dashboard_metrics(prefix: str) -> set[str]:
    """Metric names the dashboard's queries use (histogram series mapped to their family)."""
    import json

    names: set[str] = set()
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel["targets"]:
            names |= set(re.findall(rf"\b({prefix}[a-z0-9_]+)", target["expr"]))
    return names


def test_every_dashboard_query_uses_a_metric_the_exporter_emits(
    pool: Pgpool, exporter_url: str
) -> None:
    if not pool.running():
        pool.start()
    text = _scrape(exporter_url)
    emitted = {ln.split("{")[0].split(" ")[0] for ln in text.splitlines() if ln and ln[0] != "#"}
    used = dashboard_metrics("pgpool2_")
    assert used and used <= emitted, used - emitted


# Every family pgpool2_exporter v1.2.2 emits (its metricMaps and the families it builds by hand,
# read in pgpool/pgpool2_exporter's pgpool2_exporter.go), by sample name.
PGPOOL2_EXPORTER_FAMILIES = (
    "pgpool2_up",
    "pgpool2_scrapes_total",
    "pgpool2_last_scrape_error",
    "pgpool2_last_scrape_duration_seconds",
    *(f"pgpool2_pool_nodes_{c}" for c in ("status", "select_cnt", "replication_delay")),
    *(
        f"pgpool2_pool_backend_stats_{c}"
        for c in (
            "status",
            "select_cnt",
            "insert_cnt",
            "update_cnt",
            "delete_cnt",
            "ddl_cnt",
            "other_cnt",
            "panic_cnt",
            "fatal_cnt",
            "error_cnt",
        )
    ),
    *(
        f"pgpool2_pool_health_check_stats_{c}"
        for c in (
            "status",
            "total_count",
            "success_count",
            "fail_count",
            "skip_count",
            "retry_count",
            "average_retry_count",
            "max_retry_count",
            "max_duration",
            "min_duration",
            "average_duration",
        )
    ),
    "pgpool2_frontend_total",
    "pgpool2_frontend_used",
    "pgpool2_frontend_used_ratio",
    "pgpool2_backend_total",
    "pgpool2_backend_used",
    "pgpool2_backend_used_ratio",
    "pgpool2_backend_by_process_total",
    "pgpool2_backend_by_process_used",
    "pgpool2_backend_by_process_used_ratio",
    *(
        f"pgpool2_pool_cache_{c}"
        for c in (
            "num_cache_hits",
            "num_selects",
            "cache_hit_ratio",
            "num_hash_entries",
            "used_hash_entries",
            "num_cache_entries",
            "used_cache_entries_size",
            "free_cache_entries_size",
            "fragment_cache_entries_size",
        )
    ),
)


def test_every_family_pgpool2_exporter_emits_is_here_with_samples(
    pool: Pgpool, exporter_url: str
) -> None:
    if not pool.running():
        pool.start()
    wait_until(lambda: _sample(_scrape(exporter_url), "pgpool2_up ") == 1.0, what="up")
    text = _scrape(exporter_url)
    names = {
        line.split("{", 1)[0].split(" ", 1)[0]
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    missing = [f for f in PGPOOL2_EXPORTER_FAMILIES if f not in names]
    assert not missing, missing
    assert len(PGPOOL2_EXPORTER_FAMILIES) == 46
    # The exporter's own session holds a slot: its child's by-process series carry its labels.
    used = [ln for ln in text.splitlines() if ln.startswith("pgpool2_backend_by_process_used{")]
    assert any('username="monitor"' in ln and 'database="postgres"' in ln for ln in used), used
    pid = used[0].split('pool_pid="', 1)[1].split('"', 1)[0]
    assert _sample(text, f'pgpool2_backend_by_process_total{{pool_pid="{pid}"}}') == 4.0  # 2x2
