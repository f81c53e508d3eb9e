"""The README's demo command works end to end (in --check mode: log in, then stop)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.real
def test_demo_logs_in_through_pgpool_as_each_demo_user(pg_base: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "devcluster", "--dir", str(pg_base / "demo"), "--check"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "login ok through pgpool: alice (stored as scram-sha-256)" in result.stdout
    assert "login ok through pgpool: bob (stored as md5)" in result.stdout
    assert "rotation ok: alice logs in with her new password" in result.stdout
