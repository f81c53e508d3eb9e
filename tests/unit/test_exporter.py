"""Exporter parsing and fault isolation (no pgpool needed)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    UntypedMetricFamily,
)
from prometheus_client.registry import Collector

from pgpoolsync.exporter import conninfo, families, scrape
from pgpoolsync.exporter.exposition import exposition
from pgpoolsync.exporter.table import Column, Table, _Part


def table_from_rows(rows: Sequence[Mapping[str, Any]]) -> Table:
    """A SHOW answer from plain rows, as libpq would hand it to the exporter."""
    names: dict[str, int] = {}
    for row in rows:
        for key in row:
            names.setdefault(key, len(names))
    keys = list(names)

    def values(c: int) -> Column:
        return [None if (v := row.get(keys[c])) is None else str(v) for row in rows]

    def nonempty(c: int) -> int:
        return sum(1 for v in values(c) if v)

    def cells() -> Column:
        return [None if (v := row.get(k)) is None else str(v) for row in rows for k in keys]

    return Table([_Part(names, len(rows), values, nonempty, cells)])


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
    got = families.number(text)
    assert (math.isnan(got) and math.isnan(value)) or got == value


def test_delay_in_seconds_only_when_pgpool_reports_time() -> None:
    assert families.delay_seconds("0.000568 second") == 0.000568
    assert families.delay_seconds("1024") is None


@pytest.mark.parametrize(
    ("text", "value"),
    [("up", 1.0), ("waiting", 1.0), ("true", 1.0), ("down", 0.0), ("unused", 0.0), ("", 0.0)],
)
def test_status_mapping_matches_pgpool2_exporter(text: str, value: float) -> None:
    assert families.status_value(text) == value


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


def _text(fams: list[families.Family]) -> str:
    return exposition(fams).decode()


class _Reference(Collector):
    """The same families through prometheus_client's own classes and exposition."""

    def __init__(self, fams: list[families.Family]) -> None:
        self.fams = fams

    def collect(self) -> Any:
        kinds = {"counter": CounterMetricFamily, "gauge": GaugeMetricFamily}
        for fam in self.fams:
            names = [k for k, _ in fam.samples[0][0]] if fam.samples else []
            kind = fam.kind if fam.kind != "counter" or fam.name.endswith("_total") else "untyped"
            out: Metric = kinds.get(kind, UntypedMetricFamily)(fam.name, fam.help, labels=names)
            for labels, value in fam.samples:
                out.add_metric([v for _, v in labels], value)  # type: ignore[attr-defined]
            yield out


def _reference_text(fams: list[families.Family]) -> str:
    """prometheus_client writes every counter with ``_total``: pgpool2_exporter's ``*_cnt``
    counters are built untyped there, and their TYPE line set back to counter here."""
    reg = CollectorRegistry()
    reg.register(_Reference(fams))
    text = generate_latest(reg).decode()
    for fam in fams:
        if fam.kind == "counter" and not fam.name.endswith("_total"):
            text = text.replace(f"# TYPE {fam.name} untyped\n", f"# TYPE {fam.name} counter\n")
    return text


_label_value = st.text(st.characters(codec="utf-8"), max_size=12)
_value = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**20), 10**20).map(float),
    st.sampled_from([0.0, 1.0, 0.5, 1234567.0, 12345678.0, 1e-7, 123456789.125]),
)


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["counter", "gauge", "untyped"]),
            st.text(st.characters(codec="utf-8"), max_size=20),
            st.lists(st.tuples(_label_value, _label_value, _value), max_size=4),
        ),
        max_size=5,
    )
)
def test_exposition_is_byte_identical_to_prometheus_client(
    spec: list[tuple[str, str, list[tuple[str, str, float]]]],
) -> None:
    fams = [
        families.Family(
            f"pgpool2_f{i}_total" if kind == "counter" else f"pgpool2_f{i}",
            kind,
            help_,
            [((("zeta", a), ("alpha", b)), v) for a, b, v in samples],
        )
        for i, (kind, help_, samples) in enumerate(spec)
    ]
    assert _text(fams) == _reference_text(fams)


