"""Restart-required and unapplied values, from what pgpool reports it runs with (pure)."""

from __future__ import annotations

import pytest

from pgpoolsync.core.changes import Drift, drift, same_value

# As pgpool 4.3.5's PCP pool status reports them (read off the real binary).
RUNNING = {
    "backend_clustering_mode": "1",
    "listen_addresses": "*",
    "port": "9999",
    "num_init_children": "32",
    "connection_cache": "1",
    "connect_timeout": "10000",
    "log_min_messages": "19",
    "backend_hostname0": "db-primary.db.svc",
    "backend_port0": "5432",
    "backend_weight0": "0.500000",
    "backend_flag0": "DISALLOW_TO_FAILOVER|ALWAYS_PRIMARY",
    "ssl": "0",
    "work_dir": "/var/run/pgpool",  # 4.7 reports it (logdir is hidden from SHOW ALL there)
}
DESIRED = {
    "backend_clustering_mode": "streaming_replication",
    "listen_addresses": "*",
    "port": "9999",
    "num_init_children": "32",
    "connection_cache": "on",
    "connect_timeout": "10000",
    "log_min_messages": "warning",
    "backend_hostname0": "db-primary.db.svc",
    "backend_port0": "5432",
    "backend_weight0": "1",
    "backend_flag0": "ALWAYS_PRIMARY|DISALLOW_TO_FAILOVER",
    "ssl": "off",
    "work_dir": "/var/run/pgpool",
    "enable_shared_relcache": "on",  # not reported: not compared
}


def test_pgpool_running_the_desired_values_in_its_own_formats_is_no_drift() -> None:
    assert drift(RUNNING, DESIRED) == Drift()


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("port", "9998", Drift(restart=("port",))),
        ("num_init_children", "64", Drift(restart=("num_init_children",))),
        ("connection_cache", "off", Drift(restart=("connection_cache",))),
        ("backend_clustering_mode", "raw", Drift(restart=("backend_clustering_mode",))),
        ("backend_hostname0", "other", Drift(restart=("backend_hostname0",))),
        ("ssl", "on", Drift(restart=("ssl",))),
        ("backend_flag0", "DISALLOW_TO_FAILOVER", Drift(restart=("backend_flag0",))),
        ("work_dir", "/other", Drift(restart=("work_dir",))),  # 4.7's name for logdir
        ("connect_timeout", "5000", Drift(unapplied=("connect_timeout",))),
        ("backend_flag0", "ALWAYS_PRIMARY|ALLOW_TO_FAILOVER", Drift(unapplied=("backend_flag0",))),
        ("backend_weight0", "0", Drift()),  # normalised by pgpool: not compared
    ],
)
def test_one_changed_value_is_restart_required_or_unapplied_by_its_reload_semantics(
    name: str, value: str, expected: Drift
) -> None:
    assert drift(RUNNING, {**DESIRED, name: value}) == expected


def test_an_enum_reported_as_a_number_is_not_guessed() -> None:
    assert same_value("log_min_messages", "19", "debug1") is None
    assert same_value("backend_clustering_mode", "1", "streaming_replication") is True
    assert same_value("listen_addresses", "localhost, 10.0.0.1", "localhost,10.0.0.1") is True
