"""One SHOW answer read by column name: ``Table``, built from libpq's results.

Owns decoding pgpool's text answers lazily (a large ``pool_pools`` is only counted, or decoded
in the columns a parser asks for) and joining the result sets pgpool 4.3 sends for one SHOW.
Duck-typed on libpq results: no driver import here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

Column = list[str | None]


class _Part(NamedTuple):
    names: dict[str, int]
    nrows: int
    values: Callable[[int], Column]  # column index -> every row's value
    nonempty: Callable[[int], int]  # column index -> rows where it is neither NULL nor ""
    cells: Callable[[], Column]  # every value, row by row


class Table:
    """One SHOW answer, column by name: pgpool's text values, None for NULL.

    Built from libpq results (``from_results``; tests build one from plain rows). Small
    answers (one row per node) are decoded at once; large ones (``pool_pools``: children x
    max_pool x backends rows) only in the columns a parser asks for, and ``nonempty`` counts
    without decoding. Several result sets are concatenated: pgpool 4.3 answers
    ``SHOW pool_processes`` with an empty result set first and the real one second.
    """

    EAGER_ROWS = 16  # one per backend node

    __slots__ = ("_columns", "_parts", "nrows")

    def __init__(self, parts: list[_Part]) -> None:
        self._parts = parts
        self._columns: dict[str, Column | None] = {}
        self.nrows = sum(p.nrows for p in parts)
        if len(parts) == 1 and parts[0].nrows <= self.EAGER_ROWS:
            cells, width = parts[0].cells(), len(parts[0].names)
            self._columns = {name: cells[c::width] for name, c in parts[0].names.items()}

    @classmethod
    def from_results(cls, results: Sequence[Any]) -> Table:
        """From ``psycopg.pq.PGresult`` objects (anything with nfields/ntuples/fname/get_value)."""
        parts = []
        for res in results:
            names = {res.fname(i).decode("utf-8", "replace"): i for i in range(res.nfields)}
            get, rows = res.get_value, range(res.ntuples)

            def values(c: int, get: Any = get, rows: range = rows) -> Column:
                return [
                    None if (v := get(r, c)) is None else v.decode("utf-8", "replace") for r in rows
                ]

            def nonempty(c: int, get: Any = get, rows: range = rows) -> int:
                return sum(1 for r in rows if get(r, c))

            def cells(
                get: Any = get, rows: range = rows, cols: range = range(res.nfields)
            ) -> Column:
                return [
                    None if (v := get(r, c)) is None else v.decode("utf-8", "replace")
                    for r in rows
                    for c in cols
                ]

            parts.append(_Part(names, res.ntuples, values, nonempty, cells))
        return cls(parts)

    def column(self, name: str) -> Column | None:
        """Every row's value of ``name`` (None where a result set lacks it); None if none has it."""
        try:
            return self._columns[name]
        except KeyError:
            pass
        out: Column | None = None
        if any(name in p.names for p in self._parts):
            out = []
            for p in self._parts:
                c = p.names.get(name)
                out += [None] * p.nrows if c is None else p.values(c)
        self._columns[name] = out
        return out

    def nonempty(self, name: str) -> int:
        """How many rows have ``name`` neither NULL nor empty."""
        return sum(p.nonempty(c) for p in self._parts if (c := p.names.get(name)) is not None)

    def first(self) -> str | None:
        """The first column of the last row (``SHOW POOL_VERSION``)."""
        for p in reversed(self._parts):
            if p.nrows and p.names:
                return p.values(0)[-1]
        return None
