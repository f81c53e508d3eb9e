"""The native PCP client against real pgpool 4.3: every message it sends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devcluster import PgCluster, Pgpool
from devcluster.ports import wait_until
from pgpoolsync.pgpool import pcp
from pgpoolsync.pgpool.actuator import PcpPgpool
from tests.pgpool_helpers import render_cli, write_secret

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def pool(cluster: PgCluster, pg_base: Path) -> Iterator[Pgpool]:
    base = pg_base / "pcp"
    write_secret(base / "secrets", "u", "pcp_probe", "x")
    p = Pgpool(base, base / "config", key_file=base / "config" / ".pgpoolkey")
    env = {"PGPOOL_PCP_USER": "pcpadmin", "PGPOOL_PCP_PASSWORD": "pc:pw\\x"}
    result = render_cli(p, cluster, secrets=base / "secrets", env=env)
    assert result.returncode == 0, result.stderr
    p.start()
    yield p
    p.stop()


def test_login_reload_and_node_info(pool: Pgpool, cluster: PgCluster) -> None:
    with pcp.PcpClient("127.0.0.1", pool.pcp_port) as client:
        client.login("pcpadmin", "pc:pw\\x")
        client.reload()
        assert client.node_count() == 2
        nodes = [client.node_info(0), client.node_info(1)]
    assert [(n.port, n.role) for n in nodes] == [
        (cluster.primary.port, "primary"),
        (cluster.replica.port, "standby"),
    ]
    assert all(n.host == "127.0.0.1" and n.status in (1, 2) for n in nodes)
    assert sum(n.weight for n in nodes) == pytest.approx(1.0)
    # pgpool writes its log line after answering: wait for it rather than race it.
    wait_until(lambda: "reload config files" in pool.log_tail(100), what="reload logged")


def test_pgpools_unix_sockets_are_where_pgpool_conf_asks(pool: Pgpool) -> None:
    """socket_dir became unix_socket_directories in 4.4 (the old name is then ignored and the
    socket lands in /tmp): both names are written, so every version puts it in the rundir."""
    assert (pool.rundir / f".s.PGSQL.{pool.port}").is_socket()
    assert (pool.rundir / f".s.PGSQL.{pool.pcp_port}").is_socket()


def test_a_wrong_password_is_refused_without_echoing_it(pool: Pgpool) -> None:
    with pytest.raises(pcp.PcpError, match="authentication failed") as info:
        PcpPgpool(host="127.0.0.1", user="pcpadmin", password="wrong-secret").reload(
            {"pcp_port": str(pool.pcp_port)}
        )
    assert "wrong-secret" not in str(info.value)


def test_an_unknown_node_is_a_clear_error(pool: Pgpool) -> None:
    with pcp.PcpClient("127.0.0.1", pool.pcp_port) as client:
        client.login("pcpadmin", "pc:pw\\x")
        with pytest.raises(pcp.PcpError, match="invalid node ID"):
            client.node_info(7)


def test_pgpool_down_is_a_pcp_error_not_a_hang(pool: Pgpool) -> None:
    with pytest.raises(pcp.PcpError, match="cannot connect"):
        PcpPgpool(host="127.0.0.1", user="pcpadmin", password="x", timeout=2).reload(
            {"pcp_port": "1"}
        )


def test_pool_status_reports_what_pgpool_runs_with(pool: Pgpool) -> None:
    with pcp.PcpClient("127.0.0.1", pool.pcp_port) as client:
        client.login("pcpadmin", "pc:pw\\x")
        status = client.pool_status()
    assert status["port"] == str(pool.port)
    assert status["num_init_children"] == "4"
    assert status["backend_clustering_mode"] == "1"  # streaming_replication, as a number
    assert set(status["backend_flag0"].split("|")) == {"ALWAYS_PRIMARY", "DISALLOW_TO_FAILOVER"}
    assert len(status) > 100


def test_detach_of_a_disallowed_node_is_refused_with_pgpools_reason(pool: Pgpool) -> None:
    with pcp.PcpClient("127.0.0.1", pool.pcp_port) as client:
        client.login("pcpadmin", "pc:pw\\x")
        with pytest.raises(pcp.PcpError, match="failover is disallowed on the node"):
            client.detach(1)
    with pcp.PcpClient("127.0.0.1", pool.pcp_port) as client:
        client.login("pcpadmin", "pc:pw\\x")
        assert client.node_info(1).status in (1, 2)  # still up: detach is no proof of anything
        client.attach(1)  # allowed with DISALLOW_TO_FAILOVER
        assert client.node_info(1).status in (1, 2)
