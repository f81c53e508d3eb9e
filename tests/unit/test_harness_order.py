"""The demo and the harnesses start pgpool only once `pgpoolsync run` says ready (/readyz), as
the manifests' startup probe does: `run` writes pool_passwd before pgpool.conf, and a pgpool
started between the two reads no configuration at all."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from devcluster import free_port, pgpoolsync_exe, wait_ready

# Every file pgpool -f/-a/-F/-k is started with (devcluster.Pgpool.argv), and the pair TLS needs.
PGPOOL_READS = ("pgpool.conf", "pool_hba.conf", "pcp.conf", "pool_passwd", ".pgpoolkey")


def _run(tmp: Path, listen: int) -> subprocess.Popen[bytes]:
    secrets = tmp / "secrets" / "alice"
    secrets.mkdir(parents=True)
    (secrets / "username").write_text("alice")
    (secrets / "password").write_text("alice-pw")
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PGPOOL_PCP_USER": "pcpadmin",
        "PGPOOL_PCP_PASSWORD": "pcp-pw",
    }
    argv = [pgpoolsync_exe(), "run", "--config-dir", str(tmp / "config")]
    argv += ["--secrets-dir", str(tmp / "secrets"), "--primary-host", "127.0.0.1"]
    argv += ["--pcp-port", str(free_port()), "--listen", f"127.0.0.1:{listen}"]
    return subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.mark.parametrize("attempt", range(5))
def test_when_run_says_ready_every_file_pgpool_reads_is_on_disk(
    tmp_path: Path, attempt: int
) -> None:
    listen = free_port()
    proc = _run(tmp_path, listen)
    try:
        wait_ready(listen, proc)
        missing = [f for f in PGPOOL_READS if not (tmp_path / "config" / f).is_file()]
        assert not missing
    finally:
        proc.terminate()
        proc.wait(15)


def test_waiting_for_a_run_that_exits_says_so_instead_of_timing_out(tmp_path: Path) -> None:
    listen = free_port()
    proc = subprocess.Popen(
        [pgpoolsync_exe(), "run", "--config-dir", str(tmp_path)],  # no PCP user: exit 2
        env={"PATH": os.environ.get("PATH", "")},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    with pytest.raises(RuntimeError, match="exited 2 before it was ready"):
        wait_ready(listen, proc, timeout=30)
