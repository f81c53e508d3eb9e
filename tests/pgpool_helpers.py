"""Helpers for tests that run real pgpool on files rendered by the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from pgpoolsync.devcluster import PgCluster, Pgpool


def write_secret(
    root: Path, name: str, user: str, password: str, *, user_key: str = "username"
) -> None:
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    (d / user_key).write_text(user, encoding="utf-8")
    (d / "password").write_text(password, encoding="utf-8")


def render_cli(
    pool: Pgpool,
    cluster: PgCluster,
    *,
    secrets: Path,
    extra: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the installed `pgpoolsync render` console script for this pgpool and cluster."""
    full_env = {"PATH": os.environ.get("PATH", ""), **pool.params(), **(env or {})}
    argv = [
        str(Path(sys.executable).parent / "pgpoolsync"),
        "render",
        "--config-dir",
        str(pool.config_dir),
        "--secrets-dir",
        str(secrets),
        "--pool-key-file",
        str(pool.key_file),
        "--primary-host",
        "127.0.0.1",
        "--primary-port",
        str(cluster.primary.port),
        "--replica-host",
        "127.0.0.1",
        "--replica-port",
        str(cluster.replica.port),
        *extra,
    ]
    return subprocess.run(argv, env=full_env, capture_output=True, text=True, check=False)
