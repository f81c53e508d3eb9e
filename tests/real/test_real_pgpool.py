"""`pgpoolsync render` output accepted by real pgpool 4.3 in front of PostgreSQL 15.

Primary + streaming replica and pgpool run on loopback ports; users log in through pgpool with
SCRAM- and md5-stored passwords, including awkward ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from devcluster import PgCluster, Pgpool
from tests.pgpool_helpers import render_cli, write_secret

pytestmark = pytest.mark.real

# (role, password, how PostgreSQL stores it)
USERS = [
    ("scram_colon", "a:b:c", "scram-sha-256"),
    ("scram_backslash", "back\\slash\\", "scram-sha-256"),
    ("scram_quotes", 'it\'s "quoted"', "scram-sha-256"),
    ("scram_spaces", "  spaced out  ", "scram-sha-256"),
    ("scram_unicode", "пароль-パスワード-ü", "scram-sha-256"),
    ("scram_one", "x", "scram-sha-256"),
    ("scram_79", "s" * 40 + ":\\" + "y" * 37, "scram-sha-256"),
    ("md5_colon", "m:d:5", "md5"),
    ("md5_backslash_quote", "m\\'5", "md5"),
    ("md5_unicode", "ünïcödé", "md5"),
    ("md5_79", "m" * 79, "md5"),
]


@pytest.fixture(scope="module")
def users(cluster: PgCluster) -> list[tuple[str, str, str]]:
    for user, password, enc in USERS:
        cluster.set_role(user, password, encryption=enc)
    cluster.set_role("env_user", "from-env:pw", encryption="scram-sha-256")
    return USERS


def _start(pool: Pgpool) -> None:
    pool.start()


@pytest.fixture(scope="module")
def pgpool(
    cluster: PgCluster, users: list[tuple[str, str, str]], pg_base: Path
) -> Iterator[Pgpool]:
    base = pg_base / "render-aes"
    secrets = base / "secrets"
    for i, (user, password, _) in enumerate(users):
        write_secret(secrets, f"s{i}", user, password, user_key="user" if i % 2 else "username")
    pool = Pgpool(base, base / "config", key_file=base / "config" / ".pgpoolkey")
    # Weight 0 on the primary sends every read to the replica, so the test sees where reads go.
    env = {
        "ENV_USERNAME": "env_user",
        "ENV_PASSWORD": "from-env:pw",
        "PGPOOL_PARAMS_BACKEND_WEIGHT0": "0",
    }
    result = render_cli(pool, cluster, secrets=secrets, env=env)
    assert result.returncode == 0, result.stderr
    _start(pool)
    yield pool
    pool.stop()


@pytest.mark.parametrize(("user", "password", "stored"), USERS)
def test_user_logs_in_through_pgpool_with_the_right_password(
    pgpool: Pgpool, user: str, password: str, stored: str
) -> None:
    with pgpool.connect(user, password) as conn:
        row = conn.execute("SELECT current_user").fetchone()
    assert row == (user,)


def test_user_from_env_pair_logs_in(pgpool: Pgpool) -> None:
    with pgpool.connect("env_user", "from-env:pw") as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("env_user",)


@pytest.mark.parametrize("user", ["scram_colon", "md5_colon"])
def test_a_wrong_password_is_refused(pgpool: Pgpool, user: str) -> None:
    with pytest.raises(psycopg.OperationalError, match="authentication failed"):
        pgpool.connect(user, "wrong-password").close()


def test_an_unknown_user_is_refused(pgpool: Pgpool) -> None:
    with pytest.raises(psycopg.OperationalError):
        pgpool.connect("nobody", "x").close()


def test_pool_nodes_lists_primary_then_standby(pgpool: Pgpool, cluster: PgCluster) -> None:
    with pgpool.connect("scram_one", "x") as conn:
        cur = conn.execute("SHOW pool_nodes")
        cols = [d.name for d in cur.description or []]
        rows = [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
    assert [(r["node_id"], r["port"], r["role"], r["status"]) for r in rows] == [
        ("0", str(cluster.primary.port), "primary", "up"),
        ("1", str(cluster.replica.port), "standby", "up"),
    ]


def test_reads_reach_the_replica_and_writes_the_primary(pgpool: Pgpool, cluster: PgCluster) -> None:
    with pgpool.connect("md5_colon", "m:d:5") as conn:
        assert conn.execute("SELECT inet_server_port()").fetchone() == (cluster.replica.port,)
        # Volatile functions (pg_is_in_recovery, current_setting) go to node 0 by design.
        cur = conn.execute("SHOW pool_nodes")
        cols = [d.name for d in cur.description or []]
        lb = [dict(zip(cols, r, strict=True))["load_balance_node"] for r in cur.fetchall()]
        assert lb == ["false", "true"]
        conn.execute("CREATE TEMP TABLE t (x int)")
        conn.execute("INSERT INTO t VALUES (1)")  # would fail on the read-only replica


def test_md5_entries_fail_against_a_scram_backend_which_is_why_aes_is_the_default(
    cluster: PgCluster, users: list[tuple[str, str, str]], pg_base: Path
) -> None:
    base = pg_base / "render-md5"
    secrets = base / "secrets"
    write_secret(secrets, "scram", "scram_colon", "a:b:c")
    write_secret(secrets, "md5", "md5_colon", "m:d:5")
    pool = Pgpool(base, base / "config", key_file=base / "config" / ".pgpoolkey")
    result = render_cli(
        pool, cluster, secrets=secrets, extra=["--password-format", "md5", "--auth-method", "md5"]
    )
    assert result.returncode == 0, result.stderr
    assert "scram_colon:md5" in (base / "config" / "pool_passwd").read_text()
    pool.start()
    try:
        with pool.connect("md5_colon", "m:d:5") as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("md5_colon",)
        with pytest.raises(psycopg.OperationalError):
            pool.connect("scram_colon", "a:b:c").close()
    finally:
        pool.stop()
    assert "valid password not found" in pool.log_tail(200)
