"""`pgpoolsync run --secrets-dir` with real PostgreSQL + pgpool: no restart, no dropped session."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from devcluster import PgCluster, Pgpool, can_login
from devcluster.ports import wait_until
from devcluster.runprocess import RunProcess
from tests.pgpool_helpers import kubelet_write

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def live(cluster: PgCluster, pg_base: Path) -> Iterator[tuple[Pgpool, RunProcess, Path]]:
    base = pg_base / "run-dir"
    secrets = base / "secrets"
    secrets.mkdir(parents=True)
    cluster.set_role("dir_alice", "alice-1", encryption="scram-sha-256")
    cluster.set_role("dir_bob", "bob:1", encryption="md5")
    kubelet_write(secrets, "alice", {"username": "dir_alice", "password": "alice-1"}, stamp="a1")
    kubelet_write(secrets, "bob", {"username": "dir_bob", "password": "bob:1"}, stamp="b1")
    pool = Pgpool(base, base / "config", key_file=base / "config" / ".pgpoolkey")
    run = RunProcess(pool, cluster, args=["--secrets-dir", str(secrets)], log=base / "run.log")
    run.start()  # files exist before pgpool starts (init-container order)
    pool.start()
    run.wait_first_reload()
    yield pool, run, secrets
    run.stop()
    pool.stop()


def test_rotated_password_is_accepted_after_reload_and_old_one_refused(
    live: tuple[Pgpool, RunProcess, Path], cluster: PgCluster
) -> None:
    pool, run, secrets = live
    pgpool_pid = pool.proc.pid if pool.proc else None
    assert can_login(pool, "dir_alice", "alice-1")
    session = pool.connect("dir_alice", "alice-1")  # open across the rotation
    cluster.set_role("dir_alice", "alice-2:new", encryption="scram-sha-256")
    kubelet_write(
        secrets, "alice", {"username": "dir_alice", "password": "alice-2:new"}, stamp="a2"
    )
    wait_until(lambda: can_login(pool, "dir_alice", "alice-2:new"), what="new password")
    assert not can_login(pool, "dir_alice", "alice-1")
    assert session.execute("SELECT 42").fetchone() == (42,)  # no session dropped
    session.close()
    assert pool.running() and pool.proc is not None and pool.proc.pid == pgpool_pid
    assert "passwords changed: dir_alice" in run.log_text()
    assert "alice-2:new" not in run.log_text()


def test_a_new_secret_adds_a_user(
    live: tuple[Pgpool, RunProcess, Path], cluster: PgCluster
) -> None:
    pool, _run, secrets = live
    cluster.set_role("dir_carol", "carol pw", encryption="scram-sha-256")
    assert not can_login(pool, "dir_carol", "carol pw")
    kubelet_write(secrets, "carol", {"user": "dir_carol", "password": "carol pw"}, stamp="c1")
    wait_until(lambda: can_login(pool, "dir_carol", "carol pw"), what="new user")


def test_a_deleted_secret_removes_its_user(live: tuple[Pgpool, RunProcess, Path]) -> None:
    pool, _run, secrets = live
    assert can_login(pool, "dir_bob", "bob:1")
    import shutil

    shutil.rmtree(secrets / "bob")
    wait_until(lambda: not can_login(pool, "dir_bob", "bob:1"), what="user removed")
    assert "dir_bob" not in (pool.config_dir / "pool_passwd").read_text()


def test_an_invalid_secret_is_skipped_and_everyone_else_keeps_working(
    live: tuple[Pgpool, RunProcess, Path], cluster: PgCluster
) -> None:
    pool, run, secrets = live
    before = (pool.config_dir / "pool_passwd").read_text()
    kubelet_write(
        secrets, "broken", {"username": "dir_broken", "password": "line\nbreak"}, stamp="x1"
    )
    wait_until(lambda: run.metric("pgpoolsync_invalid_inputs") >= 1, what="invalid input seen")
    # the counter can be read before the log line reaches the file
    said = "broken: password of user 'dir_broken' contains a newline"
    wait_until(lambda: said in run.log_text(), timeout=5, what="the invalid input logged")
    assert (pool.config_dir / "pool_passwd").read_text() == before
    assert can_login(pool, "dir_alice", "alice-2:new") or can_login(pool, "dir_alice", "alice-1")
    import shutil

    shutil.rmtree(secrets / "broken")
    wait_until(lambda: run.metric("pgpoolsync_invalid_inputs") == 0, what="invalid input gone")


def test_files_are_private_and_the_endpoints_answer(live: tuple[Pgpool, RunProcess, Path]) -> None:
    pool, run, _ = live
    for name in ("pool_passwd", "pcp.conf", ".pgpoolkey"):
        assert stat.S_IMODE((pool.config_dir / name).stat().st_mode) == 0o600
    assert run.get("/healthz")[0] == 200
    assert run.get("/readyz")[0] == 200
    assert run.metric("pgpoolsync_change_to_reload_seconds_count") >= 1
    assert run.metric("pgpoolsync_last_successful_apply_timestamp_seconds") > 1.7e9
    assert run.metric("pgpoolsync_restart_required") == 0


def test_reload_is_retried_until_pgpool_is_back(
    live: tuple[Pgpool, RunProcess, Path], cluster: PgCluster
) -> None:
    pool, run, secrets = live
    errors_before = run.metric("pgpoolsync_reloads_total", 'result="error"')
    pool.stop()
    cluster.set_role("dir_dave", "dave-1", encryption="scram-sha-256")
    kubelet_write(secrets, "dave", {"username": "dir_dave", "password": "dave-1"}, stamp="d1")
    wait_until(
        lambda: run.metric("pgpoolsync_reloads_total", 'result="error"') > errors_before,
        what="a failed reload",
    )
    successes = run.metric("pgpoolsync_reloads_total", 'result="success"')
    pool.start()
    wait_until(
        lambda: run.metric("pgpoolsync_reloads_total", 'result="success"') > successes,
        timeout=40,
        what="reload after pgpool is back",
    )
    assert can_login(pool, "dir_dave", "dave-1")