def test_every_parsed_family_exposes_like_prometheus_client() -> None:
    pools = table_from_rows([{"pool_pid": "1", "username": "u", "database": "d"}] * 3)
    fams = [
        *families.parse_pool_nodes(table_from_rows(NODES)),
        *families.parse_backend_stats(table_from_rows(NODES)),
        *families.parse_health_check_stats(table_from_rows(NODES)),
        *families.parse_processes(pools),
        *families.parse_pools(pools),
        *families.parse_cache(table_from_rows([{"cache_hit_ratio": "0.25"}])),
    ]
    assert len(fams) > 30
    assert _text(fams) == _reference_text(fams)


CNT_COUNTERS = (
    "pgpool2_pool_nodes_select_cnt",
    *(
        f"pgpool2_pool_backend_stats_{c}_cnt"
        for c in ("select", "insert", "update", "delete", "ddl", "other", "panic", "fatal", "error")
    ),
)


def test_the_ten_cnt_families_are_counters_under_pgpool2_exporter_s_sample_names() -> None:
    stats = [{**row, **{n.rsplit("stats_", 1)[1]: "7" for n in CNT_COUNTERS[1:]}} for row in NODES]
    text = _text(
        [
            *families.parse_pool_nodes(table_from_rows(NODES)),
            *families.parse_backend_stats(table_from_rows(stats)),
        ]
    )
    types = dict(line.split()[2:4] for line in text.splitlines() if line.startswith("# TYPE "))
    assert {name: types.get(name) for name in CNT_COUNTERS} == dict.fromkeys(
        CNT_COUNTERS, "counter"
    )
    assert [n for n, kind in types.items() if kind == "counter"] == list(CNT_COUNTERS)
    samples = {line.split("{")[0] for line in text.splitlines() if not line.startswith("#")}
    assert set(CNT_COUNTERS) <= samples
    assert not [s for s in samples if s.endswith("_total")]
    assert (
        "# HELP pgpool2_pool_backend_stats_fatal_cnt Fatal message counts returned from backend\n"
        in text
    )


def test_cache_sizes_say_they_are_in_bytes_as_pgpool2_exporter_does() -> None:
    text = _text(families.parse_cache(table_from_rows([{"used_cache_entries_size": "1"}])))
    for col in ("used", "free", "fragment"):
        assert f"# HELP pgpool2_pool_cache_{col}_cache_entries_size Total size in bytes of" in text


def test_two_nodes_on_one_host_port_role_do_not_collide() -> None:
    text = _text(families.parse_pool_nodes(table_from_rows(NODES)))
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
    fams = {f.name: f for f in families.parse_processes(table_from_rows(procs))}
    assert fams["pgpool2_frontend_total"].samples == [((), 2.0)]
    assert fams["pgpool2_frontend_used"].samples == [
        ((("username", "u"), ("database", "app")), 1.0)
    ]
    assert fams["pgpool2_frontend_used_ratio"].samples == [((), 0.5)]
    pools = {
        f.name: f
        for f in families.parse_pools(
            table_from_rows([{"pool_pid": "1", "username": "u"}, {"pool_pid": "1", "username": ""}])
        )
    }
    assert pools["pgpool2_backend_used_ratio"].samples == [((), 0.5)]


class FakeResult:
    """What libpq hands back (psycopg.pq.PGresult): names and raw bytes by row, column."""

    def __init__(
        self, rows: Sequence[Mapping[str, str | None]], names: list[str] | None = None
    ) -> None:
        self.names = names if names is not None else list(rows[0]) if rows else []
        self.rows = [[None if v is None else v.encode() for v in r.values()] for r in rows]
        self.nfields, self.ntuples = len(self.names), len(rows)

    def fname(self, i: int) -> bytes:
        return self.names[i].encode()

    def get_value(self, r: int, c: int) -> bytes | None:
        return self.rows[r][c]


