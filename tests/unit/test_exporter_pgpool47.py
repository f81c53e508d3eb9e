"""The exporter reads pgpool 4.7's `SHOW pool_pools`: 4.7 adds `client_host`, `client_port` and
`statement` (src/utils/pool_process_reporting.c, pools_reporting, V4_7_STABLE), and columns are
read by name, so the families are the ones 4.6's answer gives for the same slots."""

from __future__ import annotations

from typing import Any

from pgpoolsync.exporter.families import parse_pools
from pgpoolsync.exporter.table import Table

# The columns pgpool answers with, in its order (field_names[] of pools_reporting).
POOLS_46 = [
    "pool_pid", "start_time", "client_connection_count", "pool_id", "backend_id", "database",
    "username", "backend_connection_time", "client_connection_time", "client_disconnection_time",
    "client_idle_duration", "majorversion", "minorversion", "pool_counter", "pool_backendpid",
    "pool_connected", "status", "load_balance_node",
]  # fmt: skip
POOLS_47 = [*POOLS_46, "client_host", "client_port", "statement"]


class _Result:
    """A libpq result as psycopg.pq.PGresult shows it: field names, raw bytes per cell."""

    def __init__(self, names: list[str], rows: list[dict[str, str]]) -> None:
        self.names = names
        self.cells = [[r.get(n, "").encode() for n in names] for r in rows]
        self.nfields, self.ntuples = len(names), len(rows)

    def fname(self, i: int) -> bytes:
        return self.names[i].encode()

    def get_value(self, r: int, c: int) -> bytes | None:
        return self.cells[r][c]


def _slots() -> list[dict[str, str]]:
    """Two children x max_pool 2 x two backends; child 101 has a session on pool 0."""
    rows = []
    for pid in ("101", "102"):
        for pool in ("0", "1"):
            for backend in ("0", "1"):
                used = pid == "101" and pool == "0"
                rows.append(
                    {
                        "pool_pid": pid,
                        "start_time": "2026-12-04 14:00:00",
                        "pool_id": pool,
                        "backend_id": backend,
                        "database": "app" if used else "",
                        "username": "alice" if used else "",
                        "pool_counter": "3" if used else "0",
                        "status": "Idle" if used else "Wait for connection",
                        "load_balance_node": "1" if used and backend == "1" else "0",
                        # 4.7's columns: a statement holds commas, quotes and a newline.
                        "client_host": "10.0.0.7" if used else "",
                        "client_port": "51234" if used else "",
                        "statement": "SELECT 'a, b',\n  \"x\" FROM t" if used else "",
                    }
                )
    return rows


def _families(names: list[str]) -> list[tuple[str, str, Any]]:
    table = Table.from_results([_Result(names, _slots())])
    return [(f.name, f.kind, sorted(f.samples)) for f in parse_pools(table)]


def test_pgpool_4_7_pool_pools_gives_the_families_4_6_gives_for_the_same_slots() -> None:
    got = _families(POOLS_47)
    assert got == _families(POOLS_46)
    by_name = {name: samples for name, _, samples in got}
    assert by_name["pgpool2_backend_total"] == [((), 8.0)]
    assert by_name["pgpool2_backend_used"] == [((), 2.0)]
    assert by_name["pgpool2_backend_used_ratio"] == [((), 0.25)]


def test_columns_are_read_by_name_not_by_position() -> None:
    assert _families(list(reversed(POOLS_47))) == _families(POOLS_47)
