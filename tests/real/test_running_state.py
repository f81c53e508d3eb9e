"""What pgpool really runs with, against real pgpool: a reload lost to a sidecar crash is made
up on the next start, and restart-required follows pgpool, not a file.

Each test has its own pgpool and `run` processes; the sidecar is stopped and started again as a
container restart would (same files, same pgpool)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from devcluster import PgCluster, Pgpool, can_login
from devcluster.ports import wait_until
from devcluster.runprocess import RunProcess
from tests.pgpool_helpers import render_cli, write_secret

pytestmark = pytest.mark.real


@pytest.fixture
def setup(
    cluster: PgCluster, pg_base: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[Pgpool, Path, list[RunProcess]]]:
    base = pg_base / f"rs-{request.node.name[5:17]}"  # socket paths stay under 107 bytes
    secrets = base / "secrets"
    pool = Pgpool(base, base / "config", key_file=base / "config" / ".pgpoolkey")
    runs: list[RunProcess] = []
    yield pool, secrets, runs
    for r in runs:
        r.stop()
    pool.stop()


def _run(
    pool: Pgpool,
    cluster: PgCluster,
    secrets: Path,
    runs: list[RunProcess],
    env: Mapping[str, str] | None = None,
) -> RunProcess:
    run = RunProcess(
        pool,
        cluster,
        args=["--secrets-dir", str(secrets), "--tls", "off"],
        env=env,
        log=secrets.parent / f"run{len(runs)}.log",
    )
    runs.append(run)
    return run.start()


def _first_run(
    pool: Pgpool, cluster: PgCluster, secrets: Path, runs: list[RunProcess], user: str, pw: str
) -> RunProcess:
    """A role and its Secret, `run` started, then pgpool on its files, first reload done."""
    cluster.set_role(user, pw)
    write_secret(secrets, user, user, pw)
    run = _run(pool, cluster, secrets, runs)
    pool.start()
    run.wait_first_reload()
    return run


def test_a_sidecar_killed_between_write_and_reload_reloads_when_it_starts_again(
    setup: tuple[Pgpool, Path, list[RunProcess]], cluster: PgCluster
) -> None:
    pool, secrets, runs = setup
    first = _first_run(pool, cluster, secrets, runs, "lost_alice", "alice-1")
    # Every child (num_init_children = 4) opens pool_passwd when it starts: hold one session on
    # each, so that all of them have opened the old file before it is replaced.
    sessions = [pool.connect("lost_alice", "alice-1") for _ in range(4)]
    for s in sessions:
        s.close()
    first.stop()

    # The rotation is written exactly as `run` writes it, and then the sidecar "dies": no reload.
    cluster.set_role("lost_alice", "alice-2")
    write_secret(secrets, "lost_alice", "lost_alice", "alice-2")
    pcp = {"PGPOOL_PCP_USER": "pcpadmin", "PGPOOL_PCP_PASSWORD": "pcp:secret"}  # as RunProcess
    rendered = render_cli(pool, cluster, secrets=secrets, extra=["--tls", "off"], env=pcp)
    assert rendered.returncode == 0, rendered.stderr
    assert not can_login(pool, "lost_alice", "alice-2")  # pgpool still has the old pool_passwd

    again = _run(pool, cluster, secrets, runs)
    wait_until(lambda: can_login(pool, "lost_alice", "alice-2"), what="new password served")
    assert again.metric("pgpoolsync_applies_total", 'result="unchanged"') >= 1  # nothing to write


def test_restart_required_follows_what_pgpool_runs_with_across_sidecar_and_pgpool_restarts(
    setup: tuple[Pgpool, Path, list[RunProcess]], cluster: PgCluster
) -> None:
    pool, secrets, runs = setup
    first = _first_run(pool, cluster, secrets, runs, "rr_bob", "bob-1")
    assert first.metric("pgpoolsync_restart_required") == 0
    first.stop()

    # A start-only parameter changes (the sidecar restarts with new env): written, not in effect.
    more = {"PGPOOL_PARAMS_NUM_INIT_CHILDREN": "5"}
    second = _run(pool, cluster, secrets, runs, env=more)
    wait_until(lambda: second.metric("pgpoolsync_restart_required") == 1, what="restart required")
    assert "num_init_children" in second.log_text()
    second.stop()

    # (a) the sidecar restarts again, pgpool unchanged: still required (the file says 5 now).
    third = _run(pool, cluster, secrets, runs, env=more)
    third.wait_first_reload()
    wait_until(lambda: third.metric("pgpoolsync_restart_required") == 1, what="still required")

    # (b) pgpool restarts on the new files: no longer required, with no file changed.
    pool.stop()
    pool.start()
    wait_until(lambda: third.metric("pgpoolsync_restart_required") == 0, timeout=30, what="cleared")
    assert can_login(pool, "rr_bob", "bob-1")


def test_a_reloadable_value_pgpool_refuses_is_reported_unapplied_not_restart_required(
    setup: tuple[Pgpool, Path, list[RunProcess]], cluster: PgCluster
) -> None:
    pool, secrets, runs = setup
    first = _first_run(pool, cluster, secrets, runs, "rr_carol", "carol-1")
    first.stop()

    # (c) recovery_timeout is reloadable; pgpool refuses -5 ("invalid value") and keeps 90.
    bad = _run(pool, cluster, secrets, runs, env={"PGPOOL_PARAMS_RECOVERY_TIMEOUT": "-5"})
    wait_until(lambda: bad.metric("pgpoolsync_unapplied_params") == 1, what="unapplied")
    assert bad.metric("pgpoolsync_restart_required") == 0
    assert "does not run with: recovery_timeout" in bad.log_text()
    assert can_login(pool, "rr_carol", "carol-1")  # pgpool keeps serving
    bad.stop()

    fixed = _run(pool, cluster, secrets, runs, env={"PGPOOL_PARAMS_RECOVERY_TIMEOUT": "30"})
    wait_until(lambda: fixed.metric("pgpoolsync_reloads_total", 'result="success"') >= 1)
    wait_until(lambda: fixed.metric("pgpoolsync_unapplied_params") == 0, what="applied")
    assert fixed.metric("pgpoolsync_restart_required") == 0
