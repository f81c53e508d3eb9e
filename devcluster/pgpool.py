"""A pgpool on the files pgpoolsync writes, on loopback ports; it runs as the calling user so
it can read the 0600 files. ``can_login`` is the one login check the demo, tests and benches use.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import psycopg

from devcluster.binaries import clean_env, pgpool_binary, pgpool_version
from devcluster.ports import free_port, wait_port


class Pgpool:
    """A pgpool on files in ``config_dir``; runtime dirs under ``base``."""

    def __init__(self, base: Path, config_dir: Path, *, key_file: Path) -> None:
        self.base = base
        self.config_dir = config_dir
        self.key_file = key_file
        self.port = free_port()
        self.pcp_port = free_port()
        self.rundir = base / "pgpool-run"
        self.log = base / "pgpool.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def params(self) -> dict[str, str]:
        """PGPOOL_PARAMS_* for this instance's ports and runtime directories, and the version of
        the pgpool under test (PGPOOLSYNC_PGPOOL_VERSION)."""
        self.rundir.mkdir(parents=True, exist_ok=True)
        run = str(self.rundir)
        return {
            "PGPOOL_PARAMS_PORT": str(self.port),
            "PGPOOL_PARAMS_PCP_PORT": str(self.pcp_port),
            "PGPOOL_PARAMS_LISTEN_ADDRESSES": "127.0.0.1",
            "PGPOOL_PARAMS_PCP_LISTEN_ADDRESSES": "127.0.0.1",
            "PGPOOL_PARAMS_SOCKET_DIR": run,
            "PGPOOL_PARAMS_PCP_SOCKET_DIR": run,
            "PGPOOL_PARAMS_WD_IPC_SOCKET_DIR": run,
            "PGPOOL_PARAMS_PID_FILE_NAME": f"{run}/pgpool.pid",
            "PGPOOL_PARAMS_LOGDIR": run,
            "PGPOOL_PARAMS_NUM_INIT_CHILDREN": "4",
            "PGPOOL_PARAMS_MAX_POOL": "2",
            "PGPOOL_PARAMS_LOG_MIN_MESSAGES": "info",
            # The files are written for the pgpool under test (4.7: work_dir, not logdir).
            "PGPOOLSYNC_PGPOOL_VERSION": ".".join(pgpool_version().split(".")[:2]),
        }

    def argv(self) -> list[str]:
        c = self.config_dir
        return [
            pgpool_binary(),
            "-n",
            "-D",
            "-f",
            str(c / "pgpool.conf"),
            "-a",
            str(c / "pool_hba.conf"),
            "-F",
            str(c / "pcp.conf"),
            "-k",
            str(self.key_file),
        ]

    def start(self, *, timeout: float = 30.0) -> None:
        self.rundir.mkdir(parents=True, exist_ok=True)
        logf = self.log.open("ab")
        self.proc = subprocess.Popen(
            self.argv(),
            stdout=logf,
            stderr=subprocess.STDOUT,
            env=clean_env(),
            start_new_session=True,
        )
        logf.close()
        try:
            wait_port(self.port, timeout=timeout)
            wait_port(self.pcp_port, timeout=timeout)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"pgpool did not start; log tail:\n{self.log_tail()}") from None

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            # SIGINT: pgpool's fast shutdown; its children go with it.
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def connect(
        self, user: str, password: str, *, dbname: str = "postgres", **kw: Any
    ) -> psycopg.Connection[Any]:
        return psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user=user,
            password=password,
            dbname=dbname,
            autocommit=True,
            connect_timeout=10,
            **kw,
        )


def can_login(pool: Pgpool, user: str, password: str) -> bool:
    """A login through ``pool`` as ``user`` succeeds and the session is that user's."""
    try:
        with pool.connect(user, password) as conn:
            return conn.execute("SELECT current_user").fetchone() == (user,)
    except psycopg.OperationalError:
        return False
