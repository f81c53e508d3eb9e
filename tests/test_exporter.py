"""Exporter parsing and fault isolation (no pgpool needed)."""

from __future__ import annotations

import math
from typing import Any

import psycopg
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from pgpoolsync import exporter
from pgpoolsync.metrics import FamiliesCollector


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0.000568 second", 0.000568),
        ("0", 0.0),
        ("12", 12.0),
        ("-nan", math.nan),
        ("nan", math.nan),
        ("unknown", math.nan),
        ("", math.nan),
        (None, math.nan),
        ("1e3", 1000.0),
    ],
)
def test_numbers_whatever_pgpool_prints(text: str | None, value: float) -> None:
    got = exporter.number(text)
    assert (math.isnan(got) and math.isnan(value)) or got == value


def test_delay_in_seconds_only_when_pgpool_reports_time() -> None:
    assert exporter.delay_seconds("0.000568 second") == 0.000568
    assert exporter.delay_seconds("1024") is None


@pytest.mark.parametrize(
    ("text", "value"),
    [("up", 1.0), ("waiting", 1.0), ("true", 1.0), ("down", 0.0), ("unused", 0.0), ("", 0.0)],
)
def test_status_mapping_matches_pgpool2_exporter(text: str, value: float) -> None:
    assert exporter.status_value(text) == value


NODES = [
    {
        "node_id": "0",
        "hostname": "db",
        "port": "5432",
        "status": "up",
        "pg_status": "up",
        "lb_weight": "0.500000",
        "role": "primary",
        "select_cnt": "7",
        "replication_delay": "0",
    },
    {
        "node_id": "1",
        "hostname": "db",
        "port": "5432",
        "status": "waiting",
        "pg_status": "down",
        "lb_weight": "-nan",
        "role": "primary",
        "select_cnt": "3",
        "replication_delay": "0.5 second",
    },
]


def _text(fams: list[exporter.Family]) -> str:
    reg = CollectorRegistry()
    reg.register(FamiliesCollector(lambda: fams))
    return generate_latest(reg).decode()


def test_two_nodes_on_one_host_port_role_do_not_collide() -> None:
    text = _text(exporter.parse_pool_nodes(NODES))
    assert (
        'pgpool2_pool_nodes_select_cnt{hostname="db",node_id="0",port="5432",role="primary"} 7.0'
        in text
    )
    assert (
        'pgpool2_pool_nodes_select_cnt{hostname="db",node_id="1",port="5432",role="primary"} 3.0'
        in text
    )
    assert 'pgpool2_pool_nodes_replication_delay_seconds{hostname="db",node_id="1"' in text
    assert (
        'pgpool2_pool_nodes_lb_weight{hostname="db",node_id="1",port="5432",role="primary"} NaN'
        in text
    )
    assert "# TYPE pgpool2_pool_nodes_status gauge" in text


def test_frontend_and_backend_usage() -> None:
    procs = [
        {"pool_pid": "1", "database": "app", "username": "u"},
        {"pool_pid": "2", "database": "", "username": ""},
    ]
    fams = {f.name: f for f in exporter.parse_processes(procs)}
    assert fams["pgpool2_frontend_total"].samples == [((), 2.0)]
    assert fams["pgpool2_frontend_used"].samples == [
        ((("username", "u"), ("database", "app")), 1.0)
    ]
    assert fams["pgpool2_frontend_used_ratio"].samples == [((), 0.5)]
    pools = {
        f.name: f
        for f in exporter.parse_pools(
            [{"pool_pid": "1", "username": "u"}, {"pool_pid": "1", "username": ""}]
        )
    }
    assert pools["pgpool2_backend_used_ratio"].samples == [((), 0.5)]


class FakeCursor:
    def __init__(self, rows: list[dict[str, str]]) -> None:
        cols = list(rows[0]) if rows else ["pool_version"]

        class D:
            def __init__(self, name: str) -> None:
                self.name = name

        self.description = [D(c) for c in cols]
        self._rows = [tuple(r.values()) for r in rows]

    def fetchone(self) -> tuple[str, ...]:
        return self._rows[0] if self._rows else ("4.3.5 (tamahomeboshi)",)

    def fetchall(self) -> list[tuple[str, ...]]:
        return self._rows

    def nextset(self) -> bool:
        return False


class FakeConn:
    closed = False
    broken = False

    def __init__(self, failing: set[str]) -> None:
        self.failing = failing

    def execute(self, query: str) -> FakeCursor:
        what = query.rsplit(maxsplit=1)[-1]
        if what in self.failing:
            raise psycopg.errors.InternalError(f"{what} failed")
        if what == "POOL_VERSION":
            return FakeCursor([{"pool_version": "4.3.5 (tamahomeboshi)"}])
        if what == "pool_nodes":
            return FakeCursor(NODES)
        return FakeCursor([{"pool_pid": "1", "username": "", "database": ""}])

    def close(self) -> None:
        self.closed = True


def _scraper(conn: Any) -> exporter.Scraper:
    def connect(*args: Any, **kw: Any) -> Any:
        if isinstance(conn, Exception):
            raise conn
        return conn

    return exporter.Scraper(conninfo="host=x", connect=connect)


def test_one_failing_show_does_not_sink_the_others() -> None:
    fams = {f.name: f for f in _scraper(FakeConn({"pool_cache"})).scrape()}
    assert fams["pgpool2_up"].samples == [((), 1.0)]
    assert fams["pgpool2_last_scrape_error"].samples == [((), 1.0)]
    assert "pgpool2_pool_nodes_status" in fams
    assert "pgpool2_pool_cache_cache_hit_ratio" not in fams
    assert fams["pgpool2_version_info"].samples == [((("version", "4.3.5"),), 1.0)]


def test_pgpool_down_gives_up_0_and_a_successful_scrape() -> None:
    scraper = _scraper(psycopg.OperationalError("connection refused"))
    text = _text(scraper.scrape())
    assert "pgpool2_up 0.0" in text
    assert "pgpool2_scrapes_total 1.0" in text


def test_conninfo_follows_pgpool2_exporter_env() -> None:
    info, pw = exporter.conninfo_from_env(
        {
            "DATA_SOURCE_URI": "localhost:9999/postgres?sslmode=disable",
            "DATA_SOURCE_USER": "mon",
            "DATA_SOURCE_PASS": "s3cret",
        },
        uri=None,
        user=None,
    )
    assert info == "postgresql://mon@localhost:9999/postgres?sslmode=disable"
    assert pw == "s3cret"
    dsn = "postgresql://mon:s3cret@h:9999/postgres"
    assert exporter.conninfo_from_env({"DATA_SOURCE_NAME": dsn}, uri=None, user=None) == (dsn, None)
    assert "s3cret" not in exporter.mask(dsn)
    assert "s3cret" not in exporter.mask("host=h password=s3cret")