class FakeCursor:
    def __init__(self, *results: Sequence[Mapping[str, str | None]]) -> None:
        self.results = [FakeResult(r) for r in results]
        self.pgresult: FakeResult | None = self.results.pop(0)

    def nextset(self) -> bool:
        self.pgresult = self.results.pop(0) if self.results else None
        return self.pgresult is not None


ROWS: list[dict[str, str | None]] = [
    {"pool_pid": str(100 + i), "username": ["", "app", 'ünï "q"', None][i % 4], "x": None}
    for i in range(40)
]


@pytest.mark.parametrize("n", [0, 1, 2, 16, 17, 40])
def test_a_table_of_libpq_results_reads_like_one_of_plain_rows(n: int) -> None:
    rows = ROWS[:n]
    raw, plain = Table.from_results([FakeResult(rows)]), table_from_rows(rows)
    assert raw.nrows == plain.nrows == n
    for name in ("pool_pid", "username", "x", "missing"):
        assert raw.column(name) == plain.column(name)
        assert raw.nonempty(name) == plain.nonempty(name)
    if n:
        assert raw.column("username") == [r["username"] for r in rows]
        assert raw.nonempty("username") == sum(1 for r in rows if r["username"])
    assert raw.column("missing") is None


def test_result_sets_are_concatenated_like_pgpool_43_pool_processes() -> None:
    rows = ROWS[:5]
    t = Table.from_results([FakeResult([], names=list(rows[0])), FakeResult(rows)])
    assert t.nrows == 5
    assert t.column("pool_pid") == [r["pool_pid"] for r in rows]
    other = Table.from_results([FakeResult(rows[:2]), FakeResult([{"other": "1"}])])
    assert other.column("pool_pid") == ["100", "101", None]
    assert other.column("other") == [None, None, "1"]
    fams = {f.name: f for f in families.parse_processes(t)}
    assert fams["pgpool2_frontend_total"].samples == [((), 5.0)]


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


def _scraper(conn: Any) -> scrape.Scraper:
    def connect(*args: Any, **kw: Any) -> Any:
        if isinstance(conn, Exception):
            raise conn
        return conn

    return scrape.Scraper(conninfo="host=x", connect=connect)


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


def test_the_connection_is_closed_once_idle_for_the_hold_time_and_reopened_by_a_scrape() -> None:
    now = [0.0]
    conns: list[FakeConn] = []

    def connect(*args: Any, **kw: Any) -> Any:
        conns.append(FakeConn(set()))
        return conns[-1]

    scraper = scrape.Scraper(
        conninfo="host=x", connect=connect, hold_seconds=5, clock=lambda: now[0]
    )
    scraper.scrape()
    now[0] = 4.0
    assert not scraper.close_idle() and not conns[0].closed
    scraper.scrape()  # a scrape within the hold time reuses the connection
    now[0] = 8.9
    assert not scraper.close_idle() and len(conns) == 1
    now[0] = 9.1
    assert scraper.close_idle() and conns[0].closed
    assert not scraper.close_idle()
    scraper.scrape()
    assert len(conns) == 2 and not conns[1].closed


def test_without_a_hold_time_the_connection_stays_open() -> None:
    conn = FakeConn(set())
    scraper = scrape.Scraper(conninfo="host=x", connect=lambda *a, **k: conn, clock=lambda: 1e9)  # type: ignore[arg-type]
    scraper.scrape()
    assert not scraper.close_idle() and not conn.closed


def test_conninfo_follows_pgpool2_exporter_env() -> None:
    info, pw = conninfo.conninfo_from_env(
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
    assert conninfo.conninfo_from_env({"DATA_SOURCE_NAME": dsn}, uri=None, user=None) == (dsn, None)
    assert "s3cret" not in conninfo.mask(dsn)
    assert "s3cret" not in conninfo.mask("host=h password=s3cret")
