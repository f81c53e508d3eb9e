"""Shared fixtures. Real PostgreSQL + pgpool fixtures start processes on loopback ports."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from devcluster import PgCluster


@pytest.fixture(scope="session")
def pg_base() -> Iterator[Path]:
    """A base directory the postgres user can reach (pytest's tmp dirs are root-only)."""
    base = Path(tempfile.mkdtemp(prefix="pgpoolsync-test-"))
    base.chmod(0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def cluster(pg_base: Path) -> Iterator[PgCluster]:
    """PostgreSQL primary + streaming replica, shared by the whole session."""
    c = PgCluster(pg_base / "pg")
    try:
        c.start()
        yield c
    finally:
        c.stop()
