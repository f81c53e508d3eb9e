"""Drop-in for the pgpool2_on_k8s image on real pgpool: what tests/unit/test_dropin.py renders,
pgpool accepts and serves (a backend given only by its hostname, no pool_passwd over TLS,
verbatim entries, the mounted config volume, render-then-exec, the image's minimal Deployment)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import psycopg
import pytest

from devcluster import PgCluster, Pgpool, pgpoolsync_exe
from pgpoolsync.core import tls
from pgpoolsync.pgpool import pcp
from tests.pgpool_helpers import pgpool2_on_k8s_minimal_env, render_cli, write_secret

pytestmark = pytest.mark.real


def test_pgpool_uses_a_backend_given_only_by_hostname(cluster: PgCluster, pg_base: Path) -> None:
    """Without the defaults pgpool 4.3 starts with backend_port0 = 0: no backend at all."""
    base = pg_base / "dropin"
    write_secret(base / "secrets", "u", "dropin_user", "x")
    pool = Pgpool(base, base / "config", key_file=base / "config" / ".pgpoolkey")
    env = {
        "PGPOOL_PARAMS_BACKEND_HOSTNAME0": "127.0.0.1",
        "PGPOOL_PCP_USER": "pcpadmin",
        "PGPOOL_PCP_PASSWORD": "pcp:pw",
    }
    result = render_cli(pool, None, secrets=base / "secrets", env=env)
    assert result.returncode == 0, result.stderr
    pool.start()
    try:
        with pcp.PcpClient("127.0.0.1", pool.pcp_port) as client:
            client.login("pcpadmin", "pcp:pw")
            assert client.node_count() == 1
            node = client.node_info(0)
            assert (node.host, node.port) == ("127.0.0.1", 5432)
    finally:
        pool.stop()


def test_without_pool_passwd_a_scram_user_logs_in_over_tls_and_plain_is_refused(
    cluster: PgCluster, pg_base: Path
) -> None:
    base = pg_base / "nopw"
    cluster.set_role("nopw_user", "no:pw", encryption="scram-sha-256")
    (base / "secrets").mkdir(parents=True)
    pool = Pgpool(base, base / "config", key_file=base / "config" / ".pgpoolkey")
    result = render_cli(
        pool, cluster, secrets=base / "secrets", env={"PGPOOL_ENABLE_POOL_PASSWD": "false"}
    )
    assert result.returncode == 0, result.stderr
    assert (pool.config_dir / "pool_passwd").read_text().strip() == ""
    pool.start()
    try:
        with pool.connect("nopw_user", "no:pw", sslmode="require") as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("nopw_user",)
        with pytest.raises(psycopg.OperationalError):
            pool.connect("nopw_user", "wrong", sslmode="require").close()
        with pytest.raises(psycopg.OperationalError):
            pool.connect("nopw_user", "no:pw", sslmode="disable").close()
    finally:
        pool.stop()


def test_skip_password_encryption_entries_log_in_through_real_pgpool(
    cluster: PgCluster, pg_base: Path
) -> None:
    import hashlib

    base = pg_base / "verbatim"
    cluster.set_role("vb_md5", "md5:pw", encryption="md5")
    cluster.set_role("vb_text", "text:pw", encryption="scram-sha-256")
    (base / "secrets").mkdir(parents=True)
    pool = Pgpool(base, base / "config", key_file=base / "config" / ".pgpoolkey")
    md5 = "md5" + hashlib.md5(b"md5:pwvb_md5", usedforsecurity=False).hexdigest()
    pcp_digest = hashlib.md5(b"pcp:pw", usedforsecurity=False).hexdigest()
    env = {
        "PGPOOL_SKIP_PASSWORD_ENCRYPTION": "true",
        "PGPOOL_PASSWORD_ENCRYPTION_METHOD": "md5",  # md5 entries: md5 in pool_hba, as the image
        "A_USERNAME": "vb_md5",
        "A_PASSWORD": md5,
        "B_USERNAME": "vb_text",
        "B_PASSWORD": "TEXTtext:pw",
        "PGPOOL_PCP_USER": "pcpadmin",
        "PGPOOL_PCP_PASSWORD": pcp_digest,
    }
    result = render_cli(pool, cluster, secrets=base / "secrets", env=env)
    assert result.returncode == 0, result.stderr
    assert f"vb_md5:{md5}" in (pool.config_dir / "pool_passwd").read_text()
    assert (pool.config_dir / "pcp.conf").read_text().strip().endswith(f"pcpadmin:{pcp_digest}")
    pool.start()
    try:
        for user, password in (("vb_md5", "md5:pw"), ("vb_text", "text:pw")):
            with pool.connect(user, password) as conn:
                assert conn.execute("SELECT current_user").fetchone() == (user,)
        with pcp.PcpClient("127.0.0.1", pool.pcp_port) as client:
            client.login("pcpadmin", "pcp:pw")
            assert client.node_count() == 2
    finally:
        pool.stop()


def test_a_mounted_config_volume_is_used_as_the_image_uses_it(
    cluster: PgCluster, pg_base: Path
) -> None:
    """$PGPOOL_CONF_VOLUME/pgpool.conf replaces PGPOOL_PARAMS_* (a warning names them),
    pool_hba.conf is used, tls/tls.crt + tls.key turn TLS on with that pair."""

    base = pg_base / "volume"
    volume = base / "config-volume"
    (volume / "tls").mkdir(parents=True)
    cluster.set_role("vol_user", "vol:pw", encryption="scram-sha-256")
    write_secret(base / "secrets", "u", "vol_user", "vol:pw")
    pool = Pgpool(base, base / "config", key_file=base / "config" / ".pgpoolkey")
    lines = [
        f"{k[len('PGPOOL_PARAMS_') :].lower()} = '{v}'"
        for k, v in pool.params().items()
        if k.startswith("PGPOOL_PARAMS_") and k != "PGPOOL_PARAMS_NUM_INIT_CHILDREN"
    ]
    (volume / "pgpool.conf").write_text("\n".join([*lines, "num_init_children = 3"]) + "\n")
    (volume / "pool_hba.conf").write_text(
        "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n"
    )
    pair = tls.generate_self_signed(["localhost"])
    (volume / "tls" / "tls.crt").write_bytes(pair.cert_pem)
    (volume / "tls" / "tls.key").write_bytes(pair.key_pem)
    result = render_cli(
        pool,
        cluster,
        secrets=base / "secrets",
        env={"PGPOOL_CONF_VOLUME": str(volume), "PGPOOL_PARAMS_MAX_POOL": "3"},
    )
    assert result.returncode == 0, result.stderr
    assert "PGPOOL_PARAMS_MAX_POOL" in result.stderr and "is used instead" in result.stderr
    conf = (pool.config_dir / "pgpool.conf").read_text()
    assert "num_init_children = '3'" in conf and "max_pool = '3'" not in conf
    assert "ssl = 'on'" in conf
    assert (pool.config_dir / "pool_hba.conf").read_text().count("hostssl") == 1
    pool.start()
    try:
        with pool.connect("vol_user", "vol:pw", sslmode="require") as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("vol_user",)
            assert conn.pgconn.ssl_in_use
        with pytest.raises(psycopg.OperationalError):
            pool.connect("vol_user", "vol:pw", sslmode="disable").close()
        assert (pool.config_dir / "tls.crt").read_bytes() == pair.cert_pem
    finally:
        pool.stop()


def test_render_then_exec_runs_pgpool_in_its_place_and_sigterm_reaches_it(
    cluster: PgCluster, pg_base: Path
) -> None:
    """The drop-in image's entrypoint: `pgpoolsync render ... -- pgpool -n ...`: pgpool has
    pgpoolsync's PID (PID 1 in the container), no password in its environment, and SIGTERM is
    its smart shutdown."""
    import signal

    from devcluster import wait_port

    base = pg_base / "exec"
    cluster.set_role("exec_user", "exec:pw", encryption="scram-sha-256")
    pool = Pgpool(base, base / "config", key_file=base / "config" / ".pgpoolkey")
    pool.rundir.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", ""),
        **pool.params(),
        "EXEC_USERNAME": "exec_user",
        "EXEC_PASSWORD": "exec:pw",
        "PGPOOL_PCP_USER": "pcpadmin",
        "PGPOOL_PCP_PASSWORD": "pcp:pw",
    }
    argv = [
        pgpoolsync_exe(),
        "render",
        "--config-dir",
        str(pool.config_dir),
        "--pool-key-file",
        str(pool.key_file),
        *cluster.backend_args(),
        "--",
        *pool.argv(),
    ]
    with (base / "exec.log").open("ab") as log:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_port(pool.port, timeout=30)
        pid_file = pool.rundir / "pgpool.pid"
        assert int(pid_file.read_text().replace("\0", " ").split()[0]) == proc.pid  # NUL-ended
        environ = Path(f"/proc/{proc.pid}/environ").read_bytes()
        assert b"exec:pw" not in environ and b"pcp:pw" not in environ
        with pool.connect("exec_user", "exec:pw") as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("exec_user",)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_pgpool2_on_k8s_minimal_deployment_env_serves_logins_as_the_drop_in_entrypoint(
    cluster: PgCluster, pg_base: Path
) -> None:
    """The env of pgpool2_on_k8s's pgpool-deploy-minimal.yaml, unchanged but for the hosts and
    ports (and this test's runtime dirs), through the drop-in image's entrypoint: render, then
    exec pgpool. SSL=on: TLS is on and required."""
    from devcluster import wait_port

    base = pg_base / "minimal"
    cluster.set_role("mini_user", "mini:pw", encryption="scram-sha-256")
    pool = Pgpool(base, base / "config", key_file=base / "config" / ".pgpoolkey")
    pool.rundir.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", ""),
        **pool.params(),
        "PGPOOL_INSTALL_DIR": str(base),  # the files go to $PGPOOL_INSTALL_DIR/etc
        **pgpool2_on_k8s_minimal_env(
            primary=("127.0.0.1", cluster.primary.port),
            replica=("127.0.0.1", cluster.replica.port),
            user="mini_user",
            password="mini:pw",
        ),
    }
    c = base / "etc"
    argv = [
        pgpoolsync_exe(),
        "render",
        "--",
        *[str(c / Path(a).name) if a.startswith(str(pool.config_dir)) else a for a in pool.argv()],
    ]
    argv[argv.index("-k") + 1] = str(c / ".pgpoolkey")
    with (base / "entrypoint.log").open("ab") as log:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_port(pool.port, timeout=30)
        with pool.connect("mini_user", "mini:pw", sslmode="require") as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("mini_user",)
            assert conn.pgconn.ssl_in_use
        with pytest.raises(psycopg.OperationalError):
            pool.connect("mini_user", "mini:pw", sslmode="disable").close()
        assert "mini:pw" not in Path(f"/proc/{proc.pid}/environ").read_text(errors="replace")
    finally:
        proc.terminate()
        proc.wait(15)
