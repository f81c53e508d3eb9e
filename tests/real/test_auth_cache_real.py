"""CVE-2025-46801 guarded on the real pgpool: a client reusing a cached backend connection is
still asked for, and refused with, a wrong password.

pgpool 4.0 up to 4.3.14, 4.4.11, 4.5.6 and 4.6.0 accepted any password on a cached connection
when pool_hba said `password` and pool_passwd had no entry for the user: exactly
`PGPOOL_ENABLE_POOL_PASSWD=false` (fixed upstream by "Fix incorrect client authentication in some
cases", in 4.3.15, 4.4.12, 4.5.7 and 4.6.1; Debian 12's 4.3.5-1+deb12u1 carries it). One child
(`num_init_children = 1`) makes the second login land on the child that cached the first one's
backend connection; the database is an application database, since pgpool never caches
connections to `postgres` (docs/pgpool-facts.md). The same drill runs in the default mode (AES
pool_passwd entries, scram-sha-256 in pool_hba)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from devcluster import PgCluster, Pgpool
from tests.pgpool_helpers import render_cli, write_secret

pytestmark = pytest.mark.real

DB = "cve_app"
USER = "cve_user"
PASSWORD = "right:pw"
MODES = {
    # PGPOOL_ENABLE_POOL_PASSWD=false: hostssl ... password, no pool_passwd entry; the backend
    # checks the clear-text password the client sent.
    "no pool_passwd": ({"PGPOOL_ENABLE_POOL_PASSWD": "false"}, {"sslmode": "require"}),
    # The default: an AES pool_passwd entry, scram-sha-256 from the client.
    "aes": ({}, {"sslmode": "disable"}),
}


@pytest.fixture(scope="module")
def app_db(cluster: PgCluster) -> Iterator[str]:
    cluster.set_role(USER, PASSWORD, encryption="scram-sha-256")
    with cluster.connect() as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB,)).fetchone():
            conn.execute(f"CREATE DATABASE {DB} OWNER {USER}")
    cluster.wait_replayed()
    yield DB


def _backend_pid(pool: Pgpool, password: str, **kw: Any) -> int:
    with pool.connect(USER, password, dbname=DB, **kw) as conn:
        # Not load-balanced: the primary's connection, the one the child keeps in its pool.
        row = conn.execute("/*NO LOAD BALANCE*/ SELECT pg_backend_pid()").fetchone()
        assert row is not None
        return int(row[0])


@pytest.mark.parametrize("mode", list(MODES))
def test_a_wrong_password_is_refused_on_a_cached_backend_connection(
    cluster: PgCluster, pg_base: Path, app_db: str, mode: str
) -> None:
    env, kw = MODES[mode]
    base = pg_base / f"cve-{mode.replace(' ', '-')}"
    write_secret(base / "secrets", "app", USER, PASSWORD)
    pool = Pgpool(base, base / "config", key_file=base / "config" / ".pgpoolkey")
    result = render_cli(
        pool,
        cluster,
        secrets=base / "secrets",
        env={**env, "PGPOOL_PARAMS_NUM_INIT_CHILDREN": "1"},
    )
    assert result.returncode == 0, result.stderr
    passwd = (pool.config_dir / "pool_passwd").read_text()
    assert (USER in passwd) == (mode == "aes"), passwd
    pool.start()
    try:
        first = _backend_pid(pool, PASSWORD, **kw)
        # The same backend connection again: the child cached it, so the next login takes the
        # cached path (the one the CVE is about).
        assert _backend_pid(pool, PASSWORD, **kw) == first
        with pytest.raises(psycopg.OperationalError) as refused:
            _backend_pid(pool, "wrong-pw", **kw)
        assert "authentication failed" in str(refused.value)
        assert _backend_pid(pool, PASSWORD, **kw) > 0  # the child still serves the right one
    finally:
        pool.stop()
