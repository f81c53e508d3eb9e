"""How an old pod's pgpool drains in a rollout, on real pgpool: SIGTERM is pgpool's smart
shutdown (it waits for every client), so what holds a connection decides when it ends. The
exporter must not be what holds it: it closes its connection once idle (--hold-connection-seconds);
an exporter that stays connected (the old behaviour, and pgpool2_exporter's) is shown to hold
pgpool until the grace period."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from devcluster import PgCluster, Pgpool, free_port, pgpoolsync_exe
from devcluster.ports import wait_until
from tests.pgpool_helpers import render_cli, write_secret

pytestmark = pytest.mark.real

GRACE = 6.0  # stands in for terminationGracePeriodSeconds (minus the preStop delay)


@pytest.fixture
def pool(cluster: PgCluster, pg_base: Path, request: pytest.FixtureRequest) -> Iterator[Pgpool]:
    base = pg_base / f"drain-{len(list(pg_base.glob('drain-*')))}"  # socket paths stay short
    cluster.set_role("drain_user", "drain:pw", encryption="scram-sha-256")
    write_secret(base / "secrets", "u", "drain_user", "drain:pw")
    p = Pgpool(base, base / "config", key_file=base / "config" / ".pgpoolkey")
    result = render_cli(p, cluster, secrets=base / "secrets")
    assert result.returncode == 0, result.stderr
    p.start()
    yield p
    if p.proc is not None and p.proc.poll() is None:
        os.killpg(p.proc.pid, signal.SIGKILL)
        p.proc.wait()


def _exits_within(pool: Pgpool, seconds: float) -> bool:
    assert pool.proc is not None
    try:
        pool.proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        return False
    return True


def _kubelet_stop(pool: Pgpool) -> float:
    """SIGTERM, as kubelet sends after the preStop hook; returns when it was sent."""
    assert pool.proc is not None
    pool.proc.send_signal(signal.SIGTERM)
    return time.monotonic()


def test_smart_shutdown_waits_for_an_idle_session_and_exits_when_it_ends(pool: Pgpool) -> None:
    conn = pool.connect("drain_user", "drain:pw")
    assert conn.execute("SELECT 1").fetchone() == (1,)
    _kubelet_stop(pool)
    assert not _exits_within(pool, 2.0)  # waiting for the session
    assert conn.execute("SELECT 2").fetchone() == (2,)  # which still works meanwhile
    conn.close()
    assert _exits_within(pool, 10.0)
    assert "shutting down by signal 15" in pool.log_tail(200)  # SIGTERM: smart shutdown


def test_at_the_grace_period_a_session_still_open_is_cut(pool: Pgpool) -> None:
    conn = pool.connect("drain_user", "drain:pw")
    _kubelet_stop(pool)
    assert not _exits_within(pool, GRACE)
    assert pool.proc is not None
    os.killpg(pool.proc.pid, signal.SIGKILL)  # kubelet at terminationGracePeriodSeconds
    pool.proc.wait()
    with pytest.raises(psycopg.OperationalError):
        conn.execute("SELECT 1")
    conn.close()


def _exporter(pool: Pgpool, log: Path, *hold: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DATA_SOURCE_USER": "drain_user",
        "DATA_SOURCE_PASS": "drain:pw",
        "DATA_SOURCE_URI": f"127.0.0.1:{pool.port}/postgres?sslmode=disable",
    }
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [pgpoolsync_exe(), "exporter", "--listen", f"127.0.0.1:{port}", *hold],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return proc, f"http://127.0.0.1:{port}/metrics"


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as r:
        text: str = r.read().decode()
    return text


def _up(url: str) -> bool:
    try:
        return "pgpool2_up 1.0" in _scrape(url)
    except OSError:
        return False


def test_the_exporter_lets_go_so_pgpool_stops_on_its_own(pool: Pgpool) -> None:
    proc, url = _exporter(pool, pool.base / "exporter.log", "--hold-connection-seconds", "1")
    try:
        wait_until(lambda: _up(url), what="a scrape with pgpool up")
        sent = _kubelet_stop(pool)
        assert _exits_within(pool, GRACE), "pgpool still waiting for a client"
        took = time.monotonic() - sent
        assert proc.poll() is None  # the exporter is still running: it did not have to stop
        assert "pgpool2_up 0.0" in _scrape(url)
        print(f"pgpool exited {took:.1f}s after SIGTERM with the exporter running")
    finally:
        proc.terminate()
        proc.wait(10)


def test_an_exporter_that_stays_connected_holds_pgpool_to_the_grace_period(pool: Pgpool) -> None:
    """The baseline the fix is measured against: a persistent connection, as before."""
    proc, url = _exporter(pool, pool.base / "exporter.log", "--hold-connection-seconds", "86400")
    try:
        wait_until(lambda: _up(url), what="a scrape with pgpool up")
        _kubelet_stop(pool)
        assert not _exits_within(pool, GRACE)
    finally:
        proc.terminate()
        proc.wait(10)
    assert _exits_within(pool, 10.0)  # the exporter gone, pgpool ends on its own
