"""Helpers for tests that run real pgpool on files rendered by the real CLI: ``render`` as a
subprocess, Secret directories as kubelet writes them, the pgpool2_on_k8s minimal env. (``run``
as a subprocess is devcluster/runprocess.py, polling devcluster/ports.py's ``wait_until``.)"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from devcluster import PgCluster, Pgpool, pgpoolsync_exe


def pgpool2_on_k8s_minimal_env(
    *, primary: tuple[str, int], replica: tuple[str, int], user: str, password: str
) -> dict[str, str]:
    """The env of pgpool2_on_k8s's pgpool-deploy-minimal.yaml, unchanged but for the backends'
    hosts and ports (and the credentials, from its Secret there)."""
    return {
        "PGPOOL_PARAMS_BACKEND_HOSTNAME0": primary[0],
        "PGPOOL_PARAMS_BACKEND_PORT0": str(primary[1]),
        "PGPOOL_PARAMS_BACKEND_WEIGHT0": "1",
        "PGPOOL_PARAMS_BACKEND_FLAG0": "ALWAYS_PRIMARY|DISALLOW_TO_FAILOVER",
        "PGPOOL_PARAMS_BACKEND_HOSTNAME1": replica[0],
        "PGPOOL_PARAMS_BACKEND_PORT1": str(replica[1]),
        "PGPOOL_PARAMS_BACKEND_WEIGHT1": "1",
        "PGPOOL_PARAMS_BACKEND_FLAG1": "DISALLOW_TO_FAILOVER",
        "PGPOOL_PARAMS_FAILOVER_ON_BACKEND_ERROR": "off",
        "PGPOOL_PARAMS_ENABLE_POOL_HBA": "on",
        "PGPOOL_PARAMS_SSL": "on",
        "POSTGRES_USERNAME": user,
        "POSTGRES_PASSWORD": password,
        "PGPOOL_PASSWORD_ENCRYPTION_METHOD": "scram-sha-256",
        "PGPOOL_ENABLE_POOL_PASSWD": "true",
        "PGPOOL_SKIP_PASSWORD_ENCRYPTION": "false",
    }


def write_secret(
    root: Path, name: str, user: str, password: str, *, user_key: str = "username"
) -> None:
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    (d / user_key).write_text(user, encoding="utf-8")
    (d / "password").write_text(password, encoding="utf-8")


def render_cli(
    pool: Pgpool,
    cluster: PgCluster | None,
    *,
    secrets: Path,
    extra: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the installed `pgpoolsync render` console script for this pgpool and cluster (no
    cluster: no backend flags, the env says where the backends are)."""
    full_env = {"PATH": os.environ.get("PATH", ""), **pool.params(), **(env or {})}
    argv = [
        pgpoolsync_exe(),
        "render",
        "--config-dir",
        str(pool.config_dir),
        "--secrets-dir",
        str(secrets),
        "--pool-key-file",
        str(pool.key_file),
        *(cluster.backend_args() if cluster else ()),
        *extra,
    ]
    return subprocess.run(argv, env=full_env, capture_output=True, text=True, check=False)


def kubelet_write(root: Path, name: str, data: Mapping[str, str | bytes], *, stamp: str) -> None:
    """Update a Secret directory the way kubelet does: new ..<ts> dir, atomic ..data swap."""
    sub = root / name
    sub.mkdir(parents=True, exist_ok=True)
    ts = sub / f"..{stamp}"
    ts.mkdir()
    for key, value in data.items():
        (ts / key).write_bytes(value if isinstance(value, bytes) else value.encode())
    old = (sub / "..data").resolve() if (sub / "..data").is_symlink() else None
    tmp = sub / "..data_tmp"
    tmp.symlink_to(ts.name)
    os.replace(tmp, sub / "..data")
    for key in data:
        if not (sub / key).is_symlink():
            (sub / key).symlink_to(f"..data/{key}")
    if old is not None and old.is_dir():
        shutil.rmtree(old)
